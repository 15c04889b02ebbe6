"""Build the Lambda functions' zip for the Lambda platform (CPython 3.11 on arm64), not for this machine.

One zip holds every function, each with its own handler: the inbound function (``functions.inbound.handler``), the
late-answer function (``functions.late.handler``) and the events function (``functions.events.handler``). They
share every dependency and most of their code (the late one queues replies with the inbound one's ``ReplyQueue``,
the events one signs like its chatbot client), so more zips would multiply the build and the upload for a few
kilobytes of difference, and one artifact cannot drift from the other.

Run by ``make package`` through ``infra/package.sh``. What goes in:

- the third-party code: the dependencies of the project (``pydantic``) and of its ``functions`` extra, read from
  ``pyproject.toml`` and pinned by ``constraints.txt``, installed by pip as manylinux2014 aarch64 CPython 3.11 wheels
  (``--only-binary=:all:``: nothing is compiled here, so nothing of this machine leaks in; ``--arch x86_64`` builds
  for x86_64 Lambda instead). manylinux2014 (glibc 2.17)
  and not a newer tag, because the python3.11 runtime runs on Amazon Linux 2 (glibc 2.26);
- the first-party code: exactly the modules the handlers import, transitively (found by reading the import
  statements, not by importing: a handler reads its config from the environment at import), plus their packages'
  ``__init__.py``. That is ``functions/{inbound,late,events}/*`` and ``connector/{__init__,contracts,resources}.py``;
  never the rest of ``connector/`` (aiohttp, aioboto3);

and what stays out: ``__pycache__``/``.pyc`` (pip runs with ``--no-compile``; Lambda compiles in memory), pip's
``bin/`` scripts (their shebangs name this machine's Python), tests. The build fails if a connector-only dependency
(in the ``connector`` extra but not in ``functions``) or a distribution that ``constraints.txt`` does not pin ends up
in the bundle: the first would bloat and break the Lambda/connector split, the second would make builds drift.

The zip is reproducible: entries sorted, every timestamp 1980-01-01, fixed permissions and creator system, fixed
compression level. The same inputs give the same bytes, so Terraform's ``source_code_hash`` only changes when the
code or a pinned version does. (pip evaluates platform markers such as ``platform_machine`` against this machine, a
known pip limitation; none of the bundle's dependencies has one.)
"""

from __future__ import annotations

import argparse
import ast
import base64
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "dist" / "lambda" / "inbound.zip"
ENTRY_MODULE = "functions.inbound.handler"
HANDLER = f"{ENTRY_MODULE}.lambda_handler"
LATE_ENTRY_MODULE = "functions.late.handler"
LATE_HANDLER = f"{LATE_ENTRY_MODULE}.lambda_handler"
EVENTS_ENTRY_MODULE = "functions.events.handler"
EVENTS_HANDLER = f"{EVENTS_ENTRY_MODULE}.lambda_handler"
FIRST_PARTY = ("connector", "functions")
PLATFORMS = {"arm64": "manylinux2014_aarch64", "x86_64": "manylinux2014_x86_64"}
"""Lambda architecture → pip platform. infra/terraform deploys arm64; x86_64 is for emulators on x86 hosts that run
functions natively (README, LocalStack)."""
PYTHON_VERSION = "3.11"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold
EXCLUDED_DIRS = {"__pycache__", "bin"}


class PackageError(Exception):
    pass


def canonical(name: str) -> str:
    """PEP 503 normalized distribution name (``aws_lambda_powertools`` == ``aws-lambda-powertools``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise PackageError(f"cannot read the requirement {requirement!r} in pyproject.toml")
    return canonical(match.group(1))


def requirements(pyproject: Path) -> tuple[list[str], set[str]]:
    """(what the function needs: core + ``functions`` extra; the names only the connector needs)."""
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project["optional-dependencies"]
    needed = [*project["dependencies"], *extras["functions"]]
    connector_only = {requirement_name(r) for r in extras["connector"]} - {requirement_name(r) for r in needed}
    return needed, connector_only


def pins(constraints: Path) -> dict[str, str]:
    out = {}
    for line in constraints.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            out[canonical(name)] = version.strip()
    return out


# ---- first-party modules --------------------------------------------------------------------------------------------


def module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """Every module name an import statement of ``module`` may load (lazy imports in functions included, imports
    under ``if TYPE_CHECKING:`` not: they never run)."""
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node)
               for n in ast.walk(node)}  # fmt: skip
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            yield base
            # `from pkg import name` loads pkg.name when it is a submodule
            yield from (f"{base}.{alias.name}" for alias in node.names if alias.name != "*")


def first_party_modules(entry: str) -> dict[str, Path]:
    """``{module: file}`` for ``entry`` and every first-party module it imports, transitively, with the packages
    that contain them (importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` first)."""
    found: dict[str, Path] = {}
    todo = [entry]
    while todo:
        module = todo.pop()
        if module in found or module.split(".")[0] not in FIRST_PARTY:
            continue
        path = module_file(module)
        if path is None:
            continue  # `from pkg import name` where name is not a module
        found[module] = path
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        todo.extend(_imports(ast.parse(path.read_text(), str(path)), module, path.name == "__init__.py"))
    if entry not in found:
        raise PackageError(f"{entry} not found under {ROOT}")
    return found


# ---- the build ----------------------------------------------------------------------------------------------------


def pip_install(target: Path, needed: Iterable[str], constraints: Path, platform: str) -> None:
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
        "--platform", platform, "--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp",
        "--target", str(target), "-c", str(constraints), *needed,
    ]  # fmt: skip
    done = subprocess.run(command, check=False)
    if done.returncode != 0:
        raise PackageError(f"pip install for {platform} failed (exit {done.returncode}): {' '.join(command)}")


def installed_distributions(target: Path) -> dict[str, str]:
    out = {}
    for info in target.glob("*.dist-info"):
        name, _, version = info.name.removesuffix(".dist-info").partition("-")
        out[canonical(name)] = version
    return out


def check_distributions(installed: dict[str, str], pinned: dict[str, str], connector_only: set[str]) -> None:
    leaked = sorted(set(installed) & connector_only)
    if leaked:
        raise PackageError(f"connector-only dependencies ended up in the Lambda bundle: {', '.join(leaked)}")
    drift = sorted(f"{name}=={version}" for name, version in installed.items() if pinned.get(name) != version)
    if drift:
        raise PackageError(
            f"not pinned by constraints.txt (regenerate it, see its header): {', '.join(drift)}; "
            "the bundle would change whenever PyPI does"
        )


def bundle_files(site: Path, modules: dict[str, Path]) -> dict[str, Path]:
    """``{name in the zip: file}``: the installed tree (minus caches and scripts) and the first-party modules."""
    files: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(site):
        dirnames[:] = [d for d in dirnames if d not in EXCLUDED_DIRS]
        for filename in filenames:
            if not filename.endswith(".pyc"):
                path = Path(dirpath) / filename
                files[path.relative_to(site).as_posix()] = path
    for path in modules.values():
        arcname = path.relative_to(ROOT).as_posix()
        if arcname in files:
            raise PackageError(f"{arcname} is both first-party code and an installed distribution's file")
        files[arcname] = path
    return files


def write_zip(out: Path, files: dict[str, Path]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for arcname in sorted(files):
            info = zipfile.ZipInfo(arcname, date_time=ZIP_EPOCH)
            info.create_system = 3  # Unix, whatever machine builds it
            info.external_attr = 0o100644 << 16  # a regular, world-readable file: Lambda's runtime user must read it
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(files[arcname], "rb") as source:
                archive.writestr(info, source.read(), compresslevel=9)
    partial.replace(out)  # never leave a half-written zip where Terraform would pick it up


def build(out: Path, arch: str = "arm64", build_dir: Path | None = None) -> dict[str, str]:
    needed, connector_only = requirements(ROOT / "pyproject.toml")
    constraints = ROOT / "constraints.txt"
    modules = {
        **first_party_modules(ENTRY_MODULE),
        **first_party_modules(LATE_ENTRY_MODULE),
        **first_party_modules(EVENTS_ENTRY_MODULE),
    }
    with tempfile.TemporaryDirectory(prefix="wa-relay-lambda-") as tmp:
        # a fresh tree every time: files of an older build must never reach the zip
        site = Path(tmp) / "site" if build_dir is None else build_dir
        if build_dir is not None and build_dir.exists() and any(build_dir.iterdir()):
            raise PackageError(f"--build-dir {build_dir} must be empty")
        pip_install(site, needed, constraints, PLATFORMS[arch])
        check_distributions(installed_distributions(site), pins(constraints), connector_only)
        write_zip(out, bundle_files(site, modules))
    data = out.read_bytes()
    return {
        "path": str(out),
        "size": str(len(data)),
        "sha256": hashlib.sha256(data).hexdigest(),
        "base64sha256": base64.b64encode(hashlib.sha256(data).digest()).decode(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the zip to write (default {DEFAULT_OUT})")
    parser.add_argument("--arch", choices=sorted(PLATFORMS), default="arm64", help="Lambda architecture")
    parser.add_argument("--build-dir", type=Path, help="install the dependencies here and keep them (must be empty)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        result = build(args.out.resolve(), args.arch, args.build_dir)
    except PackageError as e:
        print(f"package: {e}", file=sys.stderr)
        return 1
    size, took = int(result["size"]), time.monotonic() - started
    print(f"Lambda bundle, inbound + late + events ({PLATFORMS[args.arch]}, python{PYTHON_VERSION}) in {took:.1f} s")
    print(f"  path      {result['path']}")
    print(f"  size      {size} bytes ({size / 2**20:.1f} MiB)")
    print(f"  sha256    {result['sha256']}")
    print(f"  base64    {result['base64sha256']}  (Terraform's filebase64sha256 / source_code_hash)")
    print(f"  handler   {HANDLER}  runtime python{PYTHON_VERSION}  architectures [{args.arch}]")
    print(f"  handler   {LATE_HANDLER}  (the late-answer function, same zip)")
    print(f"  handler   {EVENTS_HANDLER}  (the events function, same zip)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
