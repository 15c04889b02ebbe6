"""``GET /metrics``: the session manager's gauges and counters in Prometheus' text format."""

from __future__ import annotations

from connector.manager import SessionManager
from connector.publish.events import EventQueue
from connector.session import SessionState


def render_metrics(m: SessionManager, events: EventQueue | None = None) -> str:
    """``events``: the ``events.fifo`` publisher, when ``EVENTS_QUEUE_URL`` is set (its series are absent without)."""
    by_state = {state.value: 0 for state in SessionState}
    held = elsewhere = stale = 0
    for s in m.list_sessions():
        by_state[s.state.value] += 1
        held += int(s.held)
        elsewhere += int(s.owner is not None)
        stale += int(s.stale_since is not None)
    lines: list[str] = []

    def metric(name: str, kind: str, help: str, value: int, labels: str = "") -> None:
        if not any(line.startswith(f"# HELP {name} ") for line in lines):
            lines.extend([f"# HELP {name} {help}", f"# TYPE {name} {kind}"])
        lines.append(f"{name}{labels} {value}")

    for state, count in by_state.items():
        metric("wa_relay_sessions", "gauge", "Sessions by state.", count, f'{{state="{state}"}}')
    metric(
        "wa_relay_events_published_total",
        "counter",
        "WhatsApp message events handed to the inbound queue.",
        m.ingest.published,
    )
    metric(
        "wa_relay_replies_sent_total", "counter", "Messages sent through the bridge (replies and API sends).",
        m.replies_sent,
    )  # fmt: skip
    publisher = m.ingest.publisher
    metric("wa_relay_spool_depth", "gauge", "Envelopes waiting in the local spool for SQS.", publisher.spool_depth)
    metric("wa_relay_spool_bytes", "gauge", "Bytes the local spool takes on disk.", publisher.spool_bytes)
    metric(
        "wa_relay_publisher_degraded", "gauge",
        "Whether inbound envelopes cannot be made durable now (spool full or failing while SQS is not taking them).",
        int(publisher.degraded is not None),
    )  # fmt: skip
    metric(
        "wa_relay_spool_write_errors_total", "counter", "Spool disk operations that failed (full disk, I/O errors).",
        publisher.spool_write_errors,
    )  # fmt: skip
    stubs = m.ingest.stubs
    metric(
        "wa_relay_decrypt_stubs_total", "counter",
        "Messages that could not be decrypted (Baileys' CIPHERTEXT stubs); not published, their content may follow.",
        stubs.seen,
    )  # fmt: skip
    metric(
        "wa_relay_decrypt_stubs_resolved_total", "counter",
        "Decrypt-failure stubs whose content arrived later under the same id (and was published).", stubs.resolved,
    )  # fmt: skip
    metric(
        "wa_relay_decrypt_stubs_unresolved", "gauge",
        f"Decrypt-failure stubs still without content {stubs.grace_s:.0f}s after they were seen (since the start).",
        stubs.unresolved,
    )  # fmt: skip
    metric("wa_relay_bridge_up", "gauge", "Whether the bridge process is connected.", int(m.bridge_up))
    metric(
        "wa_relay_bridge_restarts_total", "counter", "Bridge process restarts after it exited.", m.supervisor.restarts
    )
    metric("wa_relay_bridge_pid", "gauge", "Process id of the running bridge (0 while it is down).", m.bridge_pid or 0)
    metric("wa_relay_start_queue_depth", "gauge", "Sessions waiting in the start queue.", len(m.queue))
    metric(
        "wa_relay_connects_total", "counter", "Connects started by the start queue (515 restarts included).",
        m.queue.connects,
    )  # fmt: skip
    metric("wa_relay_sessions_held", "gauge", "Sessions held back by the flap breaker now.", held)
    metric("wa_relay_flap_holds_total", "counter", "Times the flap breaker held a session back.", m.breaker.trips)
    metric(
        "wa_relay_logged_out_total", "counter", "Sessions logged out by WhatsApp (401/403/411/419); keys wiped.",
        m.logged_out_total,
    )  # fmt: skip
    metric(
        "wa_relay_conflicts_total", "counter", "Sessions replaced by another client (440); not reconnected.",
        m.conflicts_total,
    )  # fmt: skip
    metric(
        "wa_relay_leases_lost_total", "counter", "Session leases lost to another connector (socket closed at once).",
        m.leases_lost_total,
    )  # fmt: skip
    metric(
        "wa_relay_sessions_owned_elsewhere", "gauge", "Known sessions whose lease another connector holds.", elsewhere
    )
    metric("wa_relay_sessions_stale", "gauge", "Open sessions flagged stale (nothing received for too long).", stale)
    hub = m.events
    metric("wa_relay_events_emitted_total", "counter", "Lifecycle and message-status events emitted.", hub.seq)
    metric("wa_relay_event_streams", "gauge", "Open GET /v1/events streams (dashboards, CLIs).", hub.streams)
    metric(
        "wa_relay_event_streams_ended_total", "counter",
        "Event streams ended because their client fell too far behind (it reconnects and resumes).", hub.streams_ended,
    )  # fmt: skip
    if events is not None:
        metric("wa_relay_events_sent_total", "counter", "Lifecycle events SQS accepted for EVENTS_URL.", events.sent)
        metric(
            "wa_relay_events_dropped_total", "counter",
            "Lifecycle events dropped before SQS took them (buffer full, or SQS can never take them).", events.dropped,
        )  # fmt: skip
        metric(
            "wa_relay_events_errors_total", "counter",
            "Failed sends of lifecycle events to SQS (retried unless dropped).", events.errors,
        )  # fmt: skip
        metric("wa_relay_events_buffered", "gauge", "Lifecycle events waiting in memory for SQS.", events.buffered)
    return "\n".join(lines) + "\n"
