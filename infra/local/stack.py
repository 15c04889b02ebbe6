"""``make up``: the whole relay on one machine (DESIGN section 9). ``python -m infra.local.stack``.

Starts, on 127.0.0.1 and in this order (``stop()`` tears down in reverse):

1. Amazon's DynamoDB Local with ``-dbPath .data/dynamodb`` (linked sessions survive a restart) and a moto server for
   SQS (queue contents live in its memory only). With ``AWS_ENDPOINT_URL`` set, neither starts: that endpoint serves
   both, and only what is missing there is created.
2. The tables and queues of ``connector.resources`` (idempotent).
3. The demo chatbot (``infra.local.chatbot``), unless ``CHATBOT_URL`` points at another one.
4. The local event source mapping (``infra.local.runner``) for ``inbound.fifo``, calling
   ``functions.inbound.handler.lambda_handler`` in this process, and the late-answer function's Function URL
   (``infra.local.late``, ``functions.late.handler.lambda_handler`` in this process) on ``LATE_ANSWER_PORT`` (a free
   port by default): where a bot that answered ``202`` posts its answer. The demo chatbot gets its URL as
   ``LATE_ANSWER_URL``. With ``EVENTS_URL`` set, a second mapping, for ``events.fifo``, calling
   ``functions.events.handler.lambda_handler``; the connector then publishes its events there.
5. The connector, ``python -m connector``, as a child process whose output is relayed here.

Decisions:
- **Two endpoints, no ``AWS_ENDPOINT_URL``.** DynamoDB Local and moto listen on different ports, so in embedded mode
  the connector and the function get botocore's per-service variables ``AWS_ENDPOINT_URL_DYNAMODB`` and
  ``AWS_ENDPOINT_URL_SQS`` and no ``AWS_ENDPOINT_URL``; clients built with ``endpoint_url=None`` pick them up (boto3
  and aioboto3 both do). With ``AWS_ENDPOINT_URL`` set, that one variable is passed on as is.
- **Fake credentials.** Embedded mode always gives the children ``testing``/``testing`` (the emulators accept any);
  with ``AWS_ENDPOINT_URL`` set, the caller's credentials pass through and the fake ones only fill gaps.
- **The handler runs in process,** so its environment is set on ``os.environ`` before ``functions.inbound.handler``
  is imported (or reloaded, when a previous stack in the same process imported it); ``stop()`` restores it.
- **Secrets are generated once.** Without ``CONNECTOR_API_KEY`` / ``CHATBOT_SECRET`` a random value is stored in
  ``.data/api-key`` / ``.data/chatbot-secret`` (mode 0600) and reused on the next run.
- **Children run in their own sessions,** so Ctrl-C reaches only this process, which stops the connector first
  (SIGTERM, up to 30 s to close sockets and release leases) while DynamoDB is still there to take its last writes.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from types import FrameType
from typing import Any, TextIO, cast

from connector.errors import ConfigError, RelayError
from connector.resources import (
    EVENTS_FUNCTION_TIMEOUT_S,
    EVENTS_QUEUE,
    IDEMPOTENCY_TABLE,
    INBOUND_FUNCTION_TIMEOUT_S,
    INBOUND_QUEUE,
    LID_MAP_TABLE,
    OUTBOUND_QUEUE,
    QUEUES,
    SETTINGS_TABLE,
    TABLES,
    create_queues,
    create_tables,
)
from infra.local.emulators import ROOT, DynamoDBLocal, MotoServer, free_port, wait_http
from infra.local.late import LateAnswerServer
from infra.local.runner import EventSourceRunner, Handler

log = logging.getLogger("wa_relay.local.stack")

DEFAULT_DATA_DIR = ROOT / ".data"
DEFAULT_CONNECTOR_PORT = 8080
DEFAULT_DEDUP_TTL_S = "86400"
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
INBOUND_FUNCTION_NAME = "wa-relay-inbound"
INBOUND_HANDLER_MODULE = "functions.inbound.handler"
LATE_HANDLER_MODULE = "functions.late.handler"
EVENTS_FUNCTION_NAME = "wa-relay-events"
EVENTS_HANDLER_MODULE = "functions.events.handler"
CONNECTOR_STOP_TIMEOUT_S = 30.0
EXIT_CONFIG = 11
EXIT_CHILD_FAILED = 1


class ChildFailed(RelayError):
    """A child process of the stack (the chatbot, the connector) exited or never answered while starting."""


class _Child:
    """A child process (the chatbot, the connector) whose output is relayed line by line under a prefix."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], output: TextIO, lock: threading.Lock):
        self.name = name
        self.args = args
        self.env = dict(env)
        self.output = output
        self.lock = lock
        self.proc: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None

    def start(self, ready_url: str, timeout: float) -> None:
        self.proc = subprocess.Popen(
            self.args, env=self.env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self._pump = threading.Thread(target=self._relay, name=f"relay-{self.name}", daemon=True)
        self._pump.start()
        try:
            wait_http(ready_url, self.proc, self.name, timeout)
        except ConfigError as e:
            raise ChildFailed(str(e)) from None

    def _relay(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            with self.lock:
                self.output.write(f"[{self.name}] {line}\n")
                self.output.flush()

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s; killing it", self.name, timeout)
                self.proc.kill()
                self.proc.wait()
        if self._pump is not None:
            self._pump.join(5)
            self._pump = None


class LocalStack:
    """The stack ``make up`` runs, usable from tests: ``start()``, then the resolved endpoints, URLs and
    environments below, then ``stop()`` (idempotent, safe after a failed ``start()``).

    ``env`` overrides the process environment (for example ``WA_WEBSOCKET_URL`` of the test simulator,
    ``CHATBOT_URL``/``CHATBOT_SECRET`` of a test chatbot, ``CONNECTOR_PORT=0`` for a free port); an empty value counts
    as unset. ``connector=False`` / ``runner=False`` leave those parts out; ``handler`` replaces the inbound function.
    ``output`` receives the children's relayed output (default: stdout). ``connector_args`` replaces the connector's
    command line (``python -m connector``), e.g. to wrap it.
    """

    def __init__(
        self,
        data_dir: Path = DEFAULT_DATA_DIR,
        *,
        env: Mapping[str, str] | None = None,
        connector: bool = True,
        runner: bool = True,
        handler: Handler | None = None,
        output: TextIO | None = None,
        connector_ready_timeout: float = 60.0,
        connector_args: list[str] | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.environ = {**os.environ, **(env or {})}
        self.with_connector = connector
        self.with_runner = runner
        self.handler = handler
        self.output = output or sys.stdout
        self.connector_ready_timeout = connector_ready_timeout
        self.connector_args = connector_args or [sys.executable, "-m", "connector"]
        self._lock = threading.Lock()
        self._exit = contextlib.ExitStack()

        # Resolved by start():
        self.region = self._get("AWS_REGION") or self._get("AWS_DEFAULT_REGION") or "us-east-1"
        self.aws_endpoint_url = self._get("AWS_ENDPOINT_URL")
        """The external endpoint, or ``None`` for the embedded emulators."""
        self.dynamodb_endpoint = ""
        self.sqs_endpoint = ""
        self.tables: dict[str, str] = {}
        """``{AUTH_TABLE: name, ...}``."""
        self.queue_urls: dict[str, str] = {}
        """``{INBOUND_QUEUE_URL: url, INBOUND_QUEUE_DLQ_URL: url, ...}``."""
        self.inbound_queue_arn = ""
        self.chatbot_url = ""
        self.chatbot_secret = ""
        self.demo_chatbot = False
        self.api_key = ""
        self.api_key_file: Path | None = None
        """Where the generated API key is kept, or ``None`` when it came from ``CONNECTOR_API_KEY``."""
        self.connector_port = 0
        self.api_url = ""
        self.runner: EventSourceRunner | None = None
        self.late_port = 0
        self.late_url = ""
        """The late-answer function's URL (a bot that answered 202 POSTs its signed answer here)."""
        self.late_server: LateAnswerServer | None = None
        self.events_url = self._get("EVENTS_URL")
        """Where the events function POSTs; ``None``: no events are published and no events function runs."""
        self.events_runner: EventSourceRunner | None = None
        self.connector: _Child | None = None
        self.chatbot: _Child | None = None

    def _get(self, name: str) -> str | None:
        value = self.environ.get(name, "").strip()
        return value or None

    # ---- lifecycle ----

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self._exit.close()

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._resolve_connector_settings()
        self._start_aws()
        self._create_resources()
        self._resolve_late_url()
        self._start_chatbot()
        if self.with_runner:
            self._start_runner()
        self._start_late()
        if self.with_runner and self.events_url:
            self._start_events()
        if self.with_connector:
            self._start_connector()

    def _start_aws(self) -> None:
        if self.aws_endpoint_url:
            self.dynamodb_endpoint = self.sqs_endpoint = self.aws_endpoint_url
            return
        logs = self.data_dir / "logs"
        logs.mkdir(exist_ok=True)
        ddb_log = self._exit.enter_context(open(logs / "dynamodb-local.log", "ab"))  # noqa: SIM115
        ddb = DynamoDBLocal(data_dir=self.data_dir / "dynamodb", log=ddb_log, own_session=True)
        self.dynamodb_endpoint = ddb.start()
        self._exit.callback(ddb.stop)
        moto_log = self._exit.enter_context(open(logs / "moto.log", "ab"))  # noqa: SIM115
        moto = MotoServer(log=moto_log, own_session=True)
        self.sqs_endpoint = moto.start()
        self._exit.callback(moto.stop)

    @property
    def aws_env(self) -> dict[str, str]:
        """Region, credentials and endpoints for anything that talks to the stack's AWS."""
        env = {"AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region}
        if self.aws_endpoint_url:
            env["AWS_ENDPOINT_URL"] = self.aws_endpoint_url
            for name, fake in FAKE_CREDENTIALS.items():
                env[name] = self._get(name) or fake
            if token := self._get("AWS_SESSION_TOKEN"):
                env["AWS_SESSION_TOKEN"] = token
        else:
            env.update(FAKE_CREDENTIALS)
            env["AWS_ENDPOINT_URL_DYNAMODB"] = self.dynamodb_endpoint
            env["AWS_ENDPOINT_URL_SQS"] = self.sqs_endpoint
        return env

    def _client(self, service: str) -> Any:
        import boto3  # type: ignore[import-untyped]  # here: the connector itself does not need boto3

        env = self.aws_env
        return boto3.client(
            service,
            endpoint_url=self.dynamodb_endpoint if service == "dynamodb" else self.sqs_endpoint,
            region_name=self.region,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=env.get("AWS_SESSION_TOKEN"),
        )

    def _create_resources(self) -> None:
        names = {spec.env: name for spec in TABLES if (name := self._get(spec.env))}
        self.tables = create_tables(self._client("dynamodb"), names)
        sqs = self._client("sqs")
        self.queue_urls = _existing_queues(sqs) or create_queues(sqs)
        attributes = sqs.get_queue_attributes(QueueUrl=self.queue_urls[INBOUND_QUEUE.env], AttributeNames=["QueueArn"])
        self.inbound_queue_arn = attributes["Attributes"]["QueueArn"]

    def _secret(self, env_name: str, file_name: str) -> tuple[str, Path | None]:
        if value := self._get(env_name):
            return value, None
        path = self.data_dir / file_name
        if path.exists() and (stored := path.read_text().strip()):
            return stored, path
        value = secrets.token_hex(32)
        path.touch(mode=0o600)
        path.write_text(value + "\n")
        return value, path

    def _start_chatbot(self) -> None:
        self.chatbot_secret, _ = self._secret("CHATBOT_SECRET", "chatbot-secret")
        if url := self._get("CHATBOT_URL"):
            self.chatbot_url = url
            return
        port = free_port()
        env = {**self.environ, "CHATBOT_SECRET": self.chatbot_secret, "LATE_ANSWER_URL": self.late_url}
        args = [sys.executable, "-m", "infra.local.chatbot", "--port", str(port)]
        self.chatbot = _Child("chatbot", args, env, self.output, self._lock)
        self._exit.callback(self.chatbot.stop)
        self.chatbot.start(f"http://127.0.0.1:{port}/healthz", 30)
        self.chatbot_url = f"http://127.0.0.1:{port}/chat"
        self.demo_chatbot = True

    # ---- the inbound function ----

    def function_env(self) -> dict[str, str]:
        """What the inbound function reads (its Lambda configuration in Terraform)."""
        return {
            **self.aws_env,
            IDEMPOTENCY_TABLE.env: self.tables[IDEMPOTENCY_TABLE.env],
            LID_MAP_TABLE.env: self.tables[LID_MAP_TABLE.env],
            SETTINGS_TABLE.env: self.tables[SETTINGS_TABLE.env],
            OUTBOUND_QUEUE.env: self.queue_urls[OUTBOUND_QUEUE.env],
            INBOUND_QUEUE.env: self.queue_urls[INBOUND_QUEUE.env],
            "INBOUND_QUEUE_DLQ_URL": self.queue_urls["INBOUND_QUEUE_DLQ_URL"],
            "CHATBOT_URL": self.chatbot_url,
            "CHATBOT_SECRET": self.chatbot_secret,
            "DEDUP_TTL_S": self._get("DEDUP_TTL_S") or DEFAULT_DEDUP_TTL_S,
            "AWS_LAMBDA_FUNCTION_NAME": INBOUND_FUNCTION_NAME,
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(INBOUND_FUNCTION_TIMEOUT_S),
        }

    def _set_process_env(self, values: Mapping[str, str]) -> None:
        """Set ``values`` on ``os.environ`` (and drop endpoint variables of the other mode); ``stop()`` restores."""
        names = set(values) | {"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_SQS"}
        saved = {name: os.environ.get(name) for name in names}

        def restore() -> None:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

        self._exit.callback(restore)
        for name in names - set(values):
            os.environ.pop(name, None)
        os.environ.update(values)

    def _load_inbound_handler(self) -> Handler:
        return _load_handler(INBOUND_HANDLER_MODULE)

    def _start_runner(self) -> None:
        self._set_process_env(self.function_env())
        handler = self.handler or self._load_inbound_handler()
        self.runner = EventSourceRunner(
            self._client("sqs"), self.queue_urls[INBOUND_QUEUE.env], self.inbound_queue_arn, handler,
            function_timeout_s=INBOUND_FUNCTION_TIMEOUT_S, function_name=INBOUND_FUNCTION_NAME,
        )  # fmt: skip
        self.runner.start()
        self._exit.callback(self.runner.stop)

    # ---- the late-answer function ----

    def _resolve_late_url(self) -> None:
        """Before the chatbot starts: the demo bot needs the URL it will post to."""
        port = self._get("LATE_ANSWER_PORT") or "0"
        try:
            self.late_port = int(port) or free_port()
        except ValueError:
            raise ConfigError(f"LATE_ANSWER_PORT: not a port number: {port!r}") from None
        self.late_url = f"http://127.0.0.1:{self.late_port}/"

    def _start_late(self) -> None:
        """The late-answer function reads the inbound function's variables it shares (secret, table, queue)."""
        if not self.with_runner:
            self._set_process_env(self.function_env())
        self.late_server = LateAnswerServer(_load_handler(LATE_HANDLER_MODULE), port=self.late_port)
        self.late_server.start()
        self._exit.callback(self.late_server.stop)

    # ---- the events function ----

    def events_env(self) -> dict[str, str]:
        """What the events function reads (its Lambda configuration in Terraform)."""
        return {
            **self.aws_env,
            "EVENTS_URL": self.events_url or "",
            "CHATBOT_SECRET": self.chatbot_secret,
            EVENTS_QUEUE.env: self.queue_urls[EVENTS_QUEUE.env],
            EVENTS_QUEUE.dlq_env: self.queue_urls[EVENTS_QUEUE.dlq_env],
        }

    def _start_events(self) -> None:
        """Like the inbound function: a second event source mapping, on ``events.fifo``, in this process."""
        self._set_process_env(self.events_env())
        sqs = self._client("sqs")
        url = self.queue_urls[EVENTS_QUEUE.env]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.events_runner = EventSourceRunner(
            sqs, url, arn, _load_handler(EVENTS_HANDLER_MODULE),
            function_timeout_s=EVENTS_FUNCTION_TIMEOUT_S, function_name=EVENTS_FUNCTION_NAME,
        )  # fmt: skip
        self.events_runner.start()
        self._exit.callback(self.events_runner.stop)

    # ---- the connector ----

    def connector_env(self) -> dict[str, str]:
        """The connector's environment: this process's (``PATH``, ``NODE_OPTIONS``, ``WA_SIM_ROOT_PUB``,
        ``WA_WEBSOCKET_URL``, ``LOG_LEVEL`` … pass through) plus the stack's names, endpoints and secrets."""
        env = dict(self.environ)
        if not self.aws_endpoint_url:
            for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
                env.pop(name, None)
        env.update(self.aws_env)
        env.update(self.tables)
        env.update(
            {
                "CONNECTOR_API_KEY": self.api_key,
                "CONNECTOR_PORT": str(self.connector_port),
                INBOUND_QUEUE.env: self.queue_urls[INBOUND_QUEUE.env],
                OUTBOUND_QUEUE.env: self.queue_urls[OUTBOUND_QUEUE.env],
                "OUTBOUND_QUEUE_DLQ_URL": self.queue_urls["OUTBOUND_QUEUE_DLQ_URL"],
                "DEDUP_TTL_S": self._get("DEDUP_TTL_S") or DEFAULT_DEDUP_TTL_S,
                "SPOOL_DIR": self._get("SPOOL_DIR") or str(self.data_dir / "spool"),
            }
        )
        if interval := self._get("SESSION_START_INTERVAL_S"):
            env["SESSION_START_INTERVAL_S"] = interval
        if self.events_url:  # published only when the events function consumes them, as in Terraform
            env[EVENTS_QUEUE.env] = self.queue_urls[EVENTS_QUEUE.env]
        return env

    def _resolve_connector_settings(self) -> None:
        """API key and port, resolved even without the connector so tests can start one from ``connector_env()``."""
        self.api_key, self.api_key_file = self._secret("CONNECTOR_API_KEY", "api-key")
        port = self._get("CONNECTOR_PORT") or str(DEFAULT_CONNECTOR_PORT)
        try:
            self.connector_port = int(port) or free_port()
        except ValueError:
            raise ConfigError(f"CONNECTOR_PORT: not a port number: {port!r}") from None
        self.api_url = f"http://127.0.0.1:{self.connector_port}"

    def _start_connector(self) -> None:
        self.connector = _Child("connector", self.connector_args, self.connector_env(), self.output, self._lock)
        self._exit.callback(self.connector.stop, CONNECTOR_STOP_TIMEOUT_S)
        self.connector.start(f"{self.api_url}/healthz", self.connector_ready_timeout)

    # ---- for make up ----

    def banner(self) -> str:
        key = f"$(cat {self.api_key_file})" if self.api_key_file else "$CONNECTOR_API_KEY"
        auth = f'-H "Authorization: Bearer {key}"'
        lines = ["", "wa-relay is up", ""]
        if self.connector is not None:
            # The key itself is not printed: terminals are scrolled back, shared and recorded.
            where = f"in {self.api_key_file} (cat it)" if self.api_key_file else "CONNECTOR_API_KEY"
            lines += [
                f"  Dashboard  {self.api_url}/   (sign in with the API key)",
                f"  API        {self.api_url}   docs: {self.api_url}/docs",
                f"  API key    {where}",
                "",
                "  Link a WhatsApp account (WhatsApp > Settings > Linked devices > Link a device):",
                "    in the dashboard: Create and link, then scan the QR",
                "    or in a terminal: .venv/bin/wa-relay link me      (--phone NUMBER for a pairing code)",
                f'    or with curl:     curl {auth} -X POST {self.api_url}/v1/sessions -d \'{{"session_id":"me"}}\'',
                f'                      curl {auth} "{self.api_url}/v1/sessions/me/qr?format=svg" > qr.svg',
                "",
            ]
        if self.demo_chatbot:
            lines.append(f"  Chatbot    demo echo bot at {self.chatbot_url} (set CHATBOT_URL/CHATBOT_SECRET for yours)")
        else:
            lines.append(f"  Chatbot    {self.chatbot_url} (CHATBOT_URL)")
        if self.with_runner:
            lines.append(f"  Function   {INBOUND_HANDLER_MODULE} in process, fed from inbound.fifo")
        lines.append(f"  Late URL   {self.late_url} (a bot that answered 202 POSTs its signed answer here)")
        if self.events_url:
            lines.append(f"  Events     {self.events_url} (EVENTS_URL: {EVENTS_HANDLER_MODULE} in process, signed)")
        wa = self._get("WA_WEBSOCKET_URL")
        lines.append(f"  WhatsApp   {wa + ' (WA_WEBSOCKET_URL)' if wa else 'the real WhatsApp servers'}")
        if self.aws_endpoint_url:
            lines.append(f"  AWS        {self.aws_endpoint_url} (AWS_ENDPOINT_URL)")
        else:
            lines += [
                f"  DynamoDB   DynamoDB Local at {self.dynamodb_endpoint}, data in {self.data_dir / 'dynamodb'}"
                " (survives restarts: linked sessions stay linked)",
                f"  SQS        moto at {self.sqs_endpoint}: queue contents are in memory only, so a restart loses"
                " messages queued but not yet processed",
                f"  Logs       {self.data_dir / 'logs'}",
            ]
        spool = self._get("SPOOL_DIR") or str(self.data_dir / "spool")
        if self.aws_endpoint_url:
            where = f"AWS_ENDPOINT_URL={self.aws_endpoint_url}"
        else:
            credentials = " ".join(f"{k}={v}" for k, v in FAKE_CREDENTIALS.items())
            where = f"AWS_ENDPOINT_URL={self.sqs_endpoint} {credentials}"
        lines.append(f"  DLQs       {where} SPOOL_DIR={spool} .venv/bin/wa-relay-dlq list")
        lines += ["", "  Ctrl-C stops everything (the connector first).", ""]
        return "\n".join(lines)


def _load_handler(module_name: str) -> Handler:
    """The handler of ``module_name``, imported afresh: its configuration is read at import, from ``os.environ``."""
    if module_name in sys.modules:
        module = importlib.reload(sys.modules[module_name])
    else:
        module = importlib.import_module(module_name)
    return cast(Handler, module.lambda_handler)


def _existing_queues(sqs: Any) -> dict[str, str] | None:
    """Every queue's and DLQ's URL if all of them exist already (nothing is then created), else ``None``."""
    out = {}
    for spec in QUEUES:
        for env, name in ((spec.env, spec.name), (spec.env.replace("_URL", "_DLQ_URL"), spec.dlq_name)):
            try:
                out[env] = sqs.get_queue_url(QueueName=name)["QueueUrl"]
            except sqs.exceptions.QueueDoesNotExist:
                return None
    return out


SIMULATOR_TRUST = "WA_SIM_ROOT_PUB"
"""Set (with the trust-root preload in ``NODE_OPTIONS``), the bridge would accept the WhatsApp simulator's
certificate root: only the tests and ``make demo`` (``infra.local.demo``) may do that."""


def untrusted(environ: MutableMapping[str, str]) -> None:
    """Remove the simulator's root trust from ``environ``: ``make up`` links real accounts, and a bridge that trusted
    another root could be pointed at a server that is not WhatsApp."""
    if environ.pop(SIMULATOR_TRUST, None) is not None:
        log.warning("%s is ignored by make up (only make demo and the tests trust the simulator)", SIMULATOR_TRUST)
    options = environ.get("NODE_OPTIONS", "").split()
    kept = [o for i, o in enumerate(options) if "trust-root" not in o and not _imports_trust_root(options, i)]
    if kept != options:
        environ["NODE_OPTIONS"] = " ".join(kept)


def _imports_trust_root(options: list[str], i: int) -> bool:
    return options[i] in ("--import", "--require", "-r") and i + 1 < len(options) and "trust-root" in options[i + 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run wa-relay locally (make up).")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="state: DynamoDB data, keys, logs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    untrusted(os.environ)
    stack = LocalStack(args.data_dir)
    try:
        stack.start()
    except ConfigError as e:
        print(f"make up: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except ChildFailed as e:
        print(f"make up: {e} (its output is above)", file=sys.stderr)
        return EXIT_CHILD_FAILED
    except KeyboardInterrupt:
        return 130

    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("%s: stopping", signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(stack.banner(), flush=True)
    code = 0
    while not stopping.wait(0.5):
        if stack.connector is not None and (rc := stack.connector.returncode) is not None:
            log.error("the connector exited with code %d; stopping the stack", rc)
            code = rc or 1
            break
    stack.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
