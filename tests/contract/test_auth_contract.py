"""
The built-in password methods against L{tests.contract.auth.AuthMethodContractMixin}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.auth import _scram
from pgtwist.interfaces import IAuthMethod
from pgtwist.plugins.pgtwist_auth import (
    md5AuthMethod,
    passwordAuthMethod,
    scramSha256AuthMethod,
)
from tests.contract.auth import AuthMethodContractMixin


class PasswordAuthMethodContractTests(AuthMethodContractMixin, SynchronousTestCase):
    """
    The C{password} plugin honours the auth method contract.
    """

    def makeMethod(self) -> IAuthMethod:
        """
        The C{password} plugin instance.
        """
        return passwordAuthMethod


class Md5AuthMethodContractTests(AuthMethodContractMixin, SynchronousTestCase):
    """
    The C{md5} plugin honours the auth method contract.
    """

    def makeMethod(self) -> IAuthMethod:
        """
        The C{md5} plugin instance.
        """
        return md5AuthMethod


class ScramSha256AuthMethodContractTests(AuthMethodContractMixin, SynchronousTestCase):
    """
    The C{scram-sha-256} plugin honours the auth method contract.
    """

    def makeMethod(self) -> IAuthMethod:
        """
        The C{scram-sha-256} plugin instance; the key caches are emptied
        afterwards so tests do not depend on each other.
        """
        self.addCleanup(_scram.serverSecrets.clear)
        self.addCleanup(_scram.clientKeys.clear)
        return scramSha256AuthMethod
