"""``python -m connector``: load the config (exit 11 if invalid), set up logging, serve the app.

Exit codes: 0 after a normal stop; 11 invalid configuration; 14 the bridge kept crashing (more than
``BRIDGE_MAX_CRASHES`` exits without a stable run): the bridge supervisor asks to stop, the app shuts down cleanly
(sockets closed, leases released) and the orchestrator restarts the connector (STYLE rule 6)."""

from __future__ import annotations

import logging
import os
import signal
import sys

from aiohttp import web

from connector.errors import ConfigError

EXIT_CONFIG = 11


def setup_logging(level: int) -> None:
    logging.addLevelName(5, "TRACE")
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("wa_relay").setLevel(level)


def main() -> int:
    from connector.config import load_config

    try:
        cfg = load_config(os.environ)
    except ConfigError as e:
        print(f"wa-relay connector: {e}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(cfg.log_level_number)

    from connector.app import create_app

    log = logging.getLogger("wa_relay.main")
    base = f"http://{cfg.host}:{cfg.port}"
    log.info("API on %s/v1/sessions (Authorization: Bearer $CONNECTOR_API_KEY); health %s/healthz", base, base)
    log.info("scan the QR of a session at %s/v1/sessions/<id>/qr?format=svg", base)
    exit_code = 0

    def fatal(code: int) -> None:
        nonlocal exit_code
        exit_code = code
        signal.raise_signal(signal.SIGTERM)  # run_app turns it into a graceful shutdown

    app = create_app(cfg, on_fatal=fatal)
    web.run_app(app, host=cfg.host, port=cfg.port, print=None, access_log=None)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
