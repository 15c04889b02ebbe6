"""``make up``'s LocalStack: emulators, resources, persistence across restarts, the children and their env."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import stat
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from connector.resources import QUEUES, TABLES
from infra.local import stack as stack_module
from infra.local.stack import LocalStack

# Stand-in for `python -m connector`: serves /healthz on CONNECTOR_PORT, prints a few env values, and on SIGTERM
# checks that DynamoDB is still up (the stack must stop the connector first) before exiting.
FAKE_CONNECTOR = r"""
import http.server, os, signal, sys, threading, urllib.error, urllib.request
port = int(os.environ["CONNECTOR_PORT"])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
server = http.server.HTTPServer(("127.0.0.1", port), H)
def bye(*_):
    try:
        urllib.request.urlopen(os.environ["AWS_ENDPOINT_URL_DYNAMODB"], timeout=5)
    except urllib.error.HTTPError:
        print("dynamodb still up at shutdown", flush=True)
    except OSError as e:
        print(f"dynamodb gone at shutdown: {e}", flush=True)
    threading.Thread(target=server.shutdown).start()
signal.signal(signal.SIGTERM, bye)
print("started", os.environ["INBOUND_QUEUE_URL"], os.environ.get("NODE_OPTIONS"), flush=True)
server.serve_forever()
print("stopped", flush=True)
"""


def signed_post(url: str, secret: str, payload: dict[str, Any]) -> tuple[int, bytes]:
    body = json.dumps(payload).encode()
    t = int(time.time())
    sig = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    req = urllib.request.Request(url, data=body, headers={"X-Relay-Signature": f"t={t},v1={sig}"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.read()


def test_state_survives_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"AWS_ENDPOINT_URL": "", "CHATBOT_URL": "", "CHATBOT_SECRET": "", "CONNECTOR_API_KEY": ""}
    # GIVEN a stack without connector and runner
    with LocalStack(data, env=env, connector=False, runner=False, output=io.StringIO()) as first:
        # THEN every table and queue exists
        ddb = boto3.client("dynamodb", endpoint_url=first.dynamodb_endpoint)
        assert set(ddb.list_tables()["TableNames"]) >= {spec.default_name for spec in TABLES}
        sqs = boto3.client("sqs", endpoint_url=first.sqs_endpoint)
        for spec in QUEUES:
            assert sqs.get_queue_url(QueueName=spec.name)["QueueUrl"] == first.queue_urls[spec.env]
            assert first.queue_urls[spec.env.replace("_URL", "_DLQ_URL")]
        assert first.inbound_queue_arn.endswith(":wa-relay-inbound.fifo")
        # and the demo chatbot answers with the generated secret
        assert first.demo_chatbot
        status, reply = signed_post(first.chatbot_url, first.chatbot_secret, {"message": {"type": "text", "text": "x"}})
        assert (status, json.loads(reply)) == (200, {"replies": [{"text": "You said: x"}]})
        # and the secrets were generated into the data dir, readable by the owner only
        assert first.api_key_file == data.resolve() / "api-key"
        assert stat.S_IMODE(first.api_key_file.stat().st_mode) == 0o600
        ddb.put_item(TableName="wa-relay-auth", Item={"pk": {"S": "me"}, "sk": {"S": "creds"}})
        api_key, chatbot_secret = first.api_key, first.chatbot_secret
    assert first.dynamodb_endpoint  # resolved values stay readable after stop

    # WHEN it restarts on the same data dir
    with LocalStack(data, env=env, connector=False, runner=False, output=io.StringIO()) as second:
        ddb = boto3.client("dynamodb", endpoint_url=second.dynamodb_endpoint)
        # THEN DynamoDB kept its tables and items, and the secrets are reused
        assert set(ddb.list_tables()["TableNames"]) >= {spec.default_name for spec in TABLES}
        item = ddb.get_item(TableName="wa-relay-auth", Key={"pk": {"S": "me"}, "sk": {"S": "creds"}})
        assert "Item" in item
        assert (second.api_key, second.chatbot_secret) == (api_key, chatbot_secret)


def test_runner_feeds_the_handler_with_the_function_env(tmp_path: Path) -> None:
    seen: list[tuple[str, str | None]] = []
    got = threading.Event()

    def handler(event: dict[str, Any], context: Any) -> None:
        seen.extend((r["body"], os.environ.get("OUTBOUND_QUEUE_URL")) for r in event["Records"])
        got.set()

    before = os.environ.get("OUTBOUND_QUEUE_URL")
    env = {"AWS_ENDPOINT_URL": "", "CHATBOT_URL": "http://127.0.0.1:9/chat", "CHATBOT_SECRET": "s" * 20}
    with LocalStack(tmp_path, env=env, connector=False, handler=handler, output=io.StringIO()) as st:
        assert st.chatbot is None  # CHATBOT_URL given: no demo bot
        assert st.function_env()["CHATBOT_URL"] == "http://127.0.0.1:9/chat"
        assert "AWS_ENDPOINT_URL" not in os.environ
        assert os.environ["AWS_ENDPOINT_URL_SQS"] == st.sqs_endpoint
        sqs = boto3.client("sqs", endpoint_url=st.sqs_endpoint)
        url = st.queue_urls["INBOUND_QUEUE_URL"]
        sqs.send_message(QueueUrl=url, MessageBody="hello", MessageGroupId="g", MessageDeduplicationId="d1")
        assert got.wait(20)
        assert seen == [("hello", st.queue_urls["OUTBOUND_QUEUE_URL"])]
    assert os.environ.get("OUTBOUND_QUEUE_URL") == before  # restored


def test_external_endpoint_creates_only_what_is_missing(
    queue_urls: dict[str, str], sqs_endpoint: str, tmp_path: Path
) -> None:
    # GIVEN an endpoint (moto here) that already has the queues
    env = {"AWS_ENDPOINT_URL": sqs_endpoint, "CHATBOT_URL": "http://127.0.0.1:9/chat", "CHATBOT_SECRET": "x" * 20}
    with LocalStack(tmp_path, env=env, connector=False, runner=False) as st:
        # THEN no emulator starts, the existing queues are used, and the tables are created there
        assert st.dynamodb_endpoint == st.sqs_endpoint == sqs_endpoint
        assert {k: st.queue_urls[k] for k in queue_urls} == queue_urls
        ddb = boto3.client("dynamodb", endpoint_url=sqs_endpoint)
        assert set(ddb.list_tables()["TableNames"]) >= {spec.default_name for spec in TABLES}
        assert st.aws_env["AWS_ENDPOINT_URL"] == sqs_endpoint
        assert "AWS_ENDPOINT_URL_SQS" not in st.connector_env()
    assert not (tmp_path / "dynamodb").exists()


def test_connector_child_gets_its_env_and_stops_first(tmp_path: Path) -> None:
    out = io.StringIO()
    env = {
        "AWS_ENDPOINT_URL": "",
        "CHATBOT_URL": "",
        "CONNECTOR_PORT": "0",
        "CONNECTOR_API_KEY": "k-" + uuid.uuid4().hex,
        "NODE_OPTIONS": "--require /sim/root.js",
        "WA_WEBSOCKET_URL": "ws://127.0.0.1:1/ws",
        "SESSION_START_INTERVAL_S": "0.5",
    }
    st = LocalStack(tmp_path, env=env, runner=False, output=out, connector_args=[sys.executable, "-c", FAKE_CONNECTOR])
    try:
        st.start()
        cenv = st.connector_env()
        assert cenv["CONNECTOR_API_KEY"] == env["CONNECTOR_API_KEY"]
        assert st.api_key_file is None
        assert cenv["CONNECTOR_PORT"] == str(st.connector_port) != "0"
        assert cenv["NODE_OPTIONS"] == env["NODE_OPTIONS"]
        assert cenv["WA_WEBSOCKET_URL"] == env["WA_WEBSOCKET_URL"]
        assert cenv["SESSION_START_INTERVAL_S"] == "0.5"
        assert cenv["DEDUP_TTL_S"] == "86400"
        assert cenv["AWS_ENDPOINT_URL_DYNAMODB"] == st.dynamodb_endpoint
        assert cenv["AWS_ENDPOINT_URL_SQS"] == st.sqs_endpoint
        assert "AWS_ENDPOINT_URL" not in cenv
        for name in ("AUTH_TABLE", "LID_MAP_TABLE", "IDEMPOTENCY_TABLE"):
            assert cenv[name]
        for name in ("INBOUND_QUEUE_URL", "OUTBOUND_QUEUE_URL", "OUTBOUND_QUEUE_DLQ_URL"):
            assert cenv[name] == st.queue_urls[name]
        with urllib.request.urlopen(f"{st.api_url}/healthz", timeout=5) as resp:
            assert resp.status == 200
        banner = st.banner()
        assert f"{st.api_url}/v1/sessions" in banner
        assert "qr?format=svg" in banner
        assert "in memory only" in banner
        assert f"{st.api_url}/docs" in banner and "wa-relay link me" in banner
        assert st.api_key not in banner, "the key itself is never printed"
    finally:
        st.stop()
    st.stop()  # idempotent
    assert st.connector is not None
    assert st.connector.returncode == 0
    lines = out.getvalue().splitlines()
    assert f"[connector] started {st.queue_urls['INBOUND_QUEUE_URL']} --require /sim/root.js" in lines
    assert "[connector] dynamodb still up at shutdown" in lines
    assert "[connector] stopped" in lines


def test_connector_that_fails_to_start_stops_the_rest(tmp_path: Path) -> None:
    env = {"AWS_ENDPOINT_URL": "", "CHATBOT_URL": "", "CONNECTOR_PORT": "0"}
    st = LocalStack(tmp_path, env=env, runner=False, output=io.StringIO(),
                    connector_args=[sys.executable, "-c", "raise SystemExit(11)"])  # fmt: skip
    with pytest.raises(stack_module.ChildFailed, match="exited with code 11"):
        st.start()
    assert st.chatbot is not None
    assert st.chatbot.returncode is not None  # torn down


def test_missing_java_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    assert stack_module.main(["--data-dir", str(tmp_path / "data")]) == 11
    err = capsys.readouterr().err
    assert "Java 17" in err
    assert "Traceback" not in err


def test_late_answer_url_serves_the_late_function_and_the_demo_bot_answers_through_it(tmp_path: Path) -> None:
    from connector.contracts import OutboundReply, parse_outbound, reply_id
    from functions.late.logic import LATE_INDEX_BASE
    from tests.functions.conftest import fresh, golden

    env = {"AWS_ENDPOINT_URL": "", "CHATBOT_URL": "", "CHATBOT_SECRET": "", "CHATBOT_LATER_S": "0.2"}
    with LocalStack(tmp_path, env=env, connector=False, output=io.StringIO()) as st:
        # the Function URL look-alike answers as the function does: a signed post for an unknown event is a 404
        with pytest.raises(urllib.error.HTTPError) as refused:
            signed_post(st.late_url, st.chatbot_secret, {"event_id": "nobody", "replies": [{"text": "x"}]})
        assert (refused.value.code, json.loads(refused.value.read())["error"]["code"]) == (404, "unknown_event")
        # and a message for the demo bot in its "answer later" mode comes back as a late reply on outbound.fifo
        envelope = fresh(golden("pn"))
        sqs = boto3.client("sqs", endpoint_url=st.sqs_endpoint)
        sqs.send_message(
            QueueUrl=st.queue_urls["INBOUND_QUEUE_URL"],
            MessageBody=envelope.model_dump_json(),
            MessageGroupId=envelope.group_id,
            MessageDeduplicationId=envelope.event_id,
        )
        replies: list[OutboundReply] = []
        deadline = time.monotonic() + 30
        while not replies and time.monotonic() < deadline:
            got = sqs.receive_message(QueueUrl=st.queue_urls["OUTBOUND_QUEUE_URL"], WaitTimeSeconds=1,
                                      MaxNumberOfMessages=10).get("Messages", [])  # fmt: skip
            replies += [b for m in got if isinstance(b := parse_outbound(m["Body"]), OutboundReply)]
        assert [(r.reply_id, r.text, r.quoted) for r in replies] == [
            (reply_id(envelope.event_id, LATE_INDEX_BASE), "You said: hi from alice (pn)", envelope.key)
        ]
        assert "Late URL" in st.banner() and st.late_url in st.banner()
