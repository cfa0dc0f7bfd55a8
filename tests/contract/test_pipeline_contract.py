"""
Every built-in pipeline plugin meets L{PipelineContractMixin}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.app.bootstrap import loadPlugins
from pgtwist.interfaces import IPipeline
from tests.contract.pipeline import PipelineContractMixin


class SessionPipelineContractTests(PipelineContractMixin, SynchronousTestCase):
    """
    The C{session} pipeline.
    """

    def makePipeline(self) -> IPipeline:
        """
        The plugin instance getPlugins finds.
        """
        return loadPlugins()[1]["session"]


class TransactionPipelineContractTests(PipelineContractMixin, SynchronousTestCase):
    """
    The C{transaction} pipeline.
    """

    def makePipeline(self) -> IPipeline:
        """
        The plugin instance getPlugins finds.
        """
        return loadPlugins()[1]["transaction"]


class PerformancePipelineContractTests(PipelineContractMixin, SynchronousTestCase):
    """
    The C{performance} pipeline.
    """

    def makePipeline(self) -> IPipeline:
        """
        The plugin instance getPlugins finds.
        """
        return loadPlugins()[1]["performance"]
