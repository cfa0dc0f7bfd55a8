# -*- test-case-name: tests.unit.test_bootstrap -*-
"""
C{make run}: pgtwist in front of a throwaway PostgreSQL, ready for psql.

Starts an embedded cluster with a role C{test} (password C{test},
SCRAM-SHA-256) owning database C{test}, writes a configuration family into a
temporary directory (vault and admins file encrypted under a generated master
key; console admin C{admin}/C{admin}), and runs pgtwist on 127.0.0.1:6432
and a unix socket until Ctrl-C. TCP clients may use TLS: a throwaway CA
(L{pgtwist.testing.certs}) signs a certificate for C{localhost}, so that
C{sslmode=verify-full} with the CA's certificate as C{sslrootcert} works.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import tempfile
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred

if TYPE_CHECKING:
    from pgtwist.app.bootstrap import ConfigurationFiles


def writeConfiguration(
    directory: str,
    pgPort: int,
    port: int,
    socketDir: str,
    certificate: str | None = None,
    key: str | None = None,
) -> str:
    """
    Write pgtwist.conf and pgtwist_hba.conf for a local playground; return the
    main file's path.

    @param certificate: The server certificate's file; with C{key}, TLS is
        offered to clients (C{tls = on}).
    """
    conf = os.path.join(directory, "pgtwist.conf")
    tls = ""
    if certificate and key:
        tls = f"tls = on\ntls_cert_file = {certificate}\ntls_key_file = {key}\n"
    with open(conf, "w") as f:
        f.write(
            "[pgtwist]\n"
            "host = 127.0.0.1\n"
            f"port = {port}\n"
            f"unix_socket_dir = {socketDir}\n"
            "log_type = console\n"
            "log_level = info\n"
            "max_connections = 20\n"
            "idle_timeout = 600\n"
            "pipeline = session\n"
            f"{tls}"
            "\n"
            "[primary]\n"
            "host = 127.0.0.1\n"
            f"port = {pgPort}\n"
            "primary = on\n"
        )
    with open(os.path.join(directory, "pgtwist_hba.conf"), "w") as f:
        f.write(
            "# TYPE  DATABASE USER  ADDRESS  METHOD\nhost    all      all   all      scram-sha-256\n"
        )
    return conf


def configurationFiles(directory: str, masterKey: bytes) -> ConfigurationFiles:
    """
    The files L{main} writes in C{directory}, to be loaded and checked as
    C{twistd pgtwist} loads its own.
    """
    from pgtwist.app.bootstrap import ConfigurationFiles

    return ConfigurationFiles(
        os.path.join(directory, "pgtwist.conf"),
        hba=os.path.join(directory, "pgtwist_hba.conf"),
        users=os.path.join(directory, "pgtwist_users.conf"),
        admins=os.path.join(directory, "pgtwist_admins.conf"),
        masterKey=masterKey,
    )


def main(argv: list[str] | None = None) -> int:
    """
    Run the playground until interrupted.
    """
    parser = argparse.ArgumentParser(prog="python -m pgtwist.testing.devrun", description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PGTWIST_PORT", "6432")))
    options = parser.parse_args(argv)

    from twisted.internet import reactor

    from pgtwist.app import bootstrap
    from pgtwist.app.service import buildService
    from pgtwist.config.vault import writeUsersFile
    from pgtwist.testing.certs import CertificateAuthority
    from pgtwist.testing.embedded import PostgresCluster, hbaForRoles

    directory = tempfile.mkdtemp(prefix="pgtwist-run-")
    os.chmod(directory, 0o755)
    cluster = PostgresCluster()
    try:
        print("Starting a throwaway PostgreSQL ...", flush=True)
        cluster.start()
        cluster.createRole("test", "test", "scram-sha-256")
        cluster.createDatabase("test", "test")
        cluster.setHba(["local all all trust", *hbaForRoles({"test": "scram-sha-256"})])
        authority = CertificateAuthority("pgtwist make run CA")
        rootCertificate = authority.writeCertificate(directory, "root")
        certificate, key = authority.issue(
            "localhost", hosts=("localhost", "127.0.0.1", "::1")
        ).write(directory, "server")
        writeConfiguration(directory, cluster.port, options.port, directory, certificate, key)
        masterKey = secrets.token_urlsafe(32).encode()
        users = os.path.join(directory, "pgtwist_users.conf")
        writeUsersFile(users, {"test": "test"}, masterKey=masterKey)
        admins = os.path.join(directory, "pgtwist_admins.conf")
        writeUsersFile(admins, {"admin": "admin"}, masterKey=masterKey)

        files = configurationFiles(directory, masterKey)
        config = files.load()
        service = buildService(config, reactor, reloadConfiguration=files.load)
        bootstrap.setUpProcess(config.main, reactor, service.reload)
        service.startService()

        def ready(_: object) -> None:
            print(
                "\npgtwist is running in front of PostgreSQL "
                f"{cluster.host}:{cluster.port} (configuration in {directory}).\n"
                "Connect with:\n\n"
                f"    PGPASSWORD=test psql -h 127.0.0.1 -p {options.port} -U test test\n"
                f"    PGPASSWORD=test psql -h {directory} -p {options.port} -U test test\n\n"
                "Over TLS, checking pgtwist's certificate (a throwaway CA signed it):\n\n"
                f'    PGPASSWORD=test psql "sslmode=verify-full sslrootcert={rootCertificate} '
                f'host=localhost port={options.port} user=test dbname=test"\n\n'
                "The admin console (SHOW POOLS, SHOW STATS, ...):\n\n"
                f"    PGPASSWORD=admin psql -h 127.0.0.1 -p {options.port} -U admin pgbouncer\n\n"
                "Press Ctrl-C to stop both.\n",
                flush=True,
            )

        def failed(reason: object) -> None:
            print(f"pgtwist could not listen: {reason}", file=sys.stderr)
            reactor.stop()  # type: ignore[attr-defined]

        waiting: Deferred[object] = service.whenListening()  # type: ignore[assignment]
        waiting.addCallbacks(ready, failed)
        reactor.addSystemEventTrigger("before", "shutdown", service.stopService)  # type: ignore[attr-defined]
        reactor.run(installSignalHandlers=False)  # type: ignore[call-arg]
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)
        print("Stopped pgtwist and PostgreSQL.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
