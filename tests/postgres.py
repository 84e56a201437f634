"""
A throw-away PostgreSQL server for the tests: Debian's C{initdb} and
C{pg_ctl} make and run a cluster in a temporary directory (as the
C{postgres} user when the tests run as root, since the server refuses to
run as root), listening on its own Unix socket there and on a free TCP
port of the loopback interface.

One server is started per test process, on first use, and stopped when
the process exits; each test gets a database of its own (L{database}),
dropped when the test ends, which is much faster than a server per test.
When the binaries are missing the tests that need them fail, saying so:
they are not skipped.
"""

import atexit
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile

#: Where Debian's postgresql packages put the server's programs.
BINARIES = "/usr/lib/postgresql/*/bin"

#: The superuser of the throw-away cluster.
SUPERUSER = "postgres"


class PostgreSQLMissing(Exception):
    """
    PostgreSQL's server programs are not installed.
    """


def _binaries():
    """
    The directory of the newest installed PostgreSQL's programs.

    @raise PostgreSQLMissing: there is none.
    """
    found = [path for path in glob.glob(BINARIES) if os.path.exists(os.path.join(path, "pg_ctl"))]
    if not found:
        raise PostgreSQLMissing(
            "PostgreSQL's initdb and pg_ctl are not installed (looked in %s): "
            "install Debian's postgresql package (sh tests/run.sh does, as root)" % (BINARIES,)
        )
    return max(found, key=lambda path: int(path.split("/")[-2].split(".")[0]))


def _freePort():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgreSQLServer:
    """
    A PostgreSQL cluster in a temporary directory, with trust
    authentication for its superuser on its socket and loopback port.

    @ivar directory: the temporary directory: the cluster in C{data/}, the
        socket beside it.
    @ivar port: its TCP port on 127.0.0.1 (also the socket's number).
    """

    def __init__(self):
        self._bin = _binaries()
        self.directory = tempfile.mkdtemp(prefix="dicomd-postgres-")
        self.port = _freePort()
        self._user = None
        if os.geteuid() == 0:
            self._user = SUPERUSER
            entry = pwd.getpwnam(SUPERUSER)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        self._names = itertools.count(1)
        self._run(
            "initdb", "--pgdata", self.data, "--username", SUPERUSER, "--auth", "trust",
            "--encoding", "UTF8", "--locale", "C.UTF-8", "--no-sync",
        )

    @property
    def data(self):
        return os.path.join(self.directory, "data")

    def _run(self, program, *arguments):
        result = subprocess.run(
            [os.path.join(self._bin, program), *arguments],
            user=self._user, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise RuntimeError("%s failed (%d): %s%s" % (program, result.returncode, result.stdout, result.stderr))

    def start(self):
        """
        Start the server and wait until it accepts connections.  Durability
        is turned off: a test's database need not survive the machine.
        """
        options = "-k %s -p %d -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c synchronous_commit=off" % (
            self.directory, self.port,
        )
        self._run("pg_ctl", "start", "--pgdata", self.data, "--wait", "--log", os.path.join(self.directory, "log"), "-o", options)

    def stop(self, mode="fast"):
        """
        Stop the server (C{mode} as C{pg_ctl stop --mode}: C{immediate} is
        a crash) and wait until it has.
        """
        self._run("pg_ctl", "stop", "--pgdata", self.data, "--wait", "--mode", mode)

    def running(self):
        """
        Whether the server runs (C{pg_ctl status}).
        """
        return subprocess.run(
            [os.path.join(self._bin, "pg_ctl"), "status", "--pgdata", self.data],
            user=self._user, stdin=subprocess.DEVNULL, capture_output=True,
        ).returncode == 0

    def url(self, database, host=None):
        """
        The URL of one of the server's databases, through its socket, or
        through TCP to C{host}.
        """
        if host is None:
            return "postgresql://%s@/%s?host=%s&port=%d" % (SUPERUSER, database, self.directory, self.port)
        return "postgresql://%s@%s:%d/%s" % (SUPERUSER, host, self.port, database)

    def _admin(self, statement):
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as connection:
            connection.execute(statement)

    def createDatabase(self):
        """
        @return: the name of a new, empty database.
        """
        name = "test%d" % (next(self._names),)
        self._admin("CREATE DATABASE %s" % (name,))
        return name

    def dropDatabase(self, name):
        """
        Drop a database, closing the connections still open to it.
        """
        self._admin("DROP DATABASE IF EXISTS %s WITH (FORCE)" % (name,))

    def destroy(self):
        """
        Stop the server if it runs, and delete its directory.
        """
        try:
            self.stop("immediate")
        except RuntimeError:
            pass
        shutil.rmtree(self.directory, ignore_errors=True)


_server = None


def server():
    """
    The server of this test process, started on first use and destroyed
    when the process exits.

    @raise PostgreSQLMissing: PostgreSQL is not installed.
    """
    global _server
    if _server is None:
        started = PostgreSQLServer()
        atexit.register(started.destroy)
        started.start()
        _server = started
    return _server


def database(testCase):
    """
    A fresh database on this process's server, dropped when C{testCase}
    ends.

    @return: its URL.
    """
    running = server()
    name = running.createDatabase()
    testCase.addCleanup(running.dropDatabase, name)
    return running.url(name)
