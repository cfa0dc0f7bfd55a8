"""
Tests for L{pgtwist.net.frontend.FrontendProtocol} with users known by a
verifier only (C{auth_file}): the users sources' precedence, the method
HBA C{all} picks, and the credential handed to the pool after a login.
"""

from __future__ import annotations

from pgtwist.auth import _md5, _scram
from pgtwist.config.model import Configuration, HbaRule, MainSettings, UserEntry
from pgtwist.config.verifiers import Md5Verifier, ScramPassThrough
from pgtwist.net.frontend import FrontendState
from pgtwist.wire import codec, constants
from pgtwist.wire.messages import AuthenticationRequest, ErrorResponse, PasswordMessage
from tests.unit.test_frontend import SCRAM_SHA_256, FrontendTestCase, ScramClient

SECRET = _scram.makeSecret("carol-pw", b"0123456789abcdef")
MD5 = Md5Verifier(_md5.md5Secret("dave-pw", "dave"))


def verifierConfiguration(method: str) -> Configuration:
    """
    A configuration with a vault user, a frontend user and verifier users.
    """
    return Configuration(
        main=MainSettings(),
        hba=(HbaRule("host", "all", "all", None, method, "hba.conf", 1),),
        users={"alice": UserEntry("alice", "vault")},
        frontendUsers={"alice": UserEntry("alice", "frontend")},
        authFile={
            "alice": UserEntry("alice", "file"),
            "carol": UserEntry("carol", verifier=SECRET),
            "dave": UserEntry("dave", verifier=MD5),
        },
    )


class PrecedenceTests(FrontendTestCase):
    """
    L{Configuration.lookupUser} and L{Configuration.backendPassword}.
    """

    def test_lookupOrder(self) -> None:
        """
        Frontend users come first, then the vault, then C{auth_file}.
        """
        config = verifierConfiguration("md5")
        self.assertEqual(config.lookupUser("alice"), UserEntry("alice", "frontend"))
        without = Configuration(users=config.users, authFile=config.authFile)
        self.assertEqual(without.lookupUser("alice"), UserEntry("alice", "vault"))
        fileOnly = Configuration(authFile=config.authFile)
        self.assertEqual(fileOnly.lookupUser("alice"), UserEntry("alice", "file"))
        self.assertEqual(config.lookupUser("carol"), UserEntry("carol", verifier=SECRET))
        self.assertIsNone(config.lookupUser("mallory"))

    def test_backendPassword(self) -> None:
        """
        The vault's password logs into PostgreSQL, else a plaintext
        C{auth_file} entry; never a frontend user's password or a verifier.
        """
        config = verifierConfiguration("md5")
        self.assertEqual(config.backendPassword("alice"), "vault")
        fileOnly = Configuration(authFile=config.authFile)
        self.assertEqual(fileOnly.backendPassword("alice"), "file")
        self.assertIsNone(config.backendPassword("carol"))
        self.assertIsNone(config.backendPassword("mallory"))


class VerifierLoginTests(FrontendTestCase):
    """
    Logging in as users known by a verifier only.
    """

    def use(self, method: str) -> None:
        """
        Switch to the verifier configuration with C{method}.
        """
        self.factory.config = verifierConfiguration(method)

    def scram(self, user: str, password: str) -> list[object]:
        """
        Run a SCRAM-SHA-256 login as C{user}; return what pgtwist sent last.
        """
        self.startup(user=user)
        request = self.replies()[0]
        assert isinstance(request, AuthenticationRequest)
        self.assertEqual(request.code, constants.AUTH_SASL)
        client = ScramClient(password, "clientnonce")
        self.protocol.dataReceived(
            codec.encode(codec.encodeSASLInitialResponse(SCRAM_SHA_256, client.clientFirst()))
        )
        serverFirst = self.replies()[0]
        assert isinstance(serverFirst, AuthenticationRequest)
        self.protocol.dataReceived(
            codec.encode(PasswordMessage(client.serverFirst(serverFirst.data)))
        )
        return list(self.replies())

    def test_scramPassesClientKeyToPool(self) -> None:
        """
        A SCRAM login against a SCRAM verifier leaves the recovered
        ClientKey on the pool of the authenticated user.
        """
        self.use("scram-sha-256")
        self.scram("carol", "carol-pw")
        self.assertIs(self.protocol.state, FrontendState.READY)
        [(key, credential)] = self.pool.credentials
        self.assertEqual(key, ("db", "carol"))
        assert isinstance(credential, ScramPassThrough)
        self.assertEqual(credential.secret, SECRET)

    def test_wrongPasswordLeavesNothing(self) -> None:
        """
        A failed login hands nothing to the pool and gets 28P01.
        """
        self.use("scram-sha-256")
        replies = self.scram("carol", "guess")
        error = replies[-1]
        assert isinstance(error, ErrorResponse)
        self.assertEqual(error.code, "28P01")
        self.assertEqual(self.pool.credentials, [])
        self.assertEqual(self.pool.acquired, [])

    def test_md5MethodSwitchesToScram(self) -> None:
        """
        HBA C{md5} runs SCRAM for a SCRAM verifier, as PostgreSQL does.
        """
        self.use("md5")
        self.scram("carol", "carol-pw")
        self.assertIs(self.protocol.state, FrontendState.READY)
        self.assertEqual(len(self.pool.credentials), 1)

    def test_allPicksMd5ForMd5Verifier(self) -> None:
        """
        HBA C{all} asks an md5-verifier user for md5, and the md5 hash goes
        to the pool.
        """
        self.use("all")
        self.pool.code = None
        self.startup(user="dave")
        request = self.replies()[0]
        assert isinstance(request, AuthenticationRequest)
        self.assertEqual(request.code, constants.AUTH_MD5_PASSWORD)
        answer = _md5.md5Response("dave-pw", "dave", request.data)
        self.protocol.dataReceived(codec.encode(PasswordMessage(codec.encodeString(answer))))
        self.assertIs(self.protocol.state, FrontendState.READY)
        self.assertEqual(self.pool.credentials, [(("db", "dave"), MD5)])

    def test_allPicksScramForScramVerifier(self) -> None:
        """
        HBA C{all} asks a SCRAM-verifier user for SCRAM, whatever
        PostgreSQL asked before.
        """
        self.use("all")
        self.pool.code = constants.AUTH_MD5_PASSWORD
        self.scram("carol", "carol-pw")
        self.assertIs(self.protocol.state, FrontendState.READY)

    def test_vaultUserHandsNothing(self) -> None:
        """
        A frontend user's login (a separate client password) leaves no
        credential: the vault's password logs into PostgreSQL.
        """
        self.use("scram-sha-256")
        self.scram("alice", "frontend")
        self.assertIs(self.protocol.state, FrontendState.READY)
        self.assertEqual(self.pool.credentials, [])
