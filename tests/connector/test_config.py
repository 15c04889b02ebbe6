from __future__ import annotations

from pathlib import Path

import pytest

from connector.config import Config, OutboundSettings, SessionSettings, load_config
from connector.errors import ConfigError

KEY = "k3J9x2Lq8Vn5Rt7Wz4Yb"
BASE = {"CONNECTOR_API_KEY": KEY, "INBOUND_QUEUE_URL": "http://q/in.fifo", "OUTBOUND_QUEUE_URL": "http://q/out.fifo"}


def test_defaults() -> None:
    cfg = load_config(BASE)
    assert cfg.api_key == KEY
    assert cfg.port == 8080
    assert cfg.session_start_interval_s == 3
    assert cfg.dedup_ttl_s == 86400
    assert cfg.aws_region == "us-east-1"
    assert cfg.auth_table == "wa-relay-auth"
    assert cfg.store_backend == "dynamodb"
    assert cfg.host == "127.0.0.1"
    assert cfg.bridge_script.name == "main.js"
    assert cfg.spool_dir == Path(".data/spool")
    assert cfg.wa_websocket_url is None


def test_reads_every_name() -> None:
    cfg = load_config(
        {
            **BASE,
            "CONNECTOR_PORT": "9001",
            "WA_WEBSOCKET_URL": "ws://127.0.0.1:1/ws",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:4566",
            "SESSION_START_INTERVAL_S": "0.5",
            "DEDUP_TTL_S": "3600",
            "AUTH_TABLE": "a",
            "LIB_IGNORED": "x",
            "CHATBOT_URL": "https://bot",
            "LOG_LEVEL": "debug",
            "SPOOL_DIR": "/tmp/spool",
        }
    )
    assert (cfg.port, cfg.session_start_interval_s, cfg.dedup_ttl_s, cfg.auth_table) == (9001, 0.5, 3600, "a")
    assert cfg.wa_websocket_url == "ws://127.0.0.1:1/ws"
    assert cfg.log_level == "DEBUG"
    assert cfg.spool_dir == Path("/tmp/spool")


def test_frozen() -> None:
    cfg = load_config(BASE)
    with pytest.raises(Exception, match="frozen"):
        cfg.port = 1  # type: ignore[misc]


def test_does_not_read_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTOR_PORT", "1234")
    assert load_config(BASE).port == 8080


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"CONNECTOR_API_KEY": None}, "CONNECTOR_API_KEY"),
        ({"CONNECTOR_API_KEY": ""}, "CONNECTOR_API_KEY"),
        ({"CONNECTOR_API_KEY": "short"}, "CONNECTOR_API_KEY"),
        ({"CONNECTOR_API_KEY": "changeme-changeme-123"}, "CONNECTOR_API_KEY"),
        ({"CONNECTOR_API_KEY": "aaaaaaaaaaaaaaaaaaaa"}, "CONNECTOR_API_KEY"),
        ({"CONNECTOR_API_KEY": "<your-api-key-here-please>"}, "CONNECTOR_API_KEY"),
        ({"CONNECTOR_PORT": "99999"}, "CONNECTOR_PORT"),
        ({"CONNECTOR_PORT": "http"}, "CONNECTOR_PORT"),
        ({"STORE_BACKEND": "sqlite"}, "STORE_BACKEND"),
        ({"SESSION_START_INTERVAL_S": "-1"}, "SESSION_START_INTERVAL_S"),
    ],
)
def test_rejects(env: dict[str, str | None], names: str) -> None:
    merged = {k: v for k, v in {**BASE, **env}.items() if v is not None}
    with pytest.raises(ConfigError, match=names):
        load_config(merged)


def test_missing_key_message_does_not_leak_values() -> None:
    with pytest.raises(ConfigError) as e:
        load_config({**BASE, "CONNECTOR_API_KEY": "changeme-secret-value"})
    assert "changeme-secret-value" not in str(e.value)


def test_queues_required_unless_memory() -> None:
    with pytest.raises(ConfigError, match="INBOUND_QUEUE_URL"):
        load_config({"CONNECTOR_API_KEY": KEY})
    cfg = load_config({"CONNECTOR_API_KEY": KEY, "STORE_BACKEND": "memory"})
    assert cfg.inbound_queue_url is None


def test_constructible_by_field_name() -> None:
    cfg = Config(api_key=KEY, store_backend="memory", port=1)
    assert cfg.port == 1


def test_main_exits_11_on_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from connector.__main__ import main

    monkeypatch.setenv("CONNECTOR_API_KEY", "changeme")
    assert main() == 11


def test_session_settings_take_the_configured_values_and_share_the_defaults() -> None:
    base = {"CONNECTOR_API_KEY": "k3J9x2Lq8Vn5Rt7Wz4Yb", "STORE_BACKEND": "memory"}
    assert load_config(base).sessions == SessionSettings()
    cfg = load_config({**base, "SESSION_START_INTERVAL_S": "0.5", "FLAP_MAX": "9", "CONNECTOR_ID": "c1"})
    assert (cfg.sessions.session_start_interval_s, cfg.sessions.flap_max, cfg.sessions.connector_id) == (0.5, 9, "c1")


def test_outbound_settings_take_the_configured_bound_and_share_the_default() -> None:
    base = {"CONNECTOR_API_KEY": "k3J9x2Lq8Vn5Rt7Wz4Yb", "STORE_BACKEND": "memory"}
    assert load_config(base).outbound == OutboundSettings()
    assert load_config({**base, "OUTBOUND_MAX_HELD": "50"}).outbound.max_held == 50
    with pytest.raises(ConfigError, match="OUTBOUND_MAX_HELD"):
        load_config({**base, "OUTBOUND_MAX_HELD": "0"})
