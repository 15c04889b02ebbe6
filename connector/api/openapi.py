"""The OpenAPI 3.1 document, generated from the operations table (``connector.api.routes.OPERATIONS``) and the
pydantic models: every operation with its ``operationId``, path parameter, request schema, each status it can answer
and, for the create operation, links to the operations that take the new session's id (what a client, or a stateful
fuzzer, follows)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

from aiohttp import web
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from connector.api.models import ErrorBody
from connector.contracts import RelayEventKind
from connector.sidecar.types import SESSION_ID_PATTERN

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REF = "#/components/schemas/{model}"
_ID_PARAM = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "pattern": SESSION_ID_PATTERN}}


@dataclass(frozen=True)
class Reply:
    """One status an operation can answer: its schema (a model, a list of one, or ``None`` for non-JSON) and media
    type."""

    description: str
    model: Any = ErrorBody
    media: tuple[str, ...] = ("application/json",)


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: it holds dicts
class Operation:
    method: str
    path: str
    handler: Handler
    operation_id: str
    summary: str
    replies: dict[int, Reply]
    body: type[BaseModel] | None = None
    parameters: list[dict[str, Any]] = field(default_factory=list)
    """Query and header parameters (the path's ``{id}`` is added by itself)."""
    public: bool = False
    links: dict[str, dict[str, Any]] = field(default_factory=dict)
    """OpenAPI links from the success reply: which operations take the created resource's id."""


def _schema(model: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """The schema of a model (a ``$ref`` into ``components``) or of any other type pydantic can describe."""
    if isinstance(model, type):
        return {"$ref": REF.format(model=model.__name__)}
    schema = TypeAdapter(model).json_schema(ref_template=REF)
    defs.update(schema.pop("$defs", {}))
    return schema


def _event_schema(model: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """One server-sent event (before Open API 3.2, a stream's ``schema`` describes each event): its fields as
    strings, ``data`` the JSON of ``model`` (``contentSchema``), or ``{}`` for the ``reset`` event."""
    kinds = [*get_args(RelayEventKind), "reset"]
    return {
        "type": "object",
        "properties": {
            "id": {"type": "string", "pattern": "^[0-9]+$"},
            "event": {"type": "string", "enum": kinds},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {"anyOf": [_schema(model, defs), {"type": "object", "maxProperties": 0}]},
            },
            "retry": {"type": "integer", "minimum": 0},
        },
    }


def _reply(reply: Reply, defs: dict[str, Any], links: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": reply.description}
    content = {}
    for media in reply.media:
        if media == "application/json":
            content[media] = {"schema": _schema(reply.model, defs)} if reply.model is not None else {}
        elif media == "text/event-stream":
            content[media] = {"schema": _event_schema(reply.model, defs)}
        elif media == "image/png":
            content[media] = {"schema": {"type": "string", "contentMediaType": "image/png"}}
        else:
            content[media] = {"schema": {"type": "string"}}
    out["content"] = content
    if links:
        out["links"] = links
    return out


def _operation(op: Operation, defs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary}
    if not op.public:
        out["security"] = [{"bearer": []}]
    parameters = ([_ID_PARAM] if "{id}" in op.path else []) + op.parameters
    if parameters:
        out["parameters"] = parameters
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": _schema(op.body, defs)}}}
    success = min(op.replies)
    out["responses"] = {
        str(status): _reply(reply, defs, op.links if status == success else None)
        for status, reply in sorted(op.replies.items())
    }
    return out


@functools.cache
def document(operations: Sequence[Operation]) -> dict[str, Any]:
    models = {r.model for op in operations for r in op.replies.values() if isinstance(r.model, type)}
    models |= {op.body for op in operations if op.body is not None}
    models.add(ErrorBody)
    _, top = models_json_schema([(m, "validation") for m in sorted(models, key=lambda m: m.__name__)], ref_template=REF)
    defs: dict[str, Any] = dict(top.get("$defs", {}))
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, defs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "wa-relay connector",
            "version": "1",
            "description": "Sessions (linked WhatsApp accounts), QR and pairing codes, sending, health. Every error "
            'is {"error": {"code", "message"}}.',
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": dict(sorted(defs.items())),
        },
        "paths": paths,
    }
