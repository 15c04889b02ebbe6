"""The application factory: builds every component from the ``Config`` and wires them (STYLE rules 2 and 5).

``create_app(cfg)`` returns an unstarted ``web.Application``. Components start in ``cleanup_ctx`` order and stop in
reverse: stores → publisher → events publisher (with ``EVENTS_QUEUE_URL``) → session manager (leases, the bridge,
sessions) → chat states → outbound consumer. Tests
inject memory stores, a publisher and a fake bridge through the keyword overrides. This is the only module that knows
the concrete classes; the DynamoDB stores and the SQS clients are imported inside their factories, so a memory-backed
app (and the tests that build one) never loads aioboto3.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import NamedTuple

from aiohttp import web

from connector.api import (
    API_KEY_KEY,
    EVENT_QUEUE_KEY,
    EVENTS_KEY,
    MANAGER_KEY,
    REPLIES_KEY,
    SETTINGS_KEY,
    add_routes,
    auth_middleware,
    error_middleware,
)
from connector.config import ROOT, Config
from connector.events import EventHub
from connector.manager import SessionManager
from connector.publish import InboundPublisher, MemoryPublisher
from connector.publish.events import EventQueue
from connector.replies import Replies
from connector.sidecar import BridgeClient, BridgeCommand
from connector.sidecar.client import BridgeFactory, BridgeHost
from connector.sidecar.types import DECRYPTED_MESSAGE_TYPE
from connector.store import (
    AuthStore,
    LeaseStore,
    LidMapStore,
    MemoryAuthStore,
    MemoryLeaseStore,
    MemoryLidMapStore,
    MemoryReplyLog,
    MemorySettingsStore,
    ReplyLog,
    SettingsStore,
)
from connector.web import add_pages

log = logging.getLogger("wa_relay.app")

DECRYPTED_MESSAGE_TTL_S = 30 * 86400
"""The bridge's decrypted-message buffer is message plaintext at rest: it clears an entry once its message is durable
downstream, and DynamoDB's TTL removes what a crash left behind, after the longest WhatsApp keeps an unreceipted
message for a linked device (its offline queue)."""

CONFIG_KEY = web.AppKey("config", Config)


class Stores(NamedTuple):
    auth: AuthStore
    leases: LeaseStore | None
    """The lease store ``auth`` fences against (the same table). ``None``: no leases, one connector per table."""
    lid_map: LidMapStore
    reply_log: ReplyLog
    settings: SettingsStore

    @classmethod
    def memory(cls, dedup_ttl_s: float = 86400.0) -> Stores:
        leases = MemoryLeaseStore()
        return cls(
            MemoryAuthStore(leases),
            leases,
            MemoryLidMapStore(),
            MemoryReplyLog(ttl_s=dedup_ttl_s),
            MemorySettingsStore(),
        )


def make_stores(cfg: Config) -> Stores:
    if cfg.store_backend == "memory":
        log.warning("STORE_BACKEND=memory: linked sessions are lost when the connector stops")
        return Stores.memory(cfg.dedup_ttl_s)
    from connector.store.dynamodb import (
        DynamoAuthStore,
        DynamoLeaseStore,
        DynamoLidMapStore,
        DynamoReplyLog,
        DynamoSettingsStore,
    )

    return Stores(
        DynamoAuthStore(
            cfg.auth_table,
            cfg.aws_endpoint_url,
            cfg.aws_region,
            expiring_types={DECRYPTED_MESSAGE_TYPE: DECRYPTED_MESSAGE_TTL_S},
        ),
        DynamoLeaseStore(cfg.auth_table, cfg.aws_endpoint_url, cfg.aws_region),
        DynamoLidMapStore(cfg.lid_map_table, cfg.aws_endpoint_url, cfg.aws_region),
        DynamoReplyLog(cfg.idempotency_table, cfg.aws_endpoint_url, cfg.aws_region, ttl_s=cfg.dedup_ttl_s),
        DynamoSettingsStore(cfg.settings_table, cfg.aws_endpoint_url, cfg.aws_region),
    )


def make_publisher(cfg: Config) -> InboundPublisher:
    if cfg.inbound_queue_url:
        from connector.publish.sqs import SqsPublisher

        return SqsPublisher(
            cfg.inbound_queue_url,
            spool_dir=cfg.spool_dir,
            region=cfg.aws_region,
            endpoint_url=cfg.aws_endpoint_url,
            spool_max_bytes=cfg.spool_max_bytes,
            spool_after_s=cfg.spool_after_s,
        )
    log.warning("no INBOUND_QUEUE_URL: inbound events are only logged and kept in memory")
    return MemoryPublisher()


def make_event_queue(cfg: Config) -> EventQueue | None:
    """The ``events.fifo`` publisher, when ``EVENTS_QUEUE_URL`` is set (Terraform and ``make up`` set it only with an
    ``EVENTS_URL`` to deliver to)."""
    if not cfg.events_queue_url:
        return None
    return EventQueue(cfg.events_queue_url, region=cfg.aws_region, endpoint_url=cfg.aws_endpoint_url)


def bridge_factory(cfg: Config) -> BridgeFactory:
    env = {"WA_WEBSOCKET_URL": cfg.wa_websocket_url} if cfg.wa_websocket_url else {}
    command = BridgeCommand(script=cfg.bridge_script, node=cfg.node_binary, env=env, cwd=ROOT)

    def make(host: BridgeHost) -> BridgeClient:
        return BridgeClient(command, host)

    return make


def _lifecycle(name: str, component: object) -> Callable[[web.Application], AsyncIterator[None]]:
    """One ``cleanup_ctx`` entry: ``start()`` before the app serves, ``stop()`` at shutdown (components without
    them, like the memory stores, are skipped)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        start = getattr(component, "start", None)
        stop = getattr(component, "stop", None)
        if start is not None:
            log.debug("starting %s", name)
            await start()
        yield
        if stop is not None:
            log.debug("stopping %s", name)
            try:
                await stop()
            except Exception:
                log.exception("stopping %s failed", name)

    return ctx


def create_app(
    cfg: Config,
    *,
    stores: Stores | None = None,
    publisher: InboundPublisher | None = None,
    bridge: BridgeFactory | None = None,
    outbound: bool = True,
    on_fatal: Callable[[int], None] | None = None,
) -> web.Application:
    """The connector as an unstarted app. Overrides replace the component built from ``cfg`` (tests);
    ``outbound=False`` leaves the outbound consumer out even when ``OUTBOUND_QUEUE_URL`` is set. ``on_fatal(code)``
    is called when the connector must stop with an exit code (the bridge keeps crashing)."""
    stores = stores or make_stores(cfg)
    if stores.leases is None:
        log.warning("no lease store: run only one connector on these tables")
    publisher = publisher or make_publisher(cfg)
    hub = EventHub()
    event_queue = make_event_queue(cfg)
    if event_queue is not None:
        hub.add_sink(event_queue)
    manager = SessionManager(
        cfg.sessions,
        bridge=bridge or bridge_factory(cfg),
        auth=stores.auth,
        lid_map=stores.lid_map,
        publisher=publisher,
        leases=stores.leases,
        reply_log=stores.reply_log,
        on_fatal=on_fatal,
        events=hub,
    )
    replies = Replies(manager, stores.reply_log, manager.messages)

    app = web.Application(middlewares=[error_middleware, auth_middleware])
    app[CONFIG_KEY] = cfg
    app[API_KEY_KEY] = cfg.api_key
    app[MANAGER_KEY] = manager
    app[REPLIES_KEY] = replies
    app[SETTINGS_KEY] = stores.settings
    app[EVENTS_KEY] = hub

    async def end_event_streams(app: web.Application) -> None:
        hub.close_streams()

    # on_shutdown runs before the server waits for open requests: an event stream never ends by itself.
    app.on_shutdown.append(end_event_streams)
    if event_queue is not None:
        app[EVENT_QUEUE_KEY] = event_queue
    add_routes(app)
    add_pages(app)

    seen: set[int] = set()
    for name, store in zip(Stores._fields, stores, strict=True):
        if store is not None and id(store) not in seen:  # one object may play several roles
            seen.add(id(store))
            app.cleanup_ctx.append(_lifecycle(name, store))
    app.cleanup_ctx.append(_lifecycle("publisher", publisher))
    if event_queue is not None:
        # Before the manager, so it stops after it: the manager's stop emits the sessions' last state changes.
        app.cleanup_ctx.append(_lifecycle("events publisher", event_queue))
    app.cleanup_ctx.append(_lifecycle("session manager", manager))
    if outbound and cfg.outbound_queue_url:
        from connector.chatstate import ChatStates
        from connector.outbound import OutboundConsumer

        # Between the manager and the consumer: stopped after the consumer (which drives it) and before the
        # manager, so the last "paused" still reaches the bridge.
        chat_states = ChatStates(manager)
        app.cleanup_ctx.append(_lifecycle("chat states", chat_states))
        consumer = OutboundConsumer(
            cfg.outbound_queue_url,
            manager,
            replies,
            cfg.outbound,
            dlq_url=cfg.outbound_queue_dlq_url,
            region=cfg.aws_region,
            endpoint_url=cfg.aws_endpoint_url,
            chat_states=chat_states,
        )
        app.cleanup_ctx.append(_lifecycle("outbound consumer", consumer))
    return app
