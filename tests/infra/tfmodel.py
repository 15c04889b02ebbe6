"""A read-only model of ``infra/terraform`` for the structural tests, and the checks they run on it.

python-hcl2 8 keeps the quotes of string literals and block labels (``'"aws_sqs_queue"'``) and marks blocks with
``__is_block__``; ``normalize`` strips both, so checks compare plain values. Expressions stay ``${...}`` strings:
``Model.eval`` resolves the ones built from ``var.`` (defaults), ``local.`` (including ``resources.json``),
``tostring``/``coalesce`` and string templates, and turns references to resources into ``Ref``. Anything else raises
``Unresolved``, so a check never passes because an expression was silently misread.

Every ``check_*`` function returns a list of problems (empty = fine). The tests run them on the real configuration
and, to prove they can fail, on deliberately broken snippets (``Model.from_text``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

TERRAFORM_DIR = Path(__file__).resolve().parents[2] / "infra" / "terraform"

Problems = list[str]


class Unresolved(Exception):
    """An expression the evaluator does not understand (the check must not guess)."""


@dataclass(frozen=True)
class Ref:
    """A reference to a resource or data attribute, e.g. ``aws_sqs_queue.inbound_dlq.arn``."""

    expr: str

    @property
    def address(self) -> str:
        """``aws_sqs_queue.inbound_dlq`` (or ``data.x.y``)."""
        parts = re.sub(r"\[\d+\]", "", self.expr).split(".")  # aws_x.y[0].arn: one of a counted resource
        return ".".join(parts[:3] if parts[0] == "data" else parts[:2])

    @property
    def attribute(self) -> str:
        return self.expr.split(".")[-1]

    def __str__(self) -> str:
        return f"<{self.expr}>"


# ---- parsing ----


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return value[1:-1].replace('\\"', '"')
    return value


def normalize(value: Any) -> Any:
    """python-hcl2 v8 output → plain data: no quotes around literals and labels, no ``__is_block__``/comments."""
    if isinstance(value, dict):
        return {_unquote(k): normalize(v) for k, v in value.items() if k not in ("__is_block__", "__comments__")}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    if isinstance(value, str):
        return _unquote(value)
    return value


def _template_parts(text: str) -> list[str | tuple[str]]:
    """Split ``a${x}b`` into ``["a", ("x",), "b"]``; interpolations may nest (``${f("${y}")}``)."""
    parts: list[str | tuple[str]] = []
    i, literal = 0, ""
    while i < len(text):
        if text.startswith("${", i):
            depth, j, in_str = 1, i + 2, False
            while j < len(text) and depth:
                c = text[j]
                if in_str:
                    if c == "\\":
                        j += 1
                    elif c == '"':
                        in_str = False
                elif c == '"':
                    in_str = True
                elif c == "{":
                    depth += 1
                elif c == "}":
                    depth -= 1
                j += 1
            if depth:
                raise Unresolved(f"unbalanced interpolation in {text!r}")
            if literal:
                parts.append(literal)
                literal = ""
            parts.append((text[i + 2 : j - 1],))
            i = j
        else:
            literal += text[i]
            i += 1
    if literal:
        parts.append(literal)
    return parts


def _split_args(text: str) -> list[str]:
    args, depth, current, in_str = [], 0, "", False
    for c in text:
        if in_str:
            in_str = c != '"'
        elif c == '"':
            in_str = True
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            args.append(current.strip())
            current = ""
            continue
        current += c
    if current.strip():
        args.append(current.strip())
    return args


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass
class Model:
    """Every top-level block of one Terraform directory, normalised."""

    module_dir: Path
    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    data: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals_: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    var_values: dict[str, Any] = field(default_factory=dict)
    """Overrides of variable defaults (what a tfvars file would set)."""
    _local_cache: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dir(cls, directory: Path = TERRAFORM_DIR) -> Model:
        model = cls(directory)
        for path in sorted(directory.glob("*.tf")):
            model._add(path.read_text())
        return model

    @classmethod
    def from_text(cls, text: str, module_dir: Path = TERRAFORM_DIR) -> Model:
        """A model of one snippet (``file()`` paths resolve against ``module_dir``, so snippets can read the real
        ``resources.json``)."""
        model = cls(module_dir)
        model._add(text)
        return model

    def _add(self, text: str) -> None:
        raw = normalize(hcl2.loads(text))
        for kind, target in (("resource", self.resources), ("data", self.data)):
            for entry in raw.get(kind, []):
                for type_, named in entry.items():
                    target.setdefault(type_, {}).update(named)
        for entry in raw.get("variable", []):
            self.variables.update(entry)
        for entry in raw.get("output", []):
            self.outputs.update(entry)
        for entry in raw.get("locals", []):
            self.locals_.update(entry)

    # ---- lookups ----

    def resource(self, address: str) -> dict[str, Any]:
        parts = address.split(".")
        if parts[0] == "data":
            return self.data[parts[1]][parts[2]]
        return self.resources[parts[0]][parts[1]]

    def of_type(self, type_: str) -> dict[str, dict[str, Any]]:
        return self.resources.get(type_, {})

    @staticmethod
    def block(body: Mapping[str, Any], name: str) -> dict[str, Any] | None:
        """The single nested block ``name`` (python-hcl2 gives blocks as lists), or ``None``."""
        value = body.get(name)
        if isinstance(value, list) and value and isinstance(value[0], dict):
            return value[0]
        return value if isinstance(value, dict) else None

    # ---- evaluation ----

    def eval(self, value: Any, scope: Mapping[str, Any] | None = None) -> Any:
        """Resolve a normalised value: templates, ``var.``/``local.``/``each.`` references; resources become ``Ref``."""
        if isinstance(value, dict):
            return {self._key(k, scope): self.eval(v, scope) for k, v in value.items()}
        if isinstance(value, list):
            return [self.eval(v, scope) for v in value]
        if not isinstance(value, str) or "${" not in value:
            return value
        parts = _template_parts(value)
        if len(parts) == 1 and isinstance(parts[0], tuple):
            return self._expr(parts[0][0], scope)
        out = ""
        for part in parts:
            out += part if isinstance(part, str) else _as_text(self._expr(part[0], scope))
        return out

    def _key(self, key: str, scope: Mapping[str, Any] | None) -> str:
        value = self.eval(key, scope)
        if not isinstance(value, str):
            raise Unresolved(f"map key {key!r} is not a string: {value!r}")
        return value

    def _expr(self, expr: str, scope: Mapping[str, Any] | None) -> Any:
        e = expr.strip()
        while e.startswith("(") and e.endswith(")"):
            e = e[1:-1].strip()
        if m := re.fullmatch(r'jsondecode\(file\("(.*)"\)\)', e):
            path = Path(str(self.eval(m[1], scope)))
            return json.loads(path.read_text())
        if m := re.fullmatch(r"tostring\((.*)\)", e):
            return _as_text(self._expr(m[1], scope))
        if m := re.fullmatch(r"coalesce\((.*)\)", e):
            for arg in _split_args(m[1]):
                value = self.eval(_unquote(arg), scope) if arg.startswith('"') else self._expr(arg, scope)
                if value not in (None, ""):
                    return value
            return None
        # The container definition's `environment`: a name/value list built from a map local.
        if m := re.fullmatch(
            r"\[for (\w+) in sort\(keys\(local\.(\w+)\)\) : \{name = \1, value = local\.\2\[\1\]\}\]", e
        ):
            env = self.local(m[2])
            return [{"name": k, "value": env[k]} for k in sorted(env)]
        if m := re.fullmatch(r'([\w.]+) (==|!=) "([^"$]*)"', e):  # a comparison with a literal, as local.events_enabled
            equal = _as_text(self._expr(m[1], scope)) == m[3]
            return equal if m[2] == "==" else not equal
        if m := re.fullmatch(r"([\w.!]+) \? (\[[^\]]*\]|[\w.\"]+) : (\[[^\]]*\]|[\w.\"]+)", e):
            condition = self._expr(m[1], scope)
            if not isinstance(condition, bool):
                raise Unresolved(f"{e}: condition is not a bool")
            return self._expr(m[2] if condition else m[3], scope)
        if e.startswith("[") and e.endswith("]"):
            return [self._expr(arg, scope) for arg in _split_args(e[1:-1])]
        if e.startswith("!"):
            operand = self._expr(e[1:], scope)
            if not isinstance(operand, bool):
                raise Unresolved(f"{e}: not a bool")
            return not operand
        if e == "path.module":
            return str(self.module_dir)
        if e == "null":
            return None
        if re.fullmatch(r"-?\d+(\.\d+)?", e):
            return float(e) if "." in e else int(e)
        if m := re.fullmatch(r"(\d+) \* ([\w.]+)", e):  # a multiple, as the inbound queue's visibility timeout is
            factor = self._expr(m[2], scope)
            if not isinstance(factor, int | float):
                raise Unresolved(f"{e}: {m[2]} is not a number")
            return int(m[1]) * factor
        if m := re.fullmatch(r'"([^"$]*)"', e):
            return m[1]
        if m := re.fullmatch(r"(var|local|each)\.(\w+)((?:\.\w+)*)", e):
            kind, name, rest = m[1], m[2], m[3]
            if kind == "var":
                base = self.var(name)
            elif kind == "local":
                base = self.local(name)
            else:
                if scope is None or name not in scope:
                    raise Unresolved(f"{e} outside a for_each")
                base = scope[name]
            for key in filter(None, rest.split(".")):
                if not isinstance(base, dict) or key not in base:
                    raise Unresolved(f"{e}: no {key!r}")
                base = base[key]
            return base
        if re.fullmatch(r"(data\.)?[a-z]\w*\.\w+(\.\w+|\[\d+\])*", e):
            return Ref(e)
        raise Unresolved(e)

    def var(self, name: str) -> Any:
        if name in self.var_values:
            return self.var_values[name]
        if name not in self.variables:
            raise Unresolved(f"var.{name} is not declared")
        if "default" not in self.variables[name]:
            raise Unresolved(f"var.{name} has no default (set Model.var_values)")
        return self.eval(self.variables[name]["default"])

    def local(self, name: str) -> Any:
        if name not in self._local_cache:
            if name not in self.locals_:
                raise Unresolved(f"local.{name} is not defined")
            self._local_cache[name] = self.eval(self.locals_[name])
        return self._local_cache[name]

    def attr(self, address: str, name: str, scope: Mapping[str, Any] | None = None) -> Any:
        return self.eval(self.resource(address).get(name), scope)


# ---- policy documents ----


@dataclass(frozen=True)
class Statement:
    document: str
    sid: str
    effect: str
    actions: list[str]
    resources: list[Any]
    principals: list[dict[str, Any]]
    conditions: list[dict[str, Any]]
    raw: dict[str, Any]


def statements(model: Model, doc_name: str) -> Iterator[Statement]:
    """Every statement of ``data.aws_iam_policy_document.<doc_name>``, static and dynamic ones alike."""
    doc = model.data["aws_iam_policy_document"][doc_name]
    bodies = list(doc.get("statement", []))
    for dynamic in doc.get("dynamic", []):
        for label, block in dynamic.items():
            # Only statements that exist with the current variable values (for_each = cond ? [1] : []).
            if label == "statement" and model.eval(block.get("for_each")):
                bodies.extend(block.get("content", []))
    for body in bodies:
        yield Statement(
            document=doc_name,
            sid=str(body.get("sid", "?")),
            effect=str(body.get("effect", "Allow")),
            actions=[str(a) for a in model.eval(body.get("actions", []))],
            resources=list(model.eval(body.get("resources", []))),
            principals=list(body.get("principals", [])),
            conditions=list(body.get("condition", [])),
            raw=body,
        )


def _doc_refs(model: Model, type_: str, attribute: str) -> set[str]:
    """Names of the policy documents whose ``.json`` is used as ``attribute`` of resources of ``type_``."""
    names = set()
    for body in model.of_type(type_).values():
        value = model.eval(body.get(attribute))
        if isinstance(value, Ref) and value.expr.startswith("data.aws_iam_policy_document."):
            names.add(value.expr.split(".")[2])
    return names


# ---- checks ----


def _redrive(model: Model, body: Mapping[str, Any]) -> tuple[str | None, Any]:
    """(DLQ resource name, maxReceiveCount) from ``redrive_policy = jsonencode({...})``."""
    text = str(body.get("redrive_policy", ""))
    target = re.search(r"deadLetterTargetArn\s*=\s*aws_sqs_queue\.(\w+)\.arn", text)
    count = re.search(r"maxReceiveCount\s*=\s*([^,}\s]+)", text)
    return (target[1] if target else None), (model._expr(count[1], None) if count else None)


def check_queues(model: Model, max_receive_count: int | Mapping[str, int]) -> Problems:
    """Every queue FIFO (name ``.fifo``); every non-DLQ redrives to a FIFO DLQ with the code's maxReceiveCount (one for
    all, or by resource name); every DLQ lets only its source queues redrive to it."""
    problems: Problems = []
    queues = model.of_type("aws_sqs_queue")
    if not queues:
        return ["no aws_sqs_queue at all"]
    dlq_sources: dict[str, list[str]] = {}
    for name, body in queues.items():
        if body.get("fifo_queue") is not True:
            problems.append(f"aws_sqs_queue.{name}: fifo_queue is not true")
        queue_name = model.eval(body.get("name"))
        if not (isinstance(queue_name, str) and queue_name.endswith(".fifo")):
            problems.append(f"aws_sqs_queue.{name}: name {queue_name!r} does not end with .fifo")
        if "redrive_policy" in body:
            target, count = _redrive(model, body)
            if target is None or target not in queues:
                problems.append(f"aws_sqs_queue.{name}: redrive_policy does not target an aws_sqs_queue in this stack")
            else:
                dlq_sources.setdefault(target, []).append(name)
            expected = max_receive_count if isinstance(max_receive_count, int) else max_receive_count.get(name)
            if count != expected:
                problems.append(f"aws_sqs_queue.{name}: maxReceiveCount {count!r} != the code's {expected}")
    for name in queues:
        if name not in dlq_sources and "redrive_policy" not in queues[name]:
            problems.append(f"aws_sqs_queue.{name}: neither a DLQ nor redriving to one")
    for dlq, sources in dlq_sources.items():
        if "redrive_policy" in queues[dlq]:
            problems.append(f"aws_sqs_queue.{dlq}: a DLQ with a redrive policy of its own")
        allow = [
            body
            for body in model.of_type("aws_sqs_queue_redrive_allow_policy").values()
            if isinstance(url := model.eval(body.get("queue_url")), Ref) and url.address == f"aws_sqs_queue.{dlq}"
        ]
        if not allow:
            problems.append(f"aws_sqs_queue.{dlq}: DLQ without an aws_sqs_queue_redrive_allow_policy")
            continue
        text = str(allow[0].get("redrive_allow_policy", ""))
        allowed = set(re.findall(r"aws_sqs_queue\.(\w+)\.arn", text))
        if 'redrivePermission = "byQueue"' not in text or allowed != set(sources):
            problems.append(
                f"aws_sqs_queue.{dlq}: redrive allow policy must be byQueue for exactly {sorted(sources)}, "
                f"got {sorted(allowed)}"
            )
    return problems


@dataclass(frozen=True)
class TableExpectation:
    resource_name: str
    name: str
    hash_key: str
    range_key: str | None
    ttl_attribute: str | None


def check_tables(model: Model, expected: list[TableExpectation]) -> Problems:
    """Exactly the code's tables, with its names (at the default prefix), keys and TTL attribute; on demand, PITR,
    SSE with the stack's customer-managed key."""
    problems: Problems = []
    tables = model.of_type("aws_dynamodb_table")
    extra = set(tables) - {e.resource_name for e in expected}
    if extra:
        problems.append(f"aws_dynamodb_table not defined in connector/resources.py: {sorted(extra)}")
    for exp in expected:
        address = f"aws_dynamodb_table.{exp.resource_name}"
        body = tables.get(exp.resource_name)
        if body is None:
            problems.append(f"{address} is missing")
            continue
        got = {
            "name": model.eval(body.get("name")),
            "hash_key": model.eval(body.get("hash_key")),
            "range_key": model.eval(body.get("range_key")),
        }
        want = {"name": exp.name, "hash_key": exp.hash_key, "range_key": exp.range_key}
        for key, value in want.items():
            if got[key] != value:
                problems.append(f"{address}: {key} {got[key]!r} != the code's {value!r}")
        attributes = {model.eval(a.get("name")) for a in body.get("attribute", [])}
        if attributes != {k for k in (exp.hash_key, exp.range_key) if k}:
            problems.append(f"{address}: attribute definitions {sorted(map(str, attributes))} do not match the keys")
        ttl = model.block(body, "ttl")
        ttl_attribute = model.eval(ttl.get("attribute_name")) if ttl and ttl.get("enabled") is True else None
        if ttl_attribute != exp.ttl_attribute:
            problems.append(f"{address}: TTL attribute {ttl_attribute!r} != the code's {exp.ttl_attribute!r}")
        if body.get("billing_mode") != "PAY_PER_REQUEST":
            problems.append(f"{address}: billing_mode is not PAY_PER_REQUEST (on demand)")
        pitr = model.block(body, "point_in_time_recovery")
        if not (pitr and pitr.get("enabled") is True):
            problems.append(f"{address}: point-in-time recovery is not enabled")
        sse = model.block(body, "server_side_encryption")
        sse_key = model.eval(sse.get("kms_key_arn")) if sse else None
        if not (
            sse
            and sse.get("enabled") is True
            and isinstance(sse_key, Ref)
            and sse_key.address.startswith("aws_kms_key.")
        ):
            problems.append(f"{address}: not encrypted with the stack's customer-managed KMS key")
    return problems


def check_inbound_function(model: Model, timeout_s: int | Mapping[str, int]) -> Problems:
    """Lambdas python3.11/arm64 with the code's timeout (one for all, or by function resource name); their SQS
    mappings report batch item failures, batch ≤ 10, have a maximum concurrency, and each queue's visibility timeout
    is at least 6 x its function's timeout."""
    problems: Problems = []
    mappings = model.of_type("aws_lambda_event_source_mapping")
    if not mappings:
        return ["no aws_lambda_event_source_mapping"]
    for name, esm in mappings.items():
        address = f"aws_lambda_event_source_mapping.{name}"
        if model.eval(esm.get("function_response_types")) != ["ReportBatchItemFailures"]:
            problems.append(f"{address}: function_response_types is not [ReportBatchItemFailures]")
        batch = model.eval(esm.get("batch_size"))
        if not (isinstance(batch, int) and 1 <= batch <= 10):
            problems.append(f"{address}: batch_size {batch!r} is not 1..10 (FIFO maximum)")
        batch_expr = str(esm.get("batch_size", ""))
        if m := re.fullmatch(r"\$\{var\.(\w+)\}", batch_expr):
            conditions = " ".join(str(v.get("condition")) for v in model.variables[m[1]].get("validation", []))
            if "<= 10" not in conditions:
                problems.append(f"{address}: var.{m[1]} has no validation bounding it to 10")
        scaling = model.block(esm, "scaling_config")
        if not (scaling and isinstance(model.eval(scaling.get("maximum_concurrency")), int)):
            problems.append(f"{address}: no scaling_config.maximum_concurrency")
        function = model.eval(esm.get("function_name"))
        queue = model.eval(esm.get("event_source_arn"))
        if not (isinstance(function, Ref) and function.address.startswith("aws_lambda_function.")):
            problems.append(f"{address}: function_name is not a function of this stack")
            continue
        if not (isinstance(queue, Ref) and queue.address.startswith("aws_sqs_queue.")):
            problems.append(f"{address}: event_source_arn is not a queue of this stack")
            continue
        fn = model.resource(function.address)
        timeout = model.eval(fn.get("timeout"))
        visibility = model.eval(model.resource(queue.address).get("visibility_timeout_seconds"))
        expected = timeout_s if isinstance(timeout_s, int) else timeout_s.get(function.address.split(".")[1])
        if timeout != expected:
            problems.append(f"{function.address}: timeout {timeout!r} != the code's {expected}")
        if not (isinstance(visibility, int) and isinstance(timeout, int) and visibility >= 6 * timeout):
            problems.append(f"{queue.address}: visibility timeout {visibility!r} < 6 x function timeout {timeout!r}")
        if fn.get("runtime") != "python3.11":
            problems.append(f"{function.address}: runtime {fn.get('runtime')!r} is not python3.11")
        if model.eval(fn.get("architectures")) != ["arm64"]:
            problems.append(f"{function.address}: architectures is not [arm64]")
    return problems


def check_connector_service(model: Model, health_command: list[str]) -> Problems:
    """One task, never two at once (stop before start), circuit breaker, container health check."""
    problems: Problems = []
    services = model.of_type("aws_ecs_service")
    if not services:
        return ["no aws_ecs_service"]
    for name, svc in services.items():
        address = f"aws_ecs_service.{name}"
        want = {"desired_count": 1, "deployment_minimum_healthy_percent": 0, "deployment_maximum_percent": 100}
        for key, value in want.items():
            if model.eval(svc.get(key)) != value:
                problems.append(f"{address}: {key} is {model.eval(svc.get(key))!r}, must be {value}")
        breaker = model.block(svc, "deployment_circuit_breaker")
        if not (breaker and breaker.get("enable") is True):
            problems.append(f"{address}: deployment circuit breaker not enabled")
        task = model.eval(svc.get("task_definition"))
        if not (isinstance(task, Ref) and task.address.startswith("aws_ecs_task_definition.")):
            problems.append(f"{address}: task_definition is not a task definition of this stack")
            continue
        definitions = str(model.resource(task.address).get("container_definitions", ""))
        m = re.fullmatch(r"\$\{jsonencode\(\[local\.(\w+)\]\)\}", definitions)
        if not m:
            problems.append(f"{task.address}: container_definitions is not jsonencode([local.<container>])")
            continue
        container = model.local(m[1])
        check = container.get("healthCheck") or {}
        if check.get("command") != health_command:
            problems.append(f"{task.address}: container health check is {check.get('command')!r}")
    return problems


def check_iam(model: Model, star_resource_actions: Mapping[str, str]) -> Problems:
    """Identity policies: no wildcard in any action; Resource "*" only for the listed actions (AWS offers no
    resource-level permission for them), in statements holding nothing else; other wildcards only as the log-stream
    suffix of a named log group. Policies must be policy documents (so they can be checked).

    Key policies are resource policies attached to the key: Resource "*" there means the key itself, and is the only
    value AWS accepts; they are checked for wildcard actions and unconditioned "*" principals instead. The same holds
    for other resource policies (the EFS file system policy) and trust policies."""
    problems: Problems = []
    identity_docs: set[str] = set()
    for type_ in ("aws_iam_role_policy", "aws_iam_policy"):
        for name, body in model.of_type(type_).items():
            try:
                policy = model.eval(body.get("policy"))
            except Unresolved:
                policy = None
            if isinstance(policy, Ref) and policy.expr.startswith("data.aws_iam_policy_document."):
                identity_docs.add(policy.expr.split(".")[2])
            else:
                problems.append(f"{type_}.{name}: policy is not a data.aws_iam_policy_document (cannot be checked)")
    for type_ in ("aws_iam_role_policy_attachment", "aws_iam_policy_attachment"):
        for name in model.of_type(type_):
            problems.append(f"{type_}.{name}: managed policies are not least privilege (use a policy document)")
    key_docs = _doc_refs(model, "aws_kms_key", "policy")
    for doc in model.data.get("aws_iam_policy_document", {}):
        for st in statements(model, doc):
            where = f"data.aws_iam_policy_document.{doc} statement {st.sid}"
            if "not_actions" in st.raw or "not_resources" in st.raw:
                problems.append(f"{where}: not_actions/not_resources are wildcards in disguise")
            for action in st.actions:
                if "*" in action:
                    problems.append(f"{where}: wildcard action {action!r}")
            for principal in st.principals:
                ids = model.eval(principal.get("identifiers", []))
                if "*" in ids and not st.conditions:
                    problems.append(f"{where}: principal '*' without a condition")
            if doc in key_docs:
                if st.resources != ["*"]:
                    problems.append(f"{where}: a key policy's resource must be '*' (the key itself)")
                continue
            if doc not in identity_docs:
                continue
            for resource in st.resources:
                text = str(resource)
                if resource == "*":
                    not_allowed = [a for a in st.actions if a not in star_resource_actions]
                    if not_allowed:
                        problems.append(f"{where}: Resource '*' for {not_allowed} (they support resource ARNs)")
                elif "*" in text and not re.fullmatch(r"<aws_cloudwatch_log_group\.\w+\.arn>:\*", text):
                    problems.append(f"{where}: wildcard resource {text!r}")
    return problems


def check_log_groups(model: Model) -> Problems:
    problems: Problems = []
    groups = model.of_type("aws_cloudwatch_log_group")
    if not groups:
        return ["no aws_cloudwatch_log_group"]
    for name, body in groups.items():
        retention = model.eval(body.get("retention_in_days"))
        if not (isinstance(retention, int) and retention > 0):
            problems.append(f"aws_cloudwatch_log_group.{name}: no retention ({retention!r})")
        if not isinstance(model.eval(body.get("kms_key_id")), Ref):
            problems.append(f"aws_cloudwatch_log_group.{name}: not encrypted with the stack's key")
    return problems


@dataclass(frozen=True)
class Alarm:
    address: str
    namespace: str
    metric: str
    dimensions: dict[str, Any]
    actions: list[Any]


def alarms(model: Model) -> list[Alarm]:
    """Every metric alarm, with ``for_each`` expanded."""
    out = []
    for name, body in model.of_type("aws_cloudwatch_metric_alarm").items():
        scopes: list[tuple[str, dict[str, Any] | None]] = [(name, None)]
        if "for_each" in body:
            each = model.eval(body["for_each"])
            scopes = [(f"{name}[{k}]", {"key": k, "value": v}) for k, v in each.items()]
        for address, scope in scopes:
            out.append(
                Alarm(
                    address=f"aws_cloudwatch_metric_alarm.{address}",
                    namespace=str(model.eval(body.get("namespace"), scope)),
                    metric=str(model.eval(body.get("metric_name"), scope)),
                    dimensions=model.eval(body.get("dimensions") or {}, scope),
                    actions=list(model.eval(body.get("alarm_actions") or [], scope)),
                )
            )
    return out


def check_alarms(model: Model) -> Problems:
    """An alarm on every DLQ's depth, on the function's errors and on the connector's health; all notify SNS."""
    problems: Problems = []
    found = alarms(model)
    for alarm in found:
        if not any(isinstance(a, Ref) and a.address.startswith("aws_sns_topic.") for a in alarm.actions):
            problems.append(f"{alarm.address}: notifies no SNS topic")

    def has(namespace: str, metric: str, dimension: str, address: str) -> bool:
        return any(
            a.namespace == namespace
            and a.metric == metric
            and isinstance(d := a.dimensions.get(dimension), Ref)
            and d.address == address
            for a in found
        )

    dlqs = {
        target
        for body in model.of_type("aws_sqs_queue").values()
        if "redrive_policy" in body and (target := _redrive(model, body)[0])
    }
    for dlq in sorted(dlqs):
        if not has("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", f"aws_sqs_queue.{dlq}"):
            problems.append(f"no depth alarm on the DLQ aws_sqs_queue.{dlq}")
    for fn in model.of_type("aws_lambda_function"):
        if not has("AWS/Lambda", "Errors", "FunctionName", f"aws_lambda_function.{fn}"):
            problems.append(f"no Errors alarm on aws_lambda_function.{fn}")
    for svc in model.of_type("aws_ecs_service"):
        if not has("ECS/ContainerInsights", "RunningTaskCount", "ServiceName", f"aws_ecs_service.{svc}"):
            problems.append(f"no health (RunningTaskCount) alarm on aws_ecs_service.{svc}")
    return problems


def check_variables(model: Model, constrained: set[str]) -> Problems:
    problems: Problems = []
    for name, body in model.variables.items():
        if not str(body.get("description", "")).strip():
            problems.append(f"var.{name}: no description")
        if "type" not in body:
            problems.append(f"var.{name}: no type")
        if name in constrained and not body.get("validation"):
            problems.append(f"var.{name}: constrained values but no validation block")
    missing = constrained - set(model.variables)
    if missing:
        problems.append(f"variables expected but not declared: {sorted(missing)}")
    return problems


def check_env(component: str, read: set[str], set_: set[str], defaults: Mapping[str, str]) -> Problems:
    """Every variable the code reads is set, or deliberately left at its default (with a reason); the reasoned list
    holds nothing stale."""
    problems: Problems = []
    for name in sorted(read - set_ - set(defaults)):
        problems.append(f"{component}: reads {name}, which Terraform neither sets nor lists as a deliberate default")
    for name in sorted(set(defaults) & set_):
        problems.append(f"{component}: {name} is set but also listed as left at its default")
    for name in sorted(set(defaults) - read):
        problems.append(f"{component}: {name} is listed as a default but the code does not read it")
    for name, reason in defaults.items():
        if len(reason.strip()) < 15:
            problems.append(f"{component}: {name} left at its default without a reason")
    return problems


def plausible(model: Model, value: Any) -> str:
    """A realistic value for a Terraform reference, so the code's own config loaders can validate the environment."""
    if not isinstance(value, Ref):
        return _as_text(value)
    account, region = "123456789012", "eu-central-1"
    if value.expr.startswith("data.aws_region."):
        return region
    body = model.resource(value.address)
    name = model.eval(body.get("name", value.address.split(".")[-1]))
    service = value.address.split(".")[0].removeprefix("aws_").split("_")[0]
    if value.attribute in ("name", "function_name"):
        return str(name)
    if value.attribute in ("url", "id") and value.address.startswith("aws_sqs_queue."):
        return f"https://sqs.{region}.amazonaws.com/{account}/{name}"
    if value.attribute == "arn":
        return f"arn:aws:{service}:{region}:{account}:{name}"
    raise Unresolved(f"no plausible value for {value}")


class RecordingEnv(Mapping[str, str]):
    """An environment that remembers every name the code looks up (``get``, ``[]`` and ``in``)."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return self._values[key]

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def checkov_waivers(directory: Path = TERRAFORM_DIR) -> list[tuple[str, str, str]]:
    """``(file, check id, reason)`` of every ``#checkov:skip=`` comment."""
    out = []
    for path in sorted(directory.glob("*.tf")):
        for m in re.finditer(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?", path.read_text()):
            out.append((path.name, m[1], (m[2] or "").strip()))
    return out
