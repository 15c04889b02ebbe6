"""The connector's HTTP API: the operations table and handlers (``routes``), the request and response models
(``models``), the OpenAPI document generated from both (``openapi``), error rendering and the bearer check
(``errors``), and Prometheus metrics (``metrics``)."""

from connector.api.errors import API_KEY_KEY, auth_middleware, error_middleware
from connector.api.routes import (
    EVENT_QUEUE_KEY,
    EVENTS_KEY,
    MANAGER_KEY,
    OPERATIONS,
    REPLIES_KEY,
    SETTINGS_KEY,
    add_routes,
)

__all__ = [
    "API_KEY_KEY",
    "EVENTS_KEY",
    "EVENT_QUEUE_KEY",
    "MANAGER_KEY",
    "OPERATIONS",
    "REPLIES_KEY",
    "SETTINGS_KEY",
    "add_routes",
    "auth_middleware",
    "error_middleware",
]
