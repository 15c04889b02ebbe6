"""Structural tests of infra/terraform (offline: python-hcl2, no provider). DESIGN section 10.

The expected values come from the code, never from a hand-written copy: tables, queues, keys, TTL attribute,
maxReceiveCount and the function timeout from ``connector.resources``; the environment variables from the connector's
``Config`` fields and from what ``InboundConfig.from_env`` actually looks up.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

import hcl2
import pytest

from connector import resources
from connector.config import Config, load_config
from functions.events.config import EventsConfig
from functions.inbound.config import InboundConfig
from functions.late.config import LateConfig
from functions.late.pending import KEY_PREFIX as LATE_KEY_PREFIX
from tests.infra.tfmodel import (
    TERRAFORM_DIR,
    Model,
    RecordingEnv,
    Ref,
    TableExpectation,
    check_alarms,
    check_connector_service,
    check_env,
    check_iam,
    check_inbound_function,
    check_log_groups,
    check_queues,
    check_tables,
    check_variables,
    checkov_waivers,
    normalize,
    plausible,
    statements,
)

# What a user sets: infra/terraform/terraform.tfvars.example (checked below to cover every variable without a default).
EXAMPLE_TFVARS = TERRAFORM_DIR / "terraform.tfvars.example"


def example_vars() -> dict[str, Any]:
    return dict(normalize(hcl2.load(EXAMPLE_TFVARS.open())))


HEALTH_CHECK = ["CMD", "python", "-m", "connector.healthcheck"]

# The only actions allowed on Resource "*": AWS has no resource-level permissions for them.
STAR_RESOURCE_ACTIONS = {
    "ssmmessages:CreateControlChannel": "ECS Exec (admin API via SSM port forwarding); no resource-level permission",
    "ssmmessages:CreateDataChannel": "ECS Exec; no resource-level permission",
    "ssmmessages:OpenControlChannel": "ECS Exec; no resource-level permission",
    "ssmmessages:OpenDataChannel": "ECS Exec; no resource-level permission",
    "ecr:GetAuthorizationToken": "registry login to pull the connector image; AWS supports only Resource '*' for it",
}

# Variables whose values are constrained (AWS limits or the code's own); each needs a validation block.
CONSTRAINED_VARIABLES = {
    "name_prefix",
    "aws_region",
    "connector_image_tag",
    "connector_architecture",
    "inbound_package_path",
    "vpc_id",
    "subnet_ids",
    "chatbot_url",
    "wa_websocket_url",
    "events_url",
    "dedup_ttl_s",
    "session_start_interval_s",
    "log_level",
    "inbound_batch_size",
    "inbound_max_concurrency",
    "connector_cpu",
    "connector_memory",
    "log_retention_days",
    "alarm_email",
}

# Names the connector's Config reads that Terraform deliberately leaves unset, and why.
CONNECTOR_DEFAULTS = {
    "CONNECTOR_HOST": "127.0.0.1 on purpose: the admin API is reached through SSM port forwarding inside the task, "
    "never on the task's network interface",
    "CHATBOT_URL": "not used by the connector: the inbound function calls the chatbot (set on the Lambda)",
    "CHATBOT_SECRET": "not used by the connector: the inbound function signs requests (secret ARN on the Lambda)",
    "AWS_ENDPOINT_URL": "real AWS: no endpoint override (only for LocalStack/moto)",
    "BRIDGE_SCRIPT": "set by the image (ENV in infra/connector/Dockerfile): where its build put the bridge",
    "NODE_BINARY": "set by the image (ENV in infra/connector/Dockerfile): the node binary it ships",
    "CONNECTOR_ID": "the default (host, pid, random) is unique per task, so every task is a distinct lease owner",
    "SESSION_START_JITTER_S": "session tuning: the code's default (README Configuration) suits one connector",
    "RECONNECT_INITIAL_S": "session tuning: the code's default (README Configuration) suits one connector",
    "RECONNECT_MAX_S": "session tuning: the code's default (README Configuration) suits one connector",
    "FLAP_MAX": "session tuning: the code's default (README Configuration) suits one connector",
    "FLAP_WINDOW_S": "session tuning: the code's default (README Configuration) suits one connector",
    "FLAP_HOLD_S": "session tuning: the code's default (README Configuration) suits one connector",
    "STALE_AFTER_S": "session tuning: the code's default (README Configuration) suits one connector",
    "STALE_MESSAGES_AFTER_S": "session tuning: off by default; an account that is often quiet would alarm falsely",
    "BRIDGE_MAX_CRASHES": "the default exits after 5 bridge crashes in a row; ECS then replaces the task",
    "LEASE_TTL_S": "lease timing: the defaults (30 s / 10 s) bound a takeover after a task replacement",
    "LEASE_RENEW_S": "lease timing: the defaults (30 s / 10 s) bound a takeover after a task replacement",
    "SPOOL_MAX_BYTES": "EFS grows as needed, so the code's default (1 GiB) is what bounds the spool",
    "SPOOL_AFTER_S": "publisher tuning: the code's default (2 s) before a slow SQS call's envelopes are spooled",
    "OUTBOUND_MAX_HELD": "outbound tuning: the code's default (README Configuration) suits one connector",
}

# Names InboundConfig.from_env reads that Terraform deliberately leaves unset, and why.
INBOUND_DEFAULTS = {
    "CHATBOT_SECRET": "never the value in an environment variable: CHATBOT_SECRET_ARN is set instead (exactly one)",
    "FORWARD_GROUPS": "off by default (group messages are not sent to the bot): a product decision",
    "CHATBOT_RETRY_BASE_S": "the code's backoff default",
    "CHATBOT_RETRY_MAX_S": "the code's backoff default",
    "RETRY_BASE_S": "the code's first delay of a failed record (30 s, doubled per receive); tests shorten it",
    "RETRY_MAX_S": "the code's cap of that delay (15 min)",
}


@pytest.fixture(scope="module")
def model() -> Model:
    m = Model.from_dir()
    m.var_values.update(example_vars())
    return m


def assert_ok(problems: list[str]) -> None:
    assert not problems, "\n".join(problems)


# ---- one source of truth for names ----


def test_resources_json_is_generated_from_resources_py() -> None:
    committed = (TERRAFORM_DIR / "resources.json").read_text()
    assert committed == resources.terraform_resources_json(), (
        "infra/terraform/resources.json is stale: run `python -m connector.resources --write-terraform`"
    )


def test_terraform_reads_resources_json(model: Model) -> None:
    assert model.local("resources") == resources.terraform_resources()
    # Names, keys and env names come from it: no table, queue or env name is a literal in the .tf files.
    # (Comments may name them.)
    text = re.sub(r"#.*", "", "\n".join(p.read_text() for p in TERRAFORM_DIR.glob("*.tf")))
    for spec in resources.TABLES:
        assert spec.default_name not in text, f"{spec.default_name} written as a literal"
    for queue in resources.QUEUES:
        for literal in (queue.name, queue.dlq_name, queue.env, queue.dlq_env):
            assert literal not in text, f"{literal} written as a literal"


def test_names_at_the_default_prefix_are_the_local_stacks(model: Model) -> None:
    """create_tables/create_queues (the local stack) and Terraform create the same tables and queues."""

    class FakeDynamoDB:
        def __init__(self) -> None:
            self.created: dict[str, dict[str, Any]] = {}
            self.ttl: dict[str, str] = {}

        def list_tables(self) -> dict[str, Any]:
            return {"TableNames": []}

        def create_table(self, **kw: Any) -> None:
            self.created[kw["TableName"]] = kw

        def get_waiter(self, _: str) -> Any:
            return type("W", (), {"wait": lambda *a, **k: None})()

        def update_time_to_live(self, TableName: str, TimeToLiveSpecification: dict[str, Any]) -> None:
            self.ttl[TableName] = TimeToLiveSpecification["AttributeName"]

    class FakeSQS:
        def __init__(self) -> None:
            self.created: dict[str, dict[str, str]] = {}

        def create_queue(self, QueueName: str, Attributes: dict[str, str]) -> dict[str, str]:
            self.created[QueueName] = Attributes
            return {"QueueUrl": f"http://sqs/{QueueName}"}

        def get_queue_attributes(self, QueueUrl: str, **_: Any) -> dict[str, Any]:
            return {"Attributes": {"QueueArn": "arn:" + QueueUrl.rsplit("/", 1)[1]}}

    ddb, sqs = FakeDynamoDB(), FakeSQS()
    resources.create_tables(ddb)
    resources.create_queues(sqs)

    tables = {model.eval(b["name"]): b for b in model.of_type("aws_dynamodb_table").values()}
    assert set(tables) == set(ddb.created)
    for name, local in ddb.created.items():
        keys = {k["KeyType"]: k["AttributeName"] for k in local["KeySchema"]}
        assert model.eval(tables[name]["hash_key"]) == keys["HASH"]
        assert model.eval(tables[name].get("range_key")) == keys.get("RANGE")
        ttl = Model.block(tables[name], "ttl")
        assert (model.eval(ttl["attribute_name"]) if ttl else None) == ddb.ttl.get(name)

    queues = {model.eval(b["name"]): b for b in model.of_type("aws_sqs_queue").values()}
    assert set(queues) == set(sqs.created)
    for name, attrs in sqs.created.items():
        assert attrs["FifoQueue"] == "true" and queues[name]["fifo_queue"] is True
        assert queues[name]["content_based_deduplication"] is (attrs["ContentBasedDeduplication"] == "true")
        if "VisibilityTimeout" in attrs:
            assert model.eval(queues[name]["visibility_timeout_seconds"]) == int(attrs["VisibilityTimeout"])
            redrive = json.loads(attrs["RedrivePolicy"])
            target = str(queues[name]["redrive_policy"])
            dlq_name = redrive["deadLetterTargetArn"].removeprefix("arn:")
            dlq_resource = next(
                r for r, b in model.of_type("aws_sqs_queue").items() if model.eval(b["name"]) == dlq_name
            )
            assert f"aws_sqs_queue.{dlq_resource}.arn" in target


# ---- the structural points of the deployment ----


def test_queues_are_fifo_with_fifo_dlqs_and_redrive(model: Model) -> None:
    counts = {q.env.removesuffix("_QUEUE_URL").lower(): q.max_receive_count for q in resources.QUEUES}
    assert_ok(check_queues(model, counts))


def test_tables_match_the_code(model: Model) -> None:
    expected = [
        TableExpectation(
            resource_name=spec.env.removesuffix("_TABLE").lower(),
            name=spec.default_name,
            hash_key=spec.hash_key,
            range_key=spec.range_key,
            ttl_attribute=spec.ttl_attribute,
        )
        for spec in resources.TABLES
    ]
    assert_ok(check_tables(model, expected))
    idempotency = model.of_type("aws_dynamodb_table")["idempotency"]
    ttl = Model.block(idempotency, "ttl")
    assert ttl is not None
    assert model.eval(ttl["attribute_name"]) == resources.IDEMPOTENCY_TABLE.ttl_attribute == "expiration"


def test_inbound_function_and_its_event_source_mapping(model: Model) -> None:
    timeouts = {"inbound": resources.INBOUND_FUNCTION_TIMEOUT_S, "events": resources.EVENTS_FUNCTION_TIMEOUT_S}
    assert_ok(check_inbound_function(model, timeouts))
    inbound = model.of_type("aws_sqs_queue")["inbound"]
    assert model.eval(inbound["visibility_timeout_seconds"]) >= 6 * resources.INBOUND_FUNCTION_TIMEOUT_S
    # Terraform itself refuses a plan that breaks the rule (for whoever edits the .tf files without running the tests).
    esm = model.of_type("aws_lambda_event_source_mapping")["inbound"]
    conditions = [pre["condition"] for life in esm["lifecycle"] for pre in life["precondition"]]
    assert (
        "${aws_sqs_queue.inbound.visibility_timeout_seconds >= 6 * aws_lambda_function.inbound.timeout}" in conditions
    )
    # The function logs to the log group that has the retention and the key.
    fn = model.of_type("aws_lambda_function")["inbound"]
    logging = Model.block(fn, "logging_config")
    assert logging is not None and model.eval(logging["log_group"]) == Ref("aws_cloudwatch_log_group.inbound.name")


def test_a_whole_chatbot_call_and_the_reserve_fit_in_the_function_timeout(model: Model) -> None:
    # Terraform refuses a plan whose chatbot_timeout_s would not fit (the function would cut its calls short) ...
    fn = model.of_type("aws_lambda_function")["inbound"]
    conditions = [pre["condition"] for life in fn["lifecycle"] for pre in life["precondition"]]
    assert "${var.chatbot_timeout_s + local.inbound_reserve_s + 1 <= local.inbound_function_timeout}" in conditions
    # ... the numbers it compares are the code's ...
    assert model.local("inbound_reserve_s") == resources.INBOUND_RESERVE_S
    assert model.local("inbound_function_timeout") == resources.INBOUND_FUNCTION_TIMEOUT_S, "the default is the code's"
    # ... and the defaults pass it, with the function's own default agreeing with Terraform's.
    assert model.var("chatbot_timeout_s") + resources.INBOUND_RESERVE_S + 1 <= resources.INBOUND_FUNCTION_TIMEOUT_S
    assert model.var("chatbot_timeout_s") == InboundConfig.chatbot_timeout_s
    assert model.var("chatbot_outage_budget_s") == InboundConfig.outage_budget_s
    assert model.var("max_message_age_s") == InboundConfig.max_message_age_s


def test_connector_service_runs_one_task_at_a_time_with_a_health_check(model: Model) -> None:
    assert_ok(check_connector_service(model, HEALTH_CHECK))


def test_spool_is_on_encrypted_efs_through_the_access_point(model: Model) -> None:
    container = model.local("connector_container_definition")
    spool_dir = model.local("spool_dir")
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert env["SPOOL_DIR"] == spool_dir
    mounts = {m["containerPath"]: m["sourceVolume"] for m in container["mountPoints"]}
    assert mounts[spool_dir] == "spool"
    task = model.of_type("aws_ecs_task_definition")["connector"]
    volume = next(v for v in task["volume"] if v["name"] == "spool")
    efs = Model.block(volume, "efs_volume_configuration")
    assert efs is not None and efs["transit_encryption"] == "ENABLED"
    auth = Model.block(efs, "authorization_config")
    assert auth is not None and auth["iam"] == "ENABLED"
    assert model.eval(auth["access_point_id"]) == Ref("aws_efs_access_point.spool.id")
    fs = model.of_type("aws_efs_file_system")["spool"]
    assert fs["encrypted"] is True and model.eval(fs["kms_key_id"]) == Ref("aws_kms_key.this.arn")


def test_iam_has_no_wildcards_beyond_the_reasoned_exceptions(model: Model) -> None:
    assert_ok(check_iam(model, STAR_RESOURCE_ACTIONS))
    # Each exception is used, alone in its statement, and the ECS Exec one only while enable_execute_command is on.
    star_statements = [
        st for doc in model.data["aws_iam_policy_document"] for st in statements(model, doc) if st.resources == ["*"]
    ]
    identity = [st for st in star_statements if st.document != "kms"]
    assert {a for st in identity for a in st.actions} == set(STAR_RESOURCE_ACTIONS)
    exec_doc = model.data["aws_iam_policy_document"]["connector_task"]
    dynamic = [d["statement"] for d in exec_doc.get("dynamic", []) if "statement" in d]
    gated = [d for d in dynamic if "ssmmessages:OpenDataChannel" in model.eval(d["content"][0]["actions"])]
    assert gated and gated[0]["for_each"] == "${var.enable_execute_command ? [1] : []}"


def test_one_role_per_component(model: Model) -> None:
    roles = set(model.of_type("aws_iam_role"))
    assert roles == {"inbound", "late", "events", "connector_execution", "connector_task"}
    attached = {model.eval(b["role"]).address for b in model.of_type("aws_iam_role_policy").values()}
    assert attached == {f"aws_iam_role.{r}" for r in roles}


def test_log_groups_have_retention_and_the_key(model: Model) -> None:
    assert_ok(check_log_groups(model))


def test_alarms_on_dlqs_function_errors_and_connector_health(model: Model) -> None:
    assert_ok(check_alarms(model))
    topic = model.of_type("aws_sns_topic")["alarms"]
    assert model.eval(topic["name"]) == "wa-relay-alarms"


def test_variables_have_descriptions_types_and_validations(model: Model) -> None:
    assert_ok(check_variables(model, CONSTRAINED_VARIABLES))
    assert model.var("name_prefix") == resources.DEFAULT_NAME_PREFIX


def test_example_tfvars_sets_every_required_variable(model: Model) -> None:
    example = example_vars()
    required = {name for name, body in model.variables.items() if "default" not in body}
    assert required <= set(example), f"terraform.tfvars.example lacks {sorted(required - set(example))}"
    assert set(example) <= set(model.variables), f"undeclared: {sorted(set(example) - set(model.variables))}"


def test_outputs_the_readme_uses(model: Model) -> None:
    expected = {
        "ecr_repository_url",
        "ecs_cluster_name",
        "ecs_service_name",
        "connector_log_group",
        "inbound_function_name",
        "inbound_log_group",
        "late_answer_url",
        "late_function_name",
        "late_log_group",
        "inbound_queue_url",
        "inbound_dlq_url",
        "outbound_queue_url",
        "outbound_dlq_url",
        "events_queue_url",
        "events_dlq_url",
        "events_function_name",
        "auth_table",
        "lid_map_table",
        "idempotency_table",
        "connector_api_key_secret_arn",
        "chatbot_secret_arn",
        "alarm_topic_arn",
        "kms_key_arn",
    }
    assert expected <= set(model.outputs)
    for name, body in model.outputs.items():
        assert str(body.get("description", "")).strip(), f"output {name} has no description"


def test_every_checkov_waiver_has_a_reason() -> None:
    waivers = checkov_waivers()
    assert waivers, "expected the reasoned waivers (see infra/terraform)"
    for file, check, reason in waivers:
        assert len(reason) >= 30, f"{file}: checkov:skip={check} needs a written reason"


# ---- environment: every variable the code reads is set (or deliberately defaulted) ----


def connector_environment(model: Model) -> dict[str, str]:
    container = model.local("connector_container_definition")
    env = {e["name"]: plausible(model, e["value"]) for e in container["environment"]}
    for secret in container["secrets"]:
        assert isinstance(model.eval(secret["valueFrom"]), Ref)
        env[secret["name"]] = secrets.token_hex(24)
    return env


def test_connector_environment_covers_what_config_reads(model: Model) -> None:
    env = connector_environment(model)
    read = {
        str(f.validation_alias.choices[0])  # type: ignore[union-attr]
        for f in Config.model_fields.values()
    }
    assert_ok(check_env("connector", read, set(env), CONNECTOR_DEFAULTS))
    # The values pass the connector's own validation, and point at real AWS.
    cfg = load_config(env)
    assert cfg.store_backend == "dynamodb" and cfg.aws_endpoint_url is None
    tables = (cfg.auth_table, cfg.lid_map_table, cfg.idempotency_table, cfg.settings_table)
    assert tables == tuple(s.default_name for s in resources.TABLES)
    assert cfg.port == model.local("connector_port")
    assert "CONNECTOR_API_KEY" not in {e["name"] for e in model.local("connector_container_definition")["environment"]}


def test_image_provides_what_terraform_leaves_to_it() -> None:
    """The defaults the reasons above attribute to the image really are set there."""
    dockerfile = TERRAFORM_DIR.parent / "connector" / "Dockerfile"
    text = dockerfile.read_text()
    for name, reason in CONNECTOR_DEFAULTS.items():
        if "set by the image" in reason:
            assert re.search(rf"^\s*(ENV\s+)?{name}=\S+", text, re.MULTILINE), f"{dockerfile} does not set {name}"


def function_environment(model: Model, name: str, from_env: Any) -> tuple[Any, RecordingEnv, dict[str, Any]]:
    """The function's Terraform environment read by its config class as at cold start: ``(config, the environment
    recording what was read, the variables)``, the secret fetched from Secrets Manager exactly once."""
    fn = model.of_type("aws_lambda_function")[name]
    environment = Model.block(fn, "environment")
    assert environment is not None
    variables = model.eval(environment["variables"])
    env = RecordingEnv({k: plausible(model, v) for k, v in variables.items()})
    fetched: list[str] = []

    def fetch_secret(arn: str) -> str:
        fetched.append(arn)
        return "s" * 48

    config = from_env(env, fetch_secret=fetch_secret)
    assert fetched == [env["CHATBOT_SECRET_ARN"]], "the secret must come from Secrets Manager"
    return config, env, variables


def test_inbound_environment_covers_what_the_function_reads(model: Model) -> None:
    config, env, variables = function_environment(model, "inbound", InboundConfig.from_env)
    assert "CHATBOT_SECRET" not in variables
    assert_ok(check_env("inbound function", env.read, set(variables), INBOUND_DEFAULTS))
    assert config.idempotency_table == resources.IDEMPOTENCY_TABLE.default_name
    assert config.lid_map_table == resources.LID_MAP_TABLE.default_name


@pytest.mark.parametrize("exec_enabled", [True, False])
def test_root_file_system_is_read_only_unless_ecs_exec_needs_it(exec_enabled: bool) -> None:
    m = Model.from_dir()
    m.var_values.update(example_vars(), enable_execute_command=exec_enabled)
    container = m.local("connector_container_definition")
    # ECS Exec's SSM agent cannot run on a read-only root (aws/containers-roadmap#1359).
    assert container["readonlyRootFilesystem"] is (not exec_enabled)
    assert m.eval(m.of_type("aws_ecs_service")["connector"]["enable_execute_command"]) is exec_enabled
    exec_statements = [st for st in statements(m, "connector_task") if "ssmmessages:OpenDataChannel" in st.actions]
    assert len(exec_statements) == (1 if exec_enabled else 0)
    assert_ok(check_iam(m, STAR_RESOURCE_ACTIONS))


# ---- the late-answer function ----


def test_late_function_is_a_function_url_authenticated_by_the_hmac(model: Model) -> None:
    fn = model.of_type("aws_lambda_function")["late"]
    assert model.eval(fn["handler"]) == "functions.late.handler.lambda_handler"
    inbound = model.of_type("aws_lambda_function")["inbound"]
    assert model.eval(fn["filename"]) == model.eval(inbound["filename"]), "one zip holds both handlers"
    logging = Model.block(fn, "logging_config")
    assert logging is not None and model.eval(logging["log_group"]) == Ref("aws_cloudwatch_log_group.late.name")
    url = model.of_type("aws_lambda_function_url")["late"]
    assert url["authorization_type"] == "NONE"
    waived = {check for file, check, _ in checkov_waivers() if file.endswith("lambda.tf")}
    assert "CKV_AWS_258" in waived, "authorization NONE needs its written reason (the HMAC is the auth)"
    actions = {model.eval(p["action"]) for p in model.of_type("aws_lambda_permission").values()}
    assert actions == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}


def test_late_function_reaches_only_its_own_items_the_outbound_queue_and_the_secret(model: Model) -> None:
    found = {st.sid: st for st in statements(model, "late")}
    dynamo = [st for st in found.values() if any(a.startswith("dynamodb:") for a in st.actions)]
    assert [sorted(st.actions) for st in dynamo] == [["dynamodb:GetItem", "dynamodb:UpdateItem"]]
    assert dynamo[0].resources == [Ref("aws_dynamodb_table.idempotency.arn")]
    [condition] = dynamo[0].conditions
    assert model.eval(condition["variable"]) == "dynamodb:LeadingKeys"
    assert model.eval(condition["values"]) == [f"{LATE_KEY_PREFIX}#*"]
    sqs = [st for st in found.values() if any(a.startswith("sqs:") for a in st.actions)]
    assert [(st.actions, st.resources) for st in sqs] == [(["sqs:SendMessage"], [Ref("aws_sqs_queue.outbound.arn")])]


def test_late_environment_covers_what_the_function_reads(model: Model) -> None:
    config, env, variables = function_environment(model, "late", LateConfig.from_env)
    defaults = {"CHATBOT_SECRET": "never the value in an environment variable: CHATBOT_SECRET_ARN is set instead"}
    assert_ok(check_env("late function", env.read, set(variables), defaults))
    assert config.idempotency_table == resources.IDEMPOTENCY_TABLE.default_name


# ---- the events function ----

EVENTS_URL = "https://hooks.example/relay"

# Names EventsConfig.from_env reads that Terraform deliberately leaves unset, and why.
EVENTS_DEFAULTS = {
    "CHATBOT_SECRET": "never the value in an environment variable: CHATBOT_SECRET_ARN is set instead (exactly one)",
    "EVENTS_TIMEOUT_S": "the code's 5 s per POST, which the function timeout (connector/resources.py) is sized for",
}


def events_model(events_url: str) -> Model:
    m = Model.from_dir()
    m.var_values.update(example_vars(), events_url=events_url)
    return m


def counted(model: Model, address: str) -> bool:
    """Whether ``count = local.events_enabled ? 1 : 0`` creates the resource with the model's variables."""
    type_, name = address.split(".")
    return model.eval(model.of_type(type_)[name]["count"].replace(" ? 1 : 0", "")) is True


@pytest.mark.parametrize("events_url", ["", EVENTS_URL])
def test_the_events_function_exists_only_with_an_events_url(events_url: str) -> None:
    m = events_model(events_url)
    enabled = events_url != ""
    for address in (
        "aws_lambda_function.events",
        "aws_lambda_event_source_mapping.events",
        "aws_cloudwatch_metric_alarm.events_errors",
    ):
        assert m.of_type(address.split(".")[0])[address.split(".")[1]]["count"] == "${local.events_enabled ? 1 : 0}"
        assert counted(m, address) is enabled, address
    # The connector publishes only when something consumes the queue, and may send to it only then.
    env = {e["name"]: e["value"] for e in m.local("connector_container_definition")["environment"]}
    assert (env[resources.EVENTS_QUEUE.env] == Ref("aws_sqs_queue.events.url")) is enabled
    assert load_config(connector_environment(m)).events_queue_url == (
        plausible(m, Ref("aws_sqs_queue.events.url")) if enabled else None
    )
    publish = [st for st in statements(m, "connector_task") if st.sid == "PublishEvents"]
    assert [(st.actions, st.resources) for st in publish] == (
        [(["sqs:SendMessage"], [Ref("aws_sqs_queue.events.arn")])] if enabled else []
    )


def test_events_environment_covers_what_the_function_reads() -> None:
    m = events_model(EVENTS_URL)
    config, env, variables = function_environment(m, "events", EventsConfig.from_env)
    assert "CHATBOT_SECRET" not in variables
    assert_ok(check_env("events function", env.read, set(variables), EVENTS_DEFAULTS))
    assert config.events_url == EVENTS_URL
    assert config.queue_url and config.queue_url.endswith(resources.EVENTS_QUEUE.name)
    assert config.dlq_url.endswith(resources.EVENTS_QUEUE.dlq_name)
    fn = m.of_type("aws_lambda_function")["events"]
    assert m.eval(fn["handler"]) == "functions.events.handler.lambda_handler"
    assert m.eval(fn["filename"]) == m.eval(m.of_type("aws_lambda_function")["inbound"]["filename"])
    # A whole batch of one session (10 POSTs of the default timeout) is bounded by the function's timeout and the
    # queue's visibility by six times that.
    assert m.eval(fn["timeout"]) == resources.EVENTS_FUNCTION_TIMEOUT_S
    assert resources.EVENTS_QUEUE.visibility_timeout_s >= 6 * resources.EVENTS_FUNCTION_TIMEOUT_S


def test_events_function_reaches_only_its_queues_the_secret_and_its_logs(model: Model) -> None:
    found = list(statements(model, "events"))
    sqs = sorted((sorted(st.actions), st.resources) for st in found if any(a.startswith("sqs:") for a in st.actions))
    assert sqs == [
        (
            ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"],
            [Ref("aws_sqs_queue.events.arn")],
        ),
        (["sqs:SendMessage"], [Ref("aws_sqs_queue.events_dlq.arn")]),
    ]
    assert not [st for st in found if any(a.startswith("dynamodb:") for a in st.actions)], "no table at all"
    [secret] = [st for st in found if "secretsmanager:GetSecretValue" in st.actions]
    assert secret.resources == [Ref("aws_secretsmanager_secret.chatbot_secret.arn")]
    [logs] = [st for st in found if "logs:PutLogEvents" in st.actions]
    assert [str(r) for r in logs.resources] == ["<aws_cloudwatch_log_group.events.arn>:*"]
