"""PostgreSQL (system binaries, wal_level=logical) with the learner role and database, and its probe."""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
from pathlib import Path

from delab import config
from delab.stack import layout
from delab.stack.errors import MissingPrerequisite, ServiceFailed
from delab.stack.probes import ProbeFailed, port_open
from delab.stack.services.base import (
    HOST,
    NativeService,
    ProcessSpec,
)


def _traversable_by(path: Path, uid: int, gid: int) -> bool:
    """True when a user can walk down to path (every ancestor searchable by them)."""
    for folder in [path, *path.parents]:
        if not folder.exists():
            continue
        st = folder.stat()
        if st.st_uid == uid:
            needed = stat.S_IXUSR
        elif st.st_gid == gid:
            needed = stat.S_IXGRP
        else:
            needed = stat.S_IXOTH
        if not st.st_mode & needed:
            return False
    return True


def probe_postgres() -> None:
    """SELECT 1 as the learner role over TCP."""
    pg = config.postgres()
    if not port_open(pg.host, pg.port):
        raise ProbeFailed(f"nothing listens on {pg.host}:{pg.port}")
    try:
        import psycopg
    except ImportError:
        return
    try:
        with psycopg.connect(
            host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname=pg.database, connect_timeout=3
        ) as conn:
            if conn.execute("SELECT 1").fetchone() != (1,):
                raise ProbeFailed("SELECT 1 did not return 1")
    except psycopg.Error as error:
        raise ProbeFailed(f"SELECT 1 as {pg.user}@{pg.database}: {str(error).strip().splitlines()[-1]}") from None


#: the server log's line prefix, in both profiles: time, process, and the login role and database (%q: not for
#: background processes)
LOG_LINE_PREFIX = "%m [%p] %q%u@%d "

#: A superuser-owned function the learner role may call to switch statement logging on for one of its own
#: (non-superuser) roles: `log_statement` is a superuser setting, and the audit of reads in lab 05.04 needs it.
#: The same text is in infra/docker/postgres/initdb.d/10-delab.sql (a parity test keeps them equal).
LOG_STATEMENTS_FUNCTION = """CREATE OR REPLACE FUNCTION public.delab_log_statements(role_name text, level text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  IF level NOT IN ('none', 'ddl', 'mod', 'all') THEN
    RAISE EXCEPTION 'log level must be none, ddl, mod or all, not %', level;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name AND NOT rolsuper) THEN
    RAISE EXCEPTION 'no role % that is not a superuser', role_name;
  END IF;
  EXECUTE format('ALTER ROLE %I SET log_statement = %L', role_name, level);
END $fn$;
REVOKE ALL ON FUNCTION public.delab_log_statements(text, text) FROM PUBLIC"""

#: what the learner role may do, in both profiles (infra/docker/postgres/initdb.d/10-delab.sql says the same)
LEARNER_ROLE_ATTRIBUTES = "LOGIN REPLICATION CREATEDB CREATEROLE"


class Postgres(NativeService):
    """PostgreSQL from the system's binaries, wal_level=logical, with the learner role and database."""

    name = "postgres"
    start_timeout = 60.0

    def __init__(self) -> None:
        self._bootstrapped = False

    def run_as(self) -> str | None:
        """PostgreSQL refuses root: as root, run it as the `postgres` system user."""
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise MissingPrerequisite(
                "running as root needs a `postgres` system user to run PostgreSQL: apt install postgresql "
                "(creates it) or run the stack as a normal user"
            ) from None
        return "postgres"

    def root(self) -> Path:
        """PostgreSQL's folder (cluster + socket), reachable by the user that runs it."""
        home = layout.data_dir("postgres")
        user = self.run_as()
        if user is None or home.is_symlink():
            return home.resolve() if home.is_symlink() else home
        entry = pwd.getpwnam(user)
        if _traversable_by(home.parent, entry.pw_uid, entry.pw_gid):
            return home
        # The state folder sits somewhere the postgres user cannot reach (e.g. under /root): keep the cluster in
        # a folder of its own and leave a symlink in the state folder so reset finds it.
        digest = hashlib.sha1(str(home).encode()).hexdigest()[:10]
        outside = Path("/var/tmp") / f"delab-postgres-{digest}"
        outside.mkdir(parents=True, exist_ok=True)
        home.parent.mkdir(parents=True, exist_ok=True)
        home.symlink_to(outside, target_is_directory=True)
        return outside

    def cluster(self) -> Path:
        return self.root() / "cluster"

    def socket_dir(self) -> Path:
        sock = self.root() / "sock"
        if len(str(sock)) + len("/.s.PGSQL.65535") >= 100:  # unix socket paths are limited to ~107 bytes
            sock = Path("/tmp") / f"delab-pg-{hashlib.sha1(str(sock).encode()).hexdigest()[:10]}"
        return sock

    def _as_user(self) -> dict:
        user = self.run_as()
        return {"user": user, "group": user, "extra_groups": []} if user else {}

    def _own(self, *paths: Path) -> None:
        user = self.run_as()
        if user:
            entry = pwd.getpwnam(user)
            for path in paths:
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def prepare(self) -> None:
        self._bootstrapped = False  # roles and database are checked again at every start (after a reset too)
        bindir = layout.pg_bindir()
        root, sock = self.root(), self.socket_dir()
        root.mkdir(parents=True, exist_ok=True)
        sock.mkdir(parents=True, exist_ok=True)
        os.chmod(sock, 0o700)
        self._own(root, sock)
        if (self.cluster() / "PG_VERSION").exists():
            return
        result = subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(self.cluster()),
                "-U",
                config.Postgres.superuser,
                "--auth-local=trust",  # the socket folder is 0700: only the user running the server gets in
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",  # a throwaway learning database: do not wait for the disk
            ],
            capture_output=True,
            text=True,
            cwd=root,
            **self._as_user(),
        )
        if result.returncode != 0:
            last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["?"]
            raise ServiceFailed(f"initdb failed: {last[0]}")
        with open(self.cluster() / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# delab: logical decoding for Debezium, small footprint\n"
                "wal_level = logical\n"
                "max_replication_slots = 10\n"
                "max_wal_senders = 10\n"
                "shared_buffers = 64MB\n"
                "fsync = off\n"  # a throwaway learning database: speed over crash safety
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
            )

    def processes(self) -> list[ProcessSpec]:
        return [
            ProcessSpec(
                "postgres",
                [
                    str(layout.pg_bindir() / "postgres"),
                    "-D",
                    str(self.cluster()),
                    "-p",
                    str(config.port("postgres")),
                    "-c",
                    f"listen_addresses={HOST}",
                    "-c",
                    f"unix_socket_directories={self.socket_dir()}",
                    "-c",  # kernels, test workers, Connect, Flink's JDBC catalog and Airflow share it
                    "max_connections=200",
                    "-c",  # every log line says who (role@database): the audit of lab 05.04 reads it
                    f"log_line_prefix={LOG_LINE_PREFIX}",
                ],
                env={"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"},
                cwd=self.root(),
                user=self.run_as(),
                stop_signal=signal.SIGINT,  # "fast" shutdown: does not wait for clients (Debezium) to leave
            )
        ]

    def psql(self, database: str, *statements: str) -> subprocess.CompletedProcess:
        """Run statements as the superuser over the unix socket."""
        bindir = layout.pg_bindir()
        psql = bindir / "psql" if (bindir / "psql").exists() else Path(shutil.which("psql") or "psql")
        argv = [str(psql), "-h", str(self.socket_dir()), "-p", str(config.port("postgres"))]
        argv += ["-U", config.Postgres.superuser, "-d", database, "-v", "ON_ERROR_STOP=1", "-qAt"]
        for statement in statements:
            argv += ["-c", statement]
        return subprocess.run(argv, capture_output=True, text=True, cwd=self.root(), **self._as_user())

    def bootstrap(self) -> bool:
        if self._bootstrapped:
            return True
        pg = config.postgres()
        if self.psql("postgres", "SELECT 1").returncode != 0:
            return False  # not accepting connections yet
        password = pg.password.replace("'", "''")
        has_role = self.psql("postgres", f"SELECT 1 FROM pg_roles WHERE rolname = '{pg.user}'").stdout.strip()
        verb = "ALTER" if has_role else "CREATE"
        # REPLICATION for Debezium's slot; CREATEDB so labs can make scratch databases; CREATEROLE so module 07
        # manages application roles and grants as code (OpenTofu's PostgreSQL provider connects as this role)
        steps = [("postgres", f"{verb} ROLE \"{pg.user}\" {LEARNER_ROLE_ATTRIBUTES} PASSWORD '{password}'")]
        has_db = self.psql("postgres", f"SELECT 1 FROM pg_database WHERE datname = '{pg.database}'").stdout.strip()
        if not has_db:
            steps.append(("postgres", f'CREATE DATABASE "{pg.database}" OWNER "{pg.user}"'))
        for database, statement in steps:
            result = self.psql(database, statement)
            if result.returncode != 0:
                raise ServiceFailed(f"PostgreSQL bootstrap failed on `{statement[:40]}...`: {result.stderr.strip()}")
        # Debezium (pgoutput) needs a publication; FOR ALL TABLES needs a superuser, so it is made here once and
        # connectors use it with publication.autocreate.mode=disabled (or the default, which finds it).
        has_pub = self.psql(pg.database, "SELECT 1 FROM pg_publication WHERE pubname = 'dbz_publication'")
        if not has_pub.stdout.strip():
            result = self.psql(pg.database, "CREATE PUBLICATION dbz_publication FOR ALL TABLES")
            if result.returncode != 0:
                raise ServiceFailed(f"creating the Debezium publication failed: {result.stderr.strip()}")
        grant = f'GRANT EXECUTE ON FUNCTION public.delab_log_statements(text, text) TO "{pg.user}"'
        result = self.psql(pg.database, LOG_STATEMENTS_FUNCTION + ";\n" + grant)
        if result.returncode != 0:
            raise ServiceFailed(f"creating delab_log_statements failed: {result.stderr.strip()}")
        self._bootstrapped = True
        return True

    def probe(self) -> None:
        probe_postgres()
