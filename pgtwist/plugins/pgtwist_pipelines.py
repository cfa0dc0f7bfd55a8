"""
The built-in pipelines, as plugins.
"""

from pgtwist.pipelines.performance import PerformancePipeline
from pgtwist.pipelines.session import SessionPipeline
from pgtwist.pipelines.transaction import TransactionPipeline

sessionPipeline = SessionPipeline()
transactionPipeline = TransactionPipeline()
performancePipeline = PerformancePipeline()
