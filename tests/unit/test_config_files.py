"""
Tests for L{pgtwist.config.loader}: the databases file (C{-l}) and the user
vaults (C{-u}, C{-F}, C{-A}, C{-S}).
"""

from __future__ import annotations

import os

from pgtwist.config import vault
from pgtwist.config.loader import ConfigError
from pgtwist.config.model import DatabaseLimit, UserEntry
from tests.unit._configfiles import MINIMAL, FilesTestCase

MASTER_KEY = b"a master key for the tests"


class LimitsFileTests(FilesTestCase):
    """
    Tests for reading C{pgtwist_databases.conf}.
    """

    def loadLimits(self, text: str, maxConnections: int = 100) -> tuple[DatabaseLimit, ...]:
        """
        Load a minimal main file with C{text} as the databases file.
        """
        main = MINIMAL.replace(
            "port = 6432\n", f"port = 6432\nmax_connections = {maxConnections}\n"
        )
        return self.load(main, limitsPath=self.write("databases.conf", text)).limits

    def limitsError(self, text: str, maxConnections: int = 100) -> str:
        """
        Load C{text} as the databases file and return the L{ConfigError}'s
        text, with the path shortened to C{db.conf}.
        """
        error = self.assertRaises(ConfigError, self.loadLimits, text, maxConnections)
        return str(error).replace(os.path.join(self.directory, "databases.conf"), "db.conf")

    def test_pgagroalSample(self) -> None:
        """
        pgagroal's documented lines parse: C{all} as MAX_SIZE is C{None},
        aliases follow C{=}.
        """
        limits = self.loadLimits(
            "# DATABASE[=alias,...] USER  MAX_SIZE INITIAL_SIZE MIN_SIZE\n"
            "mydb                   myuser all\n"
            "production_db=prod,main myuser 10     5            2  # prefilled\n"
        )
        path = os.path.join(self.directory, "databases.conf")
        self.assertEqual(
            limits,
            (
                DatabaseLimit("mydb", "myuser", None, path=path, line=2),
                DatabaseLimit(
                    "production_db", "myuser", 10, 5, 2, ("prod", "main"), path=path, line=3
                ),
            ),
        )
        self.assertEqual(self.warnings, [])

    def test_initialAll(self) -> None:
        """
        C{all} as INITIAL_SIZE is MAX_SIZE; with MAX_SIZE C{all} too, it is
        0 with a warning.
        """
        limits = self.loadLimits("a u 7 all\nb u all all\n")
        self.assertEqual([limit.initialSize for limit in limits], [7, 0])
        self.assertEqual(
            self.warnings,
            [
                f"{os.path.join(self.directory, 'databases.conf')}:2: initial_size 'all' needs "
                f"a numeric max_size; using 0 (no prefill)"
            ],
        )

    def test_pipeline(self) -> None:
        """
        The sixth column names a pipeline, lowercased.
        """
        limits = self.loadLimits("a u 5 1 1 Transaction\n")
        self.assertEqual(limits[0].pipeline, "transaction")
        self.assertEqual(
            self.limitsError("a u 5 1 1 !bad\n"),
            "db.conf:1: pipeline: expected a pipeline name such as auto, session, transaction "
            "or performance, got '!bad'",
        )

    def test_corrections(self) -> None:
        """
        Incoherent sizes are corrected with a warning, in pgagroal's order.
        """
        limits = self.loadLimits("a u 5 9\nb u 5 0 8\nc u 5 2 3\n")
        path = os.path.join(self.directory, "databases.conf")
        self.assertEqual(
            [(limit.maxSize, limit.initialSize, limit.minSize) for limit in limits],
            [(5, 5, 0), (5, 0, 5), (5, 3, 3)],
        )
        self.assertEqual(
            self.warnings,
            [
                f"{path}:1: initial_size 9 is greater than max_size 5; using 5",
                f"{path}:2: min_size 8 is greater than max_size 5; using 5",
                f"{path}:3: initial_size 2 is smaller than min_size 3; using 3",
            ],
        )

    def test_badSizes(self) -> None:
        """
        Sizes must be integers >= 0 (or C{all} where allowed).
        """
        self.assertEqual(
            self.limitsError("a u lots\n"),
            "db.conf:1: max_size: expected an integer >= 0 or all, got 'lots'",
        )
        self.assertEqual(
            self.limitsError("a u 5 -1\n"),
            "db.conf:1: initial_size: expected an integer >= 0 or all, got '-1'",
        )
        self.assertEqual(
            self.limitsError("a u 5 1 all\n"),
            "db.conf:1: min_size: expected an integer >= 0, got 'all'",
        )

    def test_fieldCount(self) -> None:
        """
        Lines have three to six fields.
        """
        message = (
            "db.conf:1: expected DATABASE[=ALIAS,...] USER MAX_SIZE [INITIAL_SIZE [MIN_SIZE "
            "[PIPELINE]]], got {} fields"
        )
        self.assertEqual(self.limitsError("a u\n"), message.format(2))
        self.assertEqual(self.limitsError("a u 1 1 1 session x\n"), message.format(7))

    def test_aliasErrors(self) -> None:
        """
        C{all} cannot have aliases; aliases are non-empty, listed once, and
        neither a database name nor another database's alias.
        """
        cases = [
            ("all=x u 5\n", "db.conf:1: 'all' cannot have aliases"),
            ("=x u 5\n", "db.conf:1: missing database name"),
            ("a=x,,y u 5\n", "db.conf:1: empty alias in 'a=x,,y'"),
            ("a=x,x u 5\n", "db.conf:1: alias 'x' is listed twice"),
            ("a u 5\nb=a u 5\n", "db.conf:2: alias 'a' is also a database name"),
            ("a=a u 5\n", "db.conf:1: alias 'a' is also a database name"),
            ("a=x u 5\nb=x u 5\n", "db.conf:2: alias 'x' already names database 'a' (line 1)"),
        ]
        for text, message in cases:
            self.assertEqual(self.limitsError(text), message)

    def test_aliasRepeatedForSameDatabase(self) -> None:
        """
        The same alias may be given on several lines of its own database.
        """
        limits = self.loadLimits("a=x u1 5\na=x u2 5\n")
        self.assertEqual([limit.aliases for limit in limits], [("x",), ("x",)])

    def test_duplicatePair(self) -> None:
        """
        A (database, user) pair may appear once.
        """
        self.assertEqual(
            self.limitsError("a u 5\n\na u 6\n"),
            "db.conf:3: duplicate entry for database 'a' and user 'u' (first at line 1)",
        )

    def test_tooManyConnections(self) -> None:
        """
        The numeric MAX_SIZEs may not add up to more than max_connections.
        """
        self.assertEqual(len(self.loadLimits("a u 6\nb u 4\nc u all\n", 10)), 3)
        self.assertEqual(
            self.limitsError("a u 6\nb u 5\n", 10),
            "db.conf: the max_size values add up to 11, more than max_connections (10)",
        )


class UserFilesTests(FilesTestCase):
    """
    Tests for reading the user vaults (C{-u}, C{-F}, C{-A}, C{-S}) through
    L{pgtwist.config.vault}.
    """

    def vault(self, name: str, users: dict[str, str]) -> str:
        """
        Write a vault file encrypted with L{MASTER_KEY}.

        @return: Its path.
        """
        path = os.path.join(self.directory, name)
        vault.writeUsersFile(path, users, MASTER_KEY)
        return path

    def test_allFiles(self) -> None:
        """
        Users, frontend users, admins and the superuser become
        L{UserEntry}s; the paths are recorded.
        """
        paths = {
            "usersPath": self.vault("users.conf", {"alice": "a-secret", "bob": "b-secret"}),
            "frontendUsersPath": self.vault("frontend.conf", {"alice": "front"}),
            "adminsPath": self.vault("admins.conf", {"admin": "adm"}),
            "superuserPath": self.vault("superuser.conf", {"postgres": "su"}),
        }
        config = self.load(MINIMAL, masterKey=MASTER_KEY, **paths)
        self.assertEqual(
            config.users,
            {"alice": UserEntry("alice", "a-secret"), "bob": UserEntry("bob", "b-secret")},
        )
        self.assertEqual(config.frontendUsers, {"alice": UserEntry("alice", "front")})
        self.assertEqual(config.admins, {"admin": UserEntry("admin", "adm")})
        self.assertEqual(config.superuser, UserEntry("postgres", "su"))
        self.assertEqual(config.paths.users, paths["usersPath"])
        self.assertEqual(config.paths.frontendUsers, paths["frontendUsersPath"])
        self.assertEqual(config.paths.admins, paths["adminsPath"])
        self.assertEqual(config.paths.superuser, paths["superuserPath"])

    def test_vaultError(self) -> None:
        """
        A vault that cannot be decrypted is a L{ConfigError} with the
        vault's path and line.
        """
        path = self.vault("users.conf", {"alice": "a-secret"})
        error = self.loadError(MINIMAL, usersPath=path, masterKey=b"another key entirely")
        self.assertEqual((error.path, error.line), (path, 2))
        self.assertTrue(str(error).startswith(f"{path}:2: "), str(error))
        self.assertNotIn("a-secret", str(error))

    def test_malformedVault(self) -> None:
        """
        A malformed vault line is a L{ConfigError} at that line.
        """
        path = self.write("users.conf", "# users\nalice\n")
        error = self.loadError(MINIMAL, usersPath=path, masterKey=MASTER_KEY)
        self.assertEqual(str(error), f"{path}:2: expected 'user:password'")

    def test_superuserCount(self) -> None:
        """
        The superuser file must hold exactly one user.
        """
        path = self.vault("su.conf", {"a": "1", "b": "2"})
        error = self.loadError(MINIMAL, superuserPath=path, masterKey=MASTER_KEY)
        self.assertEqual(
            str(error), f"{path}: expected exactly one user in the superuser file, found 2"
        )

    def test_frontendUserWithoutUser(self) -> None:
        """
        Every frontend user must also be in the users file, as pgagroal
        requires.
        """
        users = self.vault("users.conf", {"alice": "a"})
        frontend = self.vault("frontend.conf", {"alice": "x", "carol": "y"})
        error = self.loadError(
            MINIMAL, usersPath=users, frontendUsersPath=frontend, masterKey=MASTER_KEY
        )
        self.assertEqual(
            str(error), f"{frontend}: frontend user 'carol' must also be in the users file {users}"
        )
        error = self.loadError(MINIMAL, frontendUsersPath=frontend, masterKey=MASTER_KEY)
        self.assertEqual(
            str(error), f"{frontend}: frontend user 'alice' must also be in a users file (-u)"
        )
