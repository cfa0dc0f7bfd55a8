"""
Tests for L{pgtwist.cli.vaultadmin}, the C{pgtwist-admin} console script,
run in-process with C{$HOME} and the working directory in a temporary
directory.
"""

from __future__ import annotations

import getpass
import io
import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable

from twisted.trial.unittest import SynchronousTestCase

from pgtwist import __version__
from pgtwist.cli import vaultadmin as vaultcli
from pgtwist.config.vault import readMasterKey, readUserNames, readUsersFile, writeMasterKey

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.9 and 3.10 (PyPy): tomli, what became tomllib
    import tomli as tomllib

MASTER_KEY = "secretsecret"


class _CliTestCase(SynchronousTestCase):
    """
    Common fixture: a private home, a working directory, captured output
    and a master key.

    @ivar home: The temporary C{$HOME}, also the working directory.
    @ivar users: The users file the tests pass with C{-f}.
    """

    def setUp(self) -> None:
        self.home = tempfile.mkdtemp(prefix="pgtwist-admin-")
        self.addCleanup(shutil.rmtree, self.home, True)
        self.patch(os, "environ", dict(os.environ, HOME=self.home))
        os.environ.pop(vaultcli.PASSWORD_ENVIRONMENT_VARIABLE, None)
        cwd = os.getcwd()
        os.chdir(self.home)
        self.addCleanup(os.chdir, cwd)
        self.users = os.path.join(self.home, "users.conf")
        self.prompts: list[str] = []

    def invoke(self, *argv: str) -> tuple[int, str, str]:
        """
        Run C{pgtwist-admin argv...} with fresh standard streams.

        @return: The exit status, standard output and standard error.
        """
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        status = vaultcli.main(list(argv))
        return status, out.getvalue(), err.getvalue()

    def assertFails(self, argv: list[str], fragment: str) -> str:
        """
        C{argv} exits with status 1, prints nothing on standard output and
        exactly one line containing C{fragment} on standard error.

        @return: The error line.
        """
        status, out, err = self.invoke(*argv)
        self.assertEqual(status, 1, err)
        self.assertEqual(out, "")
        self.assertEqual(err.count("\n"), 1, err)
        self.assertTrue(err.startswith("pgtwist-admin: "), err)
        self.assertIn(fragment, err)
        return err

    def answer(self, *answers: str) -> None:
        """
        Make C{getpass.getpass} return C{answers} in order, recording the
        prompts; running out of answers is end of input.
        """
        remaining = list(answers)

        def fakeGetpass(prompt: str = "Password: ", stream: object = None) -> str:
            self.prompts.append(prompt)
            if not remaining:
                raise EOFError
            return remaining.pop(0)

        self.patch(getpass, "getpass", fakeGetpass)

    def typeIn(self, text: str) -> None:
        """
        Make standard input hold C{text} (for the user name prompt).
        """
        self.patch(sys, "stdin", io.StringIO(text))

    def createMasterKey(self) -> None:
        """
        Create the master key through the tool.
        """
        status, _, err = self.invoke("master-key", "-P", MASTER_KEY)
        self.assertEqual(status, 0, err)


class HelpAndVersionTests(_CliTestCase):
    """
    Tests for C{-?}, C{-h}, C{--help}, C{-V} and command line errors.
    """

    def test_help(self) -> None:
        """
        C{-?}, C{-h} and C{--help} print the usage on standard output and
        exit 0, whatever else is on the line.
        """
        for flag in ("-?", "-h", "--help"):
            status, out, err = self.invoke(flag)
            self.assertEqual((status, err), (0, ""))
            self.assertIn("Usage:", out)
            self.assertIn("master-key", out)
            self.assertIn("user <subcommand>", out)
            self.assertIn("-f, --file FILE", out)
        status, out, _ = self.invoke("-f", "x", "user", "add", "-?")
        self.assertEqual(status, 0)
        self.assertIn("Usage:", out)
        self.assertFalse(os.path.exists("x"))

    def test_version(self) -> None:
        """
        C{-V} prints the program name and version.
        """
        self.assertEqual(self.invoke("-V"), (0, f"pgtwist-admin {__version__}\n", ""))
        self.assertEqual(self.invoke("--version"), (0, f"pgtwist-admin {__version__}\n", ""))

    def test_noCommand(self) -> None:
        """
        No command is an error.
        """
        self.assertFails([], "no command")
        self.assertFails(["-f", self.users], "no command")

    def test_unknownCommand(self) -> None:
        """
        Unknown commands, and C{user} without or with a bad subcommand, are
        errors.
        """
        self.assertFails(["frobnicate"], "unknown command 'frobnicate'")
        self.assertFails(["user"], "unknown command 'user'")
        self.assertFails(["user", "rename"], "unknown command 'user rename'")
        self.assertFails(["master-key", "extra"], "unknown command")

    def test_badOptions(self) -> None:
        """
        Unknown options and bad values are one-line errors with status 1,
        not argparse's usage dump and status 2.
        """
        self.assertFails(["--bogus", "user", "ls"], "--bogus")
        self.assertFails(["-l", "many", "user", "ls"], "invalid int value")
        self.assertFails(["-F", "xml", "user", "ls"], "invalid choice")
        self.assertFails(["-f"], "expected one argument")

    def test_contradictoryOptions(self) -> None:
        """
        C{-g} with C{-P}, and a length below 1, are refused before anything
        is done.
        """
        self.assertFails(["-g", "-P", "x", "master-key"], "cannot be combined")
        self.assertFails(["-g", "-l", "0", "master-key"], "at least 1")
        self.assertFalse(os.path.exists(os.path.join(self.home, ".pgtwist")))

    def test_consoleScript(self) -> None:
        """
        The C{pgtwist-admin} console script points at L{vaultcli.main}.
        """
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        with open(os.path.join(root, "pyproject.toml"), "rb") as f:
            scripts = tomllib.load(f)["project"]["scripts"]
        self.assertEqual(scripts["pgtwist-admin"], "pgtwist.cli.vaultadmin:main")

    def test_argvDefault(self) -> None:
        """
        Called without arguments, as the console script wrapper does,
        C{main} reads C{sys.argv}.
        """
        self.patch(sys, "argv", ["pgtwist-admin", "-V"])
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        self.assertEqual(vaultcli.main(), 0)
        self.assertEqual(out.getvalue(), f"pgtwist-admin {__version__}\n")


class MasterKeyCommandTests(_CliTestCase):
    """
    Tests for C{pgtwist-admin master-key}.
    """

    def keyPath(self) -> str:
        """
        Where the master key should be.
        """
        return os.path.join(self.home, ".pgtwist", "master.key")

    def test_givenKey(self) -> None:
        """
        C{-P} gives the key; it is stored privately in C{~/.pgtwist} and
        the path is printed, not the key.
        """
        status, out, err = self.invoke("master-key", "-P", MASTER_KEY)
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(out, f"Master key stored into {self.keyPath()}\n")
        self.assertEqual(readMasterKey(), MASTER_KEY.encode())
        self.assertEqual(stat.S_IMODE(os.stat(self.keyPath()).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(self.keyPath())).st_mode), 0o700)

    def test_existingKeyKept(self) -> None:
        """
        A second C{master-key} fails with pgagroal's message and leaves the
        first key in place.
        """
        self.createMasterKey()
        self.assertFails(["master-key", "-P", "another key"], "Master key already exists")
        self.assertFails(["-g", "master-key"], "Master key already exists")
        self.assertEqual(readMasterKey(), MASTER_KEY.encode())

    def test_generated(self) -> None:
        """
        C{-g} generates a key of C{-l} characters (64 by default) and does
        not print it.
        """
        status, out, _ = self.invoke("-g", "master-key")
        self.assertEqual(status, 0)
        key = readMasterKey().decode()
        self.assertEqual(len(key), 64)
        self.assertNotIn(key, out)
        os.remove(self.keyPath())
        self.assertEqual(self.invoke("master-key", "-g", "-l", "20")[0], 0)
        self.assertEqual(len(readMasterKey()), 20)

    def test_environment(self) -> None:
        """
        C{$PGTWIST_PASSWORD} gives the key when C{-P} and C{-g} do not.
        """
        os.environ[vaultcli.PASSWORD_ENVIRONMENT_VARIABLE] = "from the environment"
        self.assertEqual(self.invoke("master-key")[0], 0)
        self.assertEqual(readMasterKey(), b"from the environment")
        self.assertEqual(self.prompts, [])

    def test_interactive(self) -> None:
        """
        Without C{-P}, C{-g} or the environment variable, the key is asked
        for twice without echo.
        """
        self.answer("interactive key", "interactive key")
        self.assertEqual(self.invoke("master-key")[0], 0)
        self.assertEqual(readMasterKey(), b"interactive key")
        self.assertEqual(
            self.prompts, ["Master key (will not echo): ", "Verify master key (will not echo): "]
        )

    def test_interactiveTooShort(self) -> None:
        """
        An interactive key shorter than 8 characters is refused.
        """
        self.answer("short", "short")
        self.assertFails(["master-key"], "at least 8 characters")
        self.assertFalse(os.path.exists(self.keyPath()))

    def test_interactiveMismatch(self) -> None:
        """
        Two different interactive answers are refused.
        """
        self.answer("first answer", "second answer")
        self.assertFails(["master-key"], "do not match")
        self.assertFalse(os.path.exists(self.keyPath()))

    def test_endOfInput(self) -> None:
        """
        End of input at a prompt aborts with status 1 and no traceback.
        """
        self.answer()
        self.assertFails(["master-key"], "aborted")

    def test_emptyKey(self) -> None:
        """
        An empty C{-P} key is refused.
        """
        self.assertFails(["master-key", "-P", ""], "Empty master key")

    def test_openDirectory(self) -> None:
        """
        An existing C{~/.pgtwist} the group can read is refused.
        """
        os.mkdir(os.path.join(self.home, ".pgtwist"))
        os.chmod(os.path.join(self.home, ".pgtwist"), 0o750)
        self.assertFails(["master-key", "-P", MASTER_KEY], "0700")


class UserCommandTests(_CliTestCase):
    """
    Tests for C{pgtwist-admin user add|edit|del|ls} and their pgagroal
    aliases.
    """

    def setUp(self) -> None:
        super().setUp()
        self.createMasterKey()

    def add(self, user: str, password: str, command: tuple[str, ...] = ("user", "add")) -> None:
        """
        Add C{user} non-interactively and check it succeeded silently.
        """
        self.assertEqual(
            self.invoke("-f", self.users, "-U", user, "-P", password, *command), (0, "", "")
        )

    def stored(self) -> dict[str, str]:
        """
        The decrypted users file.
        """
        return readUsersFile(self.users, MASTER_KEY.encode())

    def test_add(self) -> None:
        """
        C{user add -U -P} stores the user, silently; the file is private.
        """
        self.add("test", "test")
        self.add("other", "pw2")
        self.assertEqual(self.stored(), {"test": "test", "other": "pw2"})
        self.assertEqual(stat.S_IMODE(os.stat(self.users).st_mode), 0o600)

    def test_addExisting(self) -> None:
        """
        Adding an existing user fails with pgagroal's "Existing user" and
        leaves the password alone.
        """
        self.add("test", "test")
        self.assertFails(
            ["-f", self.users, "-U", "test", "-P", "new", "user", "add"], "Existing user"
        )
        self.assertEqual(self.stored(), {"test": "test"})

    def test_optionsAnywhere(self) -> None:
        """
        Options may come before, between or after the command words.
        """
        self.assertEqual(self.invoke("user", "-f", self.users, "add", "-U", "a", "-P", "b")[0], 0)
        self.assertEqual(self.stored(), {"a": "b"})

    def test_addWithoutMasterKey(self) -> None:
        """
        Without a master key, adding fails before asking anything.
        """
        os.remove(os.path.join(self.home, ".pgtwist", "master.key"))
        self.answer()
        self.assertFails(["-f", self.users, "-U", "u", "-P", "p", "user", "add"], "master-key")
        self.assertEqual(self.prompts, [])
        self.assertFalse(os.path.exists(self.users))

    def test_addGenerated(self) -> None:
        """
        C{-g} generates a password of 64 letters and digits, stores it and
        prints it once.
        """
        status, out, err = self.invoke("-f", self.users, "-U", "gen", "-g", "user", "add")
        self.assertEqual((status, err), (0, ""))
        password = self.stored()["gen"]
        self.assertEqual(out, f"Password : {password}\n")
        self.assertEqual(len(password), 64)
        self.assertTrue(all(c in vaultcli.PASSWORD_ALPHABET for c in password))

    def test_addGeneratedLength(self) -> None:
        """
        C{-l} sets the generated password's length.
        """
        self.assertEqual(
            self.invoke("-f", self.users, "-U", "gen", "-g", "-l", "12", "user", "add")[0], 0
        )
        self.assertEqual(len(self.stored()["gen"]), 12)

    def test_addGeneratedJSON(self) -> None:
        """
        With C{-F json} the outcome is a JSON document in pgagroal's
        C{command}/C{application} wrapper.
        """
        status, out, _ = self.invoke("-F", "json", "-f", self.users, "-U", "g", "-g", "user", "add")
        self.assertEqual(status, 0)
        document = json.loads(out)
        self.assertEqual(document["command"]["name"], "user add")
        self.assertEqual(document["command"]["status"], "OK")
        self.assertEqual(document["command"]["exit-status"], 0)
        self.assertEqual(document["command"]["output"]["password"], self.stored()["g"])
        self.assertEqual(document["application"]["name"], "pgtwist-admin")

    def test_addInteractive(self) -> None:
        """
        Without C{-U} and C{-P}, the user name is read from standard input
        and the password asked for twice without echo.
        """
        self.typeIn("alice\n")
        self.answer("wonderland", "wonderland")
        status, out, err = self.invoke("-f", self.users, "user", "add")
        self.assertEqual((status, out), (0, ""))
        self.assertEqual(err, "User name: ")
        self.assertEqual(self.prompts, ["Password : ", "Verify   : "])
        self.assertEqual(self.stored(), {"alice": "wonderland"})

    def test_addInteractiveMismatch(self) -> None:
        """
        Two different interactive passwords are refused and nothing is
        written.
        """
        self.answer("one", "two")
        self.assertFails(["-f", self.users, "-U", "alice", "user", "add"], "Passwords do not match")
        self.assertFalse(os.path.exists(self.users))

    def test_addInteractiveEmpty(self) -> None:
        """
        An empty password, typed or given, is refused.
        """
        self.answer("")
        self.assertFails(["-f", self.users, "-U", "alice", "user", "add"], "Empty password")
        self.assertFails(
            ["-f", self.users, "-U", "alice", "-P", "", "user", "add"], "Empty password"
        )
        self.assertFalse(os.path.exists(self.users))

    def test_badUserName(self) -> None:
        """
        A user name that cannot be stored is refused, typed or given.
        """
        self.assertFails(["-f", self.users, "-U", "a:b", "-P", "p", "user", "add"], "':'")
        # Typed answers: standard error holds the prompt, then the error line.
        self.typeIn("\n")
        status, out, err = self.invoke("-f", self.users, "-P", "p", "user", "add")
        self.assertEqual((status, out), (1, ""))
        self.assertEqual(err, "User name: pgtwist-admin: empty user name\n")
        self.typeIn("")
        status, out, err = self.invoke("-f", self.users, "-P", "p", "user", "add")
        self.assertEqual((status, out), (1, ""))
        self.assertEqual(err, "User name: pgtwist-admin: aborted\n")
        self.assertFalse(os.path.exists(self.users))

    def test_defaultFile(self) -> None:
        """
        Without C{-f} the users file is C{pgtwist_users.conf} in the
        current directory.
        """
        self.assertEqual(self.invoke("-U", "u", "-P", "p", "user", "add")[0], 0)
        self.assertEqual(readUserNames(os.path.join(self.home, "pgtwist_users.conf")), ["u"])
        self.assertEqual(self.invoke("user", "ls"), (0, "u\n", ""))

    def test_edit(self) -> None:
        """
        C{user edit} changes one password and keeps the others.
        """
        self.add("a", "1")
        self.add("b", "2")
        self.assertEqual(
            self.invoke("-f", self.users, "-U", "a", "-P", "one", "user", "edit")[0], 0
        )
        self.assertEqual(self.stored(), {"a": "one", "b": "2"})

    def test_editInteractive(self) -> None:
        """
        C{user edit} asks for the new password twice when not given.
        """
        self.add("a", "1")
        self.answer("new", "new")
        self.assertEqual(self.invoke("-f", self.users, "-U", "a", "user", "edit")[0], 0)
        self.assertEqual(self.stored(), {"a": "new"})

    def test_editUnknown(self) -> None:
        """
        Editing a user that is not there, or a file that is not there, fails.
        """
        self.add("a", "1")
        self.assertFails(
            ["-f", self.users, "-U", "zz", "-P", "x", "user", "edit"], "Unknown user: zz"
        )
        missing = os.path.join(self.home, "missing.conf")
        self.assertFails(["-f", missing, "-U", "a", "-P", "x", "user", "edit"], "missing.conf")
        self.assertEqual(self.stored(), {"a": "1"})

    def test_del(self) -> None:
        """
        C{user del} removes one user and keeps the others.
        """
        self.add("a", "1")
        self.add("b", "2")
        self.assertEqual(self.invoke("-f", self.users, "-U", "a", "user", "del"), (0, "", ""))
        self.assertEqual(self.stored(), {"b": "2"})

    def test_delUnknown(self) -> None:
        """
        Deleting a user that is not there fails and changes nothing.
        """
        self.add("a", "1")
        self.assertFails(["-f", self.users, "-U", "zz", "user", "del"], "Unknown user: zz")
        self.assertEqual(self.stored(), {"a": "1"})

    def test_ls(self) -> None:
        """
        C{user ls} prints the user names one a line, never a password.
        """
        self.add("alice", "alice-password")
        self.add("bob", "bob-password")
        status, out, err = self.invoke("-f", self.users, "user", "ls")
        self.assertEqual((status, out, err), (0, "alice\nbob\n", ""))

    def test_lsJSON(self) -> None:
        """
        C{user ls -F json} gives the names and their count.
        """
        self.add("alice", "alice-password")
        status, out, _ = self.invoke("-F", "json", "-f", self.users, "user", "ls")
        self.assertEqual(status, 0)
        self.assertNotIn("alice-password", out)
        output = json.loads(out)["command"]["output"]
        self.assertEqual(output, {"users": ["alice"], "count": 1})

    def test_lsWithoutMasterKey(self) -> None:
        """
        Listing needs no master key.
        """
        self.add("alice", "a")
        os.remove(os.path.join(self.home, ".pgtwist", "master.key"))
        self.assertEqual(self.invoke("-f", self.users, "user", "ls"), (0, "alice\n", ""))

    def test_lsMissingFile(self) -> None:
        """
        Listing a missing file fails.
        """
        self.assertFails(["-f", self.users, "user", "ls"], self.users)

    def test_wrongMasterKey(self) -> None:
        """
        After the master key changed, changing the file fails with the
        vault's "wrong master key?" message and leaves it alone.
        """
        self.add("alice", "a")
        writeMasterKey(b"a different key", replace=True)
        self.assertFails(
            ["-f", self.users, "-U", "bob", "-P", "b", "user", "add"], "wrong master key?"
        )
        self.assertFails(["-f", self.users, "-U", "alice", "user", "del"], "wrong master key?")
        self.assertEqual(self.stored(), {"alice": "a"})

    def test_malformedFile(self) -> None:
        """
        A malformed users file is reported with its line number.
        """
        with open(self.users, "w") as f:
            f.write("# comment\nnot an entry\n")
        err = self.assertFails(["-f", self.users, "user", "ls"], f"{self.users}:2:")
        self.assertIn("expected 'user:password'", err)

    def test_aliases(self) -> None:
        """
        pgagroal's C{add-user}, C{update-user}, C{remove-user} and
        C{list-users} do what C{user add|edit|del|ls} do.
        """
        self.add("a", "1", ("add-user",))
        self.add("b", "2", ("add-user",))
        self.add("a", "one", ("update-user",))
        self.assertEqual(self.stored(), {"a": "one", "b": "2"})
        self.assertEqual(self.invoke("-f", self.users, "-U", "b", "remove-user")[0], 0)
        self.assertEqual(self.invoke("-f", self.users, "list-users"), (0, "a\n", ""))

    def test_aliasTable(self) -> None:
        """
        Every alias maps to a canonical command that has an action.
        """
        canonical = {"master-key", "user add", "user edit", "user del", "user ls"}
        self.assertEqual(set(vaultcli.COMMANDS.values()), canonical)
        for words, name in vaultcli.COMMANDS.items():
            if len(words) == 2:
                self.assertEqual(" ".join(words), name)

    def test_passwordsNeverPrinted(self) -> None:
        """
        No command prints a password that was given to it.
        """
        outputs: list[str] = []
        commands: list[Callable[[], tuple[int, str, str]]] = [
            lambda: self.invoke("-f", self.users, "-U", "u", "-P", "hunter2-secret", "user", "add"),
            lambda: self.invoke(
                "-f", self.users, "-U", "u", "-P", "hunter2-secret2", "user", "edit"
            ),
            lambda: self.invoke("-F", "json", "-f", self.users, "user", "ls"),
            lambda: self.invoke("-f", self.users, "-U", "u", "-P", "hunter2-secret", "user", "add"),
        ]
        for command in commands:
            _, out, err = command()
            outputs.append(out + err)
        self.assertNotIn("hunter2", "".join(outputs))
