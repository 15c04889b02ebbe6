"""The application factory: builds every component from the ``Config`` and wires them (STYLE rules 2 and 5).

``create_app(cfg)`` returns an unstarted ``web.Application``. Components start in ``cleanup_ctx`` order and stop in
reverse: stores → publisher → lease keeper → relay (which starts and supervises the bridge) → outbound consumer. The
keeper stops after the relay, so every socket is closed before its lease is released. Tests inject
memory stores, a publisher and a fake bridge through the keyword overrides. This is the only module that knows the
concrete classes; the DynamoDB stores are imported inside their factory so nothing else depends on them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from aiohttp import web

from connector.api import API_KEY_KEY, RELAY_KEY, add_routes, auth_middleware, error_middleware
from connector.config import ROOT, Config
from connector.lease import LeaseKeeper, default_owner_id
from connector.outbound import OutboundConsumer
from connector.publish import InboundPublisher, MemoryPublisher
from connector.relay import Bridge, BridgeFactory, Leases, Relay
from connector.sidecar import BridgeClient, BridgeCommand
from connector.store import (
    AuthStore,
    LidMapStore,
    MemoryAuthStore,
    MemoryLeaseStore,
    MemoryLidMapStore,
    MemoryReplyLog,
    ReplyLog,
)
from connector.store.abstract import LeaseStore

log = logging.getLogger("wa_relay.app")

CONFIG_KEY = web.AppKey("config", Config)
AUTH_STORE_KEY = web.AppKey("auth_store", AuthStore)
LID_MAP_KEY = web.AppKey("lid_map", LidMapStore)
REPLY_LOG_KEY = web.AppKey("reply_log", ReplyLog)
PUBLISHER_KEY = web.AppKey("publisher", InboundPublisher)
CONSUMER_KEY = web.AppKey("outbound_consumer", OutboundConsumer)


class Component(Protocol):
    async def start(self) -> Any: ...

    async def stop(self) -> Any: ...


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


def make_stores(cfg: Config) -> tuple[AuthStore, LeaseStore, LidMapStore, ReplyLog]:
    """The auth store, the lease store its fencing checks (the same table), the LID map and the reply log."""
    if cfg.store_backend == "memory":
        log.warning("STORE_BACKEND=memory: linked sessions are lost when the connector stops")
        leases = MemoryLeaseStore()
        return MemoryAuthStore(leases), leases, MemoryLidMapStore(), MemoryReplyLog(ttl_s=cfg.dedup_ttl_s)
    # Imported here only: the memory backend (and the tests that use it) never load aioboto3.
    from connector.store.dynamodb import (
        DynamoAuthStore,
        DynamoLeaseStore,
        DynamoLidMapStore,
        DynamoReplyLog,
    )

    return (
        DynamoAuthStore(cfg.auth_table, cfg.aws_endpoint_url, cfg.aws_region),
        DynamoLeaseStore(cfg.auth_table, cfg.aws_endpoint_url, cfg.aws_region),
        DynamoLidMapStore(cfg.lid_map_table, cfg.aws_endpoint_url, cfg.aws_region),
        DynamoReplyLog(cfg.idempotency_table, cfg.aws_endpoint_url, cfg.aws_region, ttl_s=cfg.dedup_ttl_s),
    )


def make_publisher(cfg: Config) -> InboundPublisher:
    if cfg.inbound_queue_url:
        from connector.publish.sqs import SqsPublisher

        return SqsPublisher(
            cfg.inbound_queue_url, spool_dir=cfg.spool_dir, region=cfg.aws_region, endpoint_url=cfg.aws_endpoint_url
        )
    log.warning("no INBOUND_QUEUE_URL: inbound events are only logged and kept in memory")
    return MemoryPublisher()


def bridge_factory(cfg: Config) -> BridgeFactory:
    env = {"WA_WEBSOCKET_URL": cfg.wa_websocket_url} if cfg.wa_websocket_url else {}
    command = BridgeCommand(script=cfg.bridge_script, node=cfg.node_binary, env=env, cwd=ROOT)

    def make(host: Relay) -> Bridge:
        return BridgeClient(command, host)

    return make


def make_leases(cfg: Config, auth: AuthStore, lease_store: LeaseStore | None, relay: Relay) -> Leases | None:
    """The lease keeper over the lease store that ``auth`` fences against (DESIGN section 7). Without one (an
    injected auth store in some tests) the connector runs without leases, which is only safe with one connector per
    table."""
    if lease_store is None:
        log.warning("the auth store has no lease store: run only one connector on these tables")
        return None
    owner = cfg.connector_id or default_owner_id()
    log.info("lease owner id %s (ttl %.0fs, renewed every %.0fs)", owner, cfg.lease_ttl_s, cfg.lease_renew_s)
    relay.lease_store = lease_store
    return LeaseKeeper(lease_store, auth, owner, ttl_s=cfg.lease_ttl_s, renew_every_s=cfg.lease_renew_s,
                       on_lost=relay.on_lease_lost)  # fmt: skip


def relay_options_of(cfg: Config) -> dict[str, Any]:
    """The relay's keyword arguments from the config (the README "Sessions" section documents each)."""
    return {
        "start_interval_s": cfg.session_start_interval_s,
        "start_jitter_s": cfg.session_start_jitter_s,
        "backoff_initial_s": cfg.reconnect_initial_s,
        "backoff_max_s": cfg.reconnect_max_s,
        "flap_max": cfg.flap_max,
        "flap_window_s": cfg.flap_window_s,
        "flap_hold_s": cfg.flap_hold_s,
        "stale_after_s": cfg.stale_after_s,
        "stale_messages_after_s": cfg.stale_messages_after_s,
        "bridge_max_crashes": cfg.bridge_max_crashes,
        "lease_ttl_s": cfg.lease_ttl_s,
    }


def create_app(
    cfg: Config,
    *,
    auth: AuthStore | None = None,
    lid_map: LidMapStore | None = None,
    reply_log: ReplyLog | None = None,
    publisher: InboundPublisher | None = None,
    bridge: BridgeFactory | None = None,
    leases: Leases | None = None,
    outbound: bool = True,
    relay_options: dict[str, Any] | None = None,
) -> web.Application:
    """The connector as an unstarted app. Overrides replace the component built from ``cfg`` (tests);
    ``outbound=False`` leaves the outbound consumer out even when ``OUTBOUND_QUEUE_URL`` is set."""
    # An injected memory auth store brings the lease store it fences against.
    lease_store: LeaseStore | None = auth.leases if isinstance(auth, MemoryAuthStore) else None
    if auth is None or lid_map is None or reply_log is None:
        made = make_stores(cfg)
        if auth is None:
            auth, lease_store = made[0], made[1]
        lid_map, reply_log = lid_map or made[2], reply_log or made[3]
    publisher = publisher or make_publisher(cfg)
    relay = Relay(
        bridge or bridge_factory(cfg),
        auth,
        lid_map,
        publisher,
        **{**relay_options_of(cfg), **(relay_options or {})},
    )
    if leases is None:
        leases = make_leases(cfg, auth, lease_store, relay)
    relay.leases = leases

    app = web.Application(middlewares=[error_middleware, auth_middleware])
    app[CONFIG_KEY] = cfg
    app[API_KEY_KEY] = cfg.api_key
    app[AUTH_STORE_KEY] = auth
    app[LID_MAP_KEY] = lid_map
    app[REPLY_LOG_KEY] = reply_log
    app[PUBLISHER_KEY] = publisher
    app[RELAY_KEY] = relay
    add_routes(app)

    stores: list[tuple[str, object]] = [("auth store", auth), ("LID map store", lid_map), ("reply log", reply_log)]
    if lease_store is not None:
        stores.insert(1, ("lease store", lease_store))
    seen: set[int] = set()
    for name, store in stores:
        if id(store) not in seen:  # one object may implement several roles
            seen.add(id(store))
            app.cleanup_ctx.append(_lifecycle(name, store))
    app.cleanup_ctx.append(_lifecycle("publisher", publisher))
    if leases is not None:
        app.cleanup_ctx.append(_lifecycle("lease keeper", leases))
    app.cleanup_ctx.append(_lifecycle("relay", relay))
    if outbound and cfg.outbound_queue_url:
        consumer = OutboundConsumer(
            cfg.outbound_queue_url,
            relay,
            reply_log,
            dlq_url=cfg.outbound_queue_dlq_url,
            region=cfg.aws_region,
            endpoint_url=cfg.aws_endpoint_url,
        )
        app[CONSUMER_KEY] = consumer
        app.cleanup_ctx.append(_lifecycle("outbound consumer", consumer))
    return app
