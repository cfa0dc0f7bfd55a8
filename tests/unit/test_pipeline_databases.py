"""
Tests for L{pgtwist.pipelines._databases.exclusiveDatabase}: which
statements need a database without other sessions, read as PostgreSQL's
lexer reads them.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.pipelines._databases import STARTS, exclusiveDatabase


class ExclusiveDatabaseTests(SynchronousTestCase):
    """
    L{exclusiveDatabase}.
    """

    def check(self, sql: str, expected: str | None) -> None:
        """
        C{sql} (UTF-8) needs C{expected} free of other sessions; when it
        does, its first byte is one of L{STARTS}, which the relays look at
        before searching.
        """
        self.assertEqual(exclusiveDatabase(sql.encode()), expected, sql)
        if expected is not None:
            self.assertIn(sql.encode()[:1], STARTS)

    def test_drop(self) -> None:
        """
        C{DROP DATABASE}, with C{IF EXISTS} and options, in any case.
        """
        self.check("DROP DATABASE x", "x")
        self.check("drop database if exists x;", "x")
        self.check("Drop Database IF EXISTS x WITH (FORCE)", "x")
        self.check("DROP DATABASE MyDb", "mydb")
        self.check("DROP DATABASE if", "if")

    def test_quotedNames(self) -> None:
        """
        Double-quoted names keep their case, blanks and escaped quotes.
        """
        self.check('DROP DATABASE "MyDb"', "MyDb")
        self.check('DROP DATABASE "a ""b"" c"', 'a "b" c')
        self.check('DROP DATABASE IF EXISTS "drop database y"', "drop database y")
        self.check('DROP DATABASE "Été"', "Été")

    def test_comments(self) -> None:
        """
        Blanks and comments, nested block comments included, anywhere
        between the words.
        """
        self.check("  -- tidy up\n DROP /* the /* whole */ db */ DATABASE\t\nx -- done", "x")
        self.check("/* DROP DATABASE y */ SELECT 1", None)
        self.check("-- DROP DATABASE y\nSELECT 1", None)

    def test_rename(self) -> None:
        """
        C{ALTER DATABASE ... RENAME TO} and C{SET TABLESPACE} need the old
        name free; other C{ALTER DATABASE} forms need nothing.
        """
        self.check("ALTER DATABASE x RENAME TO y", "x")
        self.check('alter database "X" rename to "Y"', "X")
        self.check("ALTER DATABASE x SET TABLESPACE fast", "x")
        self.check("ALTER DATABASE x SET search_path TO a", None)
        self.check("ALTER DATABASE x OWNER TO bob", None)
        self.check("ALTER DATABASE x CONNECTION LIMIT 3", None)

    def test_createFromTemplate(self) -> None:
        """
        C{CREATE DATABASE} needs its template free: C{TEMPLATE x},
        C{TEMPLATE = x}, C{TEMPLATE 'x'}; C{template1} by default.
        """
        self.check("CREATE DATABASE y TEMPLATE x", "x")
        self.check("CREATE DATABASE y WITH OWNER bob TEMPLATE = x ENCODING 'UTF8'", "x")
        self.check("CREATE DATABASE y TEMPLATE 'x'", "x")
        self.check('CREATE DATABASE y TEMPLATE "X"', "X")
        self.check("CREATE DATABASE y", "template1")
        self.check("CREATE DATABASE y TEMPLATE DEFAULT", "template1")
        self.check('CREATE DATABASE y TEMPLATE "default"', "default")

    def test_otherStatements(self) -> None:
        """
        Statements that merely mention databases need nothing.
        """
        self.check("SELECT datname FROM pg_database", None)
        self.check("SELECT 'DROP DATABASE x'", None)
        self.check("DROP TABLE database", None)
        self.check("COMMENT ON DATABASE x IS 'y'", None)
        self.check("GRANT CONNECT ON DATABASE x TO bob", None)
        self.check("DROP DATABASE", None)
        self.check("", None)

    def test_unreadableNames(self) -> None:
        """
        Names with escapes pgtwist does not read give C{None}: nothing is
        closed, PostgreSQL answers as it would.
        """
        self.check('DROP DATABASE U&"d\\0061t\\+000061"', None)
        self.check("CREATE DATABASE y TEMPLATE E'x'", None)

    def test_unclosed(self) -> None:
        """
        An unclosed comment or quote ends the text; nothing is raised.
        """
        self.check("DROP DATABASE /* x", None)
        self.check('DROP DATABASE "x', None)
