"""``make package`` (``infra/package.sh``): the inbound Lambda's zip for python3.11 on arm64.

Builds the real artifact twice (pip downloads manylinux aarch64 wheels, so this needs the package index; about 5-10 s
per build with a warm pip cache), then checks what is in it, that it is for aarch64 and not this machine, that it is
byte-for-byte reproducible, and that the handler imports with nothing but the zip's top-level names available.
"""

from __future__ import annotations

import hashlib
import struct
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.functions.test_bundle import import_handler

ROOT = Path(__file__).resolve().parents[2]
HANDLER = "functions.inbound.handler.lambda_handler"
LATE_HANDLER = "functions.late.handler.lambda_handler"
EVENTS_HANDLER = "functions.events.handler.lambda_handler"
PYDANTIC_CORE_SO = "pydantic_core/_pydantic_core.cpython-311-aarch64-linux-gnu.so"
EM_AARCH64 = 183  # ELF e_machine of arm64
CONNECTOR_ONLY_OR_DEV = (
    "aiohttp",
    "aioboto3",
    "aiobotocore",
    "pydantic_settings",
    "segno",
    "moto",
    "pytest",
    "tests",
    "infra",
)


@dataclass(frozen=True)
class Build:
    path: Path
    output: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def _build(out: Path) -> Build:
    done = subprocess.run(
        ["bash", "infra/package.sh", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return Build(out, done.stdout)


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Build, Build]:
    return _build(tmp_path_factory.mktemp("a") / "inbound.zip"), _build(tmp_path_factory.mktemp("b") / "inbound.zip")


@pytest.fixture(scope="module")
def bundle(builds: tuple[Build, Build]) -> zipfile.ZipFile:
    return zipfile.ZipFile(builds[0].path)


def top_level_names(bundle: zipfile.ZipFile) -> set[str]:
    """What ``import x`` can find at the zip's root (dist-info metadata is not importable)."""
    names = set()
    for entry in bundle.namelist():
        first = entry.split("/")[0]
        if first.endswith(".dist-info"):
            continue
        names.add(first.split(".")[0] if "/" not in entry else first)
    return names


def test_two_builds_are_byte_identical(builds: tuple[Build, Build]) -> None:
    first, second = builds
    assert first.sha256 == second.sha256
    assert f"sha256    {first.sha256}" in first.output


def test_output_names_the_artifact_and_the_handler(builds: tuple[Build, Build]) -> None:
    build = builds[0]
    assert str(build.path) in build.output
    assert f"size      {build.path.stat().st_size} bytes" in build.output
    assert HANDLER in build.output
    assert LATE_HANDLER in build.output
    assert EVENTS_HANDLER in build.output


def test_holds_the_handler_and_only_the_connector_modules_it_imports(bundle: zipfile.ZipFile) -> None:
    names = bundle.namelist()
    assert {"functions/inbound/handler.py", "functions/late/handler.py", "functions/events/handler.py"} <= set(names)
    assert {n for n in names if n.startswith("connector/")} == {
        "connector/__init__.py",
        "connector/contracts.py",
        "connector/resources.py",
    }
    for name in (n for n in names if n.startswith(("connector/", "functions/"))):
        assert bundle.read(name) == (ROOT / name).read_bytes(), f"{name} differs from the repo"


def test_holds_the_function_dependencies_and_nothing_of_the_connector_or_the_tests(bundle: zipfile.ZipFile) -> None:
    top = top_level_names(bundle)
    assert {"aws_lambda_powertools", "tenacity", "pydantic", "pydantic_core", "boto3", "botocore"} <= top
    assert not top & set(CONNECTOR_ONLY_OR_DEV), top & set(CONNECTOR_ONLY_OR_DEV)
    assert not [n for n in bundle.namelist() if "__pycache__" in n or n.endswith(".pyc")]
    assert "bin" not in top  # pip's console scripts carry this machine's interpreter path


def test_compiled_code_is_for_linux_aarch64_not_this_machine(bundle: zipfile.ZipFile) -> None:
    shared = [n for n in bundle.namelist() if n.endswith(".so")]
    assert PYDANTIC_CORE_SO in shared
    assert not [n for n in shared if "x86_64" in n]
    for name in shared:
        header = bundle.read(name)[:20]
        assert header[:4] == b"\x7fELF", name
        (machine,) = struct.unpack_from("<H", header, 18)
        assert machine == EM_AARCH64, f"{name} is for ELF machine {machine}"


def test_entries_are_sorted_with_fixed_timestamps_and_modes(bundle: zipfile.ZipFile) -> None:
    infos = bundle.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos} == {0o100644}


def test_handler_imports_with_only_the_bundles_top_level_names(bundle: zipfile.ZipFile) -> None:
    # The zip's .so files are for aarch64 and cannot be imported here; this venv has the same pinned versions for
    # this machine. So import the handler here, but let only the zip's names resolve: any third-party or first-party
    # module the handler needs and the zip lacks fails the import, as it would on Lambda.
    first_party = sorted(
        n.removesuffix("/__init__.py").removesuffix(".py").replace("/", ".")
        for n in bundle.namelist()
        if n.startswith(("connector/", "functions/"))
    )
    import_handler(
        f"""
        import os, sys, sysconfig
        from importlib.abc import MetaPathFinder
        from importlib.machinery import PathFinder

        # sys.stdlib_module_names omits a few (the _sysconfigdata module of this build): ask the stdlib's directories
        STDLIB = [sysconfig.get_path("stdlib"), os.path.join(sysconfig.get_path("stdlib"), "lib-dynload")]
        TOP = {sorted(top_level_names(bundle))!r}
        FIRST_PARTY = {first_party!r}

        class OnlyTheBundle(MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                top = name.partition(".")[0]
                stdlib = top in sys.stdlib_module_names or PathFinder.find_spec(top, STDLIB) is not None
                if stdlib or name in FIRST_PARTY:
                    return None  # let the normal finders load it
                if top in TOP and top not in ("connector", "functions"):
                    return None
                raise ModuleNotFoundError(f"{{name}} is not in the Lambda bundle", name=name)

        sys.meta_path.insert(0, OnlyTheBundle())
        """
    )
