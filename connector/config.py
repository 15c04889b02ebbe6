"""The connector's configuration: one frozen, typed ``Config`` read once from the environment (STYLE rule 10).

``load_config(os.environ)`` is the only place that reads the environment; everything else gets the ``Config``
passed in. Names are fixed by DESIGN section 12 (``CONNECTOR_API_KEY`` …) or by ``connector/resources.py`` (table and
queue variables, which Terraform sets). Any invalid value raises ``ConfigError`` naming the variable (never its
value); ``python -m connector`` exits with code 11 on it.

Decisions:
- An empty variable counts as unset (shells and compose files often export ``FOO=``), so an empty optional value is
  ``None`` and an empty required one is an error.
- ``STORE_BACKEND=memory`` runs without DynamoDB (and, unless queue URLs are set, without SQS: events are logged and
  kept in memory). Linked sessions do not survive a restart in that mode.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from connector.errors import ConfigError
from connector.resources import AUTH_TABLE, IDEMPOTENCY_TABLE, LID_MAP_TABLE, OUTBOUND_QUEUE, SETTINGS_TABLE

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BRIDGE_SCRIPT = ROOT / "bridge" / "dist" / "main.js"

API_KEY_MIN_LENGTH = 16
_PLACEHOLDERS = re.compile(
    r"change[-_ ]?me|replace[-_ ]?me|placeholder|your[-_ ]?(api[-_ ]?)?key|^<.*>$|^\$\{.*\}$|xxxx|todo|example|"
    r"^(secret|password|apikey|api[-_]key|test|dummy|default)\d*$",
    re.IGNORECASE,
)


def _alias(name: str) -> Any:
    return AliasChoices(name)


class Config(BaseSettings):
    """Everything the connector reads from its environment. Construct it with ``load_config``; tests may also
    construct it directly by field name (``Config(api_key=..., store_backend="memory")``)."""

    model_config = SettingsConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    # ---- DESIGN section 12 ----
    api_key: str = Field(validation_alias=_alias("CONNECTOR_API_KEY"), repr=False)
    port: int = Field(8080, ge=1, le=65535, validation_alias=_alias("CONNECTOR_PORT"))
    chatbot_url: str | None = Field(None, validation_alias=_alias("CHATBOT_URL"))
    chatbot_secret: str | None = Field(None, validation_alias=_alias("CHATBOT_SECRET"), repr=False)
    wa_websocket_url: str | None = Field(None, validation_alias=_alias("WA_WEBSOCKET_URL"))
    aws_endpoint_url: str | None = Field(None, validation_alias=_alias("AWS_ENDPOINT_URL"))
    session_start_interval_s: float = Field(3.0, ge=0, validation_alias=_alias("SESSION_START_INTERVAL_S"))
    dedup_ttl_s: int = Field(86400, ge=60, validation_alias=_alias("DEDUP_TTL_S"))

    # ---- project names (Terraform sets them) ----
    aws_region: str = Field("us-east-1", min_length=1, validation_alias=_alias("AWS_REGION"))
    auth_table: str = Field(AUTH_TABLE.default_name, min_length=1, validation_alias=_alias(AUTH_TABLE.env))
    lid_map_table: str = Field(LID_MAP_TABLE.default_name, min_length=1, validation_alias=_alias(LID_MAP_TABLE.env))
    idempotency_table: str = Field(
        IDEMPOTENCY_TABLE.default_name, min_length=1, validation_alias=_alias(IDEMPOTENCY_TABLE.env)
    )
    settings_table: str = Field(SETTINGS_TABLE.default_name, min_length=1, validation_alias=_alias(SETTINGS_TABLE.env))
    inbound_queue_url: str | None = Field(None, validation_alias=_alias("INBOUND_QUEUE_URL"))
    outbound_queue_url: str | None = Field(None, validation_alias=_alias("OUTBOUND_QUEUE_URL"))
    outbound_queue_dlq_url: str | None = Field(None, validation_alias=_alias("OUTBOUND_QUEUE_DLQ_URL"))
    events_queue_url: str | None = Field(None, validation_alias=_alias("EVENTS_QUEUE_URL"))
    """Where lifecycle and message-status events go for ``EVENTS_URL`` (``connector.publish.events``); unset: none
    are published (``GET /v1/events`` streams them either way)."""
    store_backend: Literal["dynamodb", "memory"] = Field("dynamodb", validation_alias=_alias("STORE_BACKEND"))
    bridge_script: Path = Field(DEFAULT_BRIDGE_SCRIPT, validation_alias=_alias("BRIDGE_SCRIPT"))
    node_binary: str = Field("node", min_length=1, validation_alias=_alias("NODE_BINARY"))
    # ---- sessions (README "Sessions"; handed to the session manager as ``SessionSettings``) ----
    session_start_jitter_s: float = Field(2.0, ge=0, validation_alias=_alias("SESSION_START_JITTER_S"))
    reconnect_initial_s: float = Field(2.0, gt=0, validation_alias=_alias("RECONNECT_INITIAL_S"))
    reconnect_max_s: float = Field(300.0, gt=0, validation_alias=_alias("RECONNECT_MAX_S"))
    flap_max: int = Field(5, ge=1, validation_alias=_alias("FLAP_MAX"))
    flap_window_s: float = Field(600.0, gt=0, validation_alias=_alias("FLAP_WINDOW_S"))
    flap_hold_s: float = Field(1800.0, ge=0, validation_alias=_alias("FLAP_HOLD_S"))
    stale_after_s: float = Field(600.0, ge=0, validation_alias=_alias("STALE_AFTER_S"))
    stale_messages_after_s: float = Field(0.0, ge=0, validation_alias=_alias("STALE_MESSAGES_AFTER_S"))
    bridge_max_crashes: int = Field(5, ge=1, validation_alias=_alias("BRIDGE_MAX_CRASHES"))
    connector_id: str | None = Field(None, min_length=1, max_length=200, validation_alias=_alias("CONNECTOR_ID"))
    """This connector's lease owner id; unset = ``connector.lease.default_owner_id()`` (host, pid, random)."""
    lease_ttl_s: float = Field(30.0, ge=1, validation_alias=_alias("LEASE_TTL_S"))
    lease_renew_s: float = Field(10.0, gt=0, validation_alias=_alias("LEASE_RENEW_S"))
    outbound_max_held: int = Field(1000, ge=1, validation_alias=_alias("OUTBOUND_MAX_HELD"))
    """Replies the outbound consumer keeps in flight while their sessions are not open yet (``OutboundSettings``)."""
    spool_dir: Path = Field(Path(".data/spool"), validation_alias=_alias("SPOOL_DIR"))
    spool_max_bytes: int = Field(1 << 30, ge=1 << 20, validation_alias=_alias("SPOOL_MAX_BYTES"))
    """Beyond this the spool takes nothing more: envelopes wait unacknowledged and the connector reports degraded."""
    spool_after_s: float = Field(2.0, gt=0, validation_alias=_alias("SPOOL_AFTER_S"))
    """How long a live SQS call may take before its envelopes are spooled (and acknowledged from there) instead."""
    host: str = Field("127.0.0.1", min_length=1, validation_alias=_alias("CONNECTOR_HOST"))
    log_level: Literal["TRACE", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", validation_alias=_alias("LOG_LEVEL")
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only what load_config passes in: the process environment is read in exactly one place.
        return (init_settings,)

    @field_validator("api_key")
    @classmethod
    def _api_key(cls, v: str) -> str:
        if len(v) < API_KEY_MIN_LENGTH:
            raise ValueError(f"must be at least {API_KEY_MIN_LENGTH} characters")
        if _PLACEHOLDERS.search(v) or len(set(v)) < 4:
            raise ValueError("looks like a placeholder; set a random secret (e.g. `openssl rand -hex 32`)")
        return v

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _queues(self) -> Config:
        if self.store_backend == "dynamodb":
            queues = {"INBOUND_QUEUE_URL": self.inbound_queue_url, "OUTBOUND_QUEUE_URL": self.outbound_queue_url}
            missing = [name for name, value in queues.items() if not value]
            if missing:
                raise ValueError(f"{', '.join(missing)} required (or STORE_BACKEND=memory for a store-less dev run)")
        return self

    @model_validator(mode="after")
    def _lease_timing(self) -> Config:
        if self.lease_renew_s >= self.lease_ttl_s - min(1.0, self.lease_ttl_s / 10):
            raise ValueError("LEASE_RENEW_S must be shorter than LEASE_TTL_S (renew well before the lease expires)")
        return self

    @property
    def log_level_number(self) -> int:
        return 5 if self.log_level == "TRACE" else int(logging.getLevelName(self.log_level))

    @property
    def sessions(self) -> SessionSettings:
        """The part of the configuration the session manager and its helpers read (same names as here)."""
        names = [f.name for f in dataclasses.fields(SessionSettings) if f.name in type(self).model_fields]
        return SessionSettings(**{name: getattr(self, name) for name in names})

    @property
    def outbound(self) -> OutboundSettings:
        return OutboundSettings(max_held=self.outbound_max_held)


@dataclass(frozen=True)
class SessionSettings:
    """How sessions are started, reconnected, owned and watched: one frozen object instead of a keyword per knob.

    ``Config.sessions`` fills the fields that have a ``Config`` field of the same name (from the environment); tests
    construct it directly with short timings. The others are timings only tests need to change (how fast the bridge
    is restarted, how often stale detection runs)."""

    session_start_interval_s: float = 3.0
    session_start_jitter_s: float = 2.0
    reconnect_initial_s: float = 2.0
    reconnect_max_s: float = 300.0
    flap_max: int = 5
    flap_window_s: float = 600.0
    flap_hold_s: float = 1800.0
    stale_after_s: float = 600.0
    stale_messages_after_s: float = 0.0
    stale_check_s: float | None = None
    """How often stale detection runs; ``None``: a quarter of the shortest stale limit, between 0.05 and 30 s."""
    bridge_restart_step_s: float = 2.0
    bridge_restart_max_s: float = 30.0
    bridge_max_crashes: int = 5
    bridge_stable_s: float = 60.0
    """A bridge that ran this long before exiting starts a fresh crash count."""
    lease_ttl_s: float = 30.0
    lease_renew_s: float = 10.0
    connector_id: str | None = None
    message_cache_size: int = 5000
    """Recently seen message contents kept for Baileys' retry requests (``message.get``), over all sessions."""
    quiesce_s: float = 35.0
    """How long a connect waits for the previous socket's key writes still running here (the bridge gives up on a
    call after 30 s, but the write it started may still land)."""


@dataclass(frozen=True)
class OutboundSettings:
    """How the outbound consumer (``connector.outbound``) holds replies. ``Config.outbound`` sets ``max_held``; the
    timings are the queue's (``OUTBOUND_QUEUE``) and change only in tests."""

    max_held: int = 1000
    """Replies kept in flight at most (waiting for their session, or being sent); beyond it a reply whose session is
    not open is handed back for ``overflow_delay_s``."""
    wait_time_s: int = 20
    """The receive's long poll."""
    visibility_s: float = OUTBOUND_QUEUE.visibility_timeout_s
    """How long a receive hides a message (the queue's visibility timeout)."""
    extend_s: int = 30
    """Each extension hides a held message this long from then on."""
    renew_before_s: float = 10.0
    """A held message is extended when less than this is left of its visibility."""
    tick_s: float = 1.0
    """How often held messages' visibility is checked, and a waiting reply's session asked again."""
    overflow_delay_s: int = 60
    """Visibility of a reply handed back because ``max_held`` are held (the same whatever its receive count)."""
    elsewhere_wait_s: float = 60.0
    """How long a reply for a session another connector owns is kept, for this one to take the session over (the
    lease of a connector that died expires within ``LEASE_TTL_S``)."""
    elsewhere_delay_s: int = 30
    """Visibility of a reply handed back to the connector that owns its session."""
    stop_grace_s: float = 15.0
    """At stop, how long sends under way may take to finish and be recorded."""
    send_attempts: int = 5
    """Sends of one reply that fail in the bridge before it goes to the DLQ (retried in place: its chat waits)."""
    retry_base_s: float = 1.0
    retry_max_s: float = 30.0
    """Backoff between failed attempts (sends, store calls): doubling from the base, capped."""
    max_receive_count: int = OUTBOUND_QUEUE.max_receive_count
    """The queue's ``maxReceiveCount``: a message received that often would go to the DLQ without a reason at its
    next receive, so it is not handed back but dead-lettered with one."""

    def __post_init__(self) -> None:
        if not self.tick_s < self.renew_before_s < min(self.visibility_s, self.extend_s):
            raise ValueError("renew_before_s must be between tick_s and the visibility (a held message never lapses)")


_ALIASES: dict[str, str] = {
    str(f.validation_alias.choices[0]): name
    for name, f in Config.model_fields.items()
    if isinstance(f.validation_alias, AliasChoices)
}


def load_config(environ: Mapping[str, str]) -> Config:
    """Read the connector's variables from ``environ``; raises ``ConfigError`` naming every bad variable."""
    values = {env: value.strip() for env, value in environ.items() if env in _ALIASES and value.strip() != ""}
    try:
        return Config.model_validate(values)
    except ValidationError as e:
        problems = []
        for err in e.errors(include_input=False):
            loc = err["loc"][0] if err["loc"] else ""
            field = Config.model_fields.get(str(loc))
            env = (
                str(field.validation_alias.choices[0])
                if field is not None and isinstance(field.validation_alias, AliasChoices)
                else str(loc)
            )
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{env}: {msg}" if env else msg)
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
