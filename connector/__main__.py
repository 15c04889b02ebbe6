"""``python -m connector``: load the config (exit 11 if invalid), set up logging, serve the app."""

from __future__ import annotations

import logging
import os
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
    web.run_app(create_app(cfg), host=cfg.host, port=cfg.port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
