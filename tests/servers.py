"""Real servers for the tests: a private PostgreSQL and an S3-compatible object store.

Both listen on 127.0.0.1 on a free port, keep their data in a fresh temporary
folder, and are stopped (and the folder removed) by :meth:`stop`. Each pytest
process (each xdist worker) starts its own, so parallel workers never share one.

* :class:`PostgresServer`: Debian's ``postgresql`` package (``initdb`` / ``pg_ctl``);
  as root the server runs as the ``postgres`` user (PostgreSQL refuses to run as root).
  Password authentication (SCRAM) is on, so a connection string carries a secret.
* :class:`S3Server`: moto's standalone server (``python -m moto.server``), which speaks
  the S3 protocol including conditional writes (``If-None-Match``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

START_TIMEOUT = 60.0


class ServerUnavailable(RuntimeError):
    """A server's program is not installed (the message says how to install it)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pg_bin(name: str) -> str:
    """A PostgreSQL server program: on PATH, else Debian's ``/usr/lib/postgresql/<version>/bin``.

    Raises:
        ServerUnavailable: PostgreSQL is not installed.
    """
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if candidates:
        return candidates[-1]
    raise ServerUnavailable(f"PostgreSQL's {name} is not installed; run `bash .ci/install-test-tools.sh` "
                            "(installs Debian's postgresql package)")


class PostgresServer:
    """A PostgreSQL cluster of its own in a temporary folder, on 127.0.0.1."""

    user = "medallion"
    database = "postgres"

    def __init__(self) -> None:
        self.password = secrets.token_urlsafe(16)
        self.port = 0
        self.root: Path | None = None
        self._run_as: str | None = None
        self._started = False

    @property
    def data(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def url(self) -> str:
        """``postgresql://user:password@127.0.0.1:port/postgres``."""
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def start(self) -> PostgresServer:
        initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
        self.root = Path(tempfile.mkdtemp(prefix="medallion-pg-"))
        if os.geteuid() == 0:
            self._run_as = "postgres" if _user_exists("postgres") else "nobody"
            entry = pwd.getpwnam(self._run_as)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        os.chmod(self.root, 0o700)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n", encoding="utf-8")
        if self._run_as:
            entry = pwd.getpwnam(self._run_as)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        self._as_owner([initdb, "-D", str(self.data), "-U", self.user, f"--pwfile={pwfile}",
                        "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync"])
        pwfile.unlink()
        for attempt in range(5):
            self.port = free_port()
            settings = "\n".join([
                "listen_addresses = '127.0.0.1'", f"port = {self.port}", "unix_socket_directories = ''",
                "fsync = off", "synchronous_commit = off", "full_page_writes = off", "shared_buffers = 64MB",
                "max_connections = 40", "log_min_messages = warning",
            ])
            conf = self.data / "postgresql.auto.conf"
            conf.write_text(settings + "\n", encoding="utf-8")
            if self._run_as:
                entry = pwd.getpwnam(self._run_as)
                os.chown(conf, entry.pw_uid, entry.pw_gid)
            log = self.root / "server.log"
            try:
                self._as_owner([pg_ctl, "start", "-w", "-t", str(int(START_TIMEOUT)), "-D", str(self.data),
                                "-l", str(log)])
                self._started = True
                return self
            except subprocess.CalledProcessError:
                text = log.read_text(errors="replace") if log.exists() else ""
                if "could not bind" in text and attempt < 4:
                    continue  # another process took the port in between
                self.stop()
                raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        if self.root is None:
            return
        if self._started:
            with contextlib.suppress(subprocess.CalledProcessError):
                self._as_owner([pg_bin("pg_ctl"), "stop", "-w", "-m", "immediate", "-D", str(self.data)])
            self._started = False
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def connect(self):
        """A DB-API connection (ADBC) to the server's database, autocommit on."""
        import adbc_driver_postgresql.dbapi

        return adbc_driver_postgresql.dbapi.connect(self.url, autocommit=True)

    def execute(self, *statements: str) -> None:
        """Run SQL statements, each committed."""
        with self.connect() as con, con.cursor() as cur:
            for sql in statements:
                cur.execute(sql)

    def query(self, sql: str) -> list[tuple]:
        with self.connect() as con, con.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()

    def _as_owner(self, args: list[str]) -> None:
        command = ["runuser", "-u", self._run_as, "--", *args] if self._run_as else args
        subprocess.run(command, check=True, capture_output=True, text=True, cwd=self.root, timeout=START_TIMEOUT + 30)


class S3Server:
    """moto's S3-compatible server on 127.0.0.1, in its own process."""

    region = "us-east-1"
    access_key = "medallion-test-key"

    def __init__(self) -> None:
        self.secret_key = secrets.token_urlsafe(16)
        self.port = 0
        self.root: Path | None = None
        self._proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The environment variables that point AWS clients (delta-rs, Arrow, boto3) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ALLOW_HTTP": "true",
        }

    def start(self) -> S3Server:
        self.root = Path(tempfile.mkdtemp(prefix="medallion-s3-"))
        log = (self.root / "server.log").open("wb")
        for attempt in range(5):
            self.port = free_port()
            command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
            self._proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            if self._wait_ready():
                log.close()
                return self
            self._terminate()
            if attempt == 4:
                break
        log.close()
        text = (self.root / "server.log").read_text(errors="replace")
        self.stop()
        raise RuntimeError(f"moto's S3 server did not start:\n{text[-2000:]}")

    def _wait_ready(self) -> bool:
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(self.endpoint + "/", timeout=2):
                    return True
            except urllib.error.HTTPError:
                return True  # it answered
            except OSError:
                time.sleep(0.1)
        return False

    def _terminate(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def stop(self) -> None:
        self._terminate()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name=self.region)

    def bucket(self, prefix: str = "lake") -> str:
        """Create a new, empty bucket and return its name."""
        name = f"{prefix}-{secrets.token_hex(6)}"
        self.client().create_bucket(Bucket=name)
        return name


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
