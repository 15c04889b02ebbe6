"""The project's wheel carries what runs in production and nothing else (DESIGN section 2): the packages
``connector`` and ``functions``, never the dev stack (``infra/local``: emulators, event-source runner, demo chatbot).
The connector's image installs the same project (``pip install '.[connector]'``), so the wheel's contents are what can
reach it; tests/infra/test_dockerfile.py checks what its build context holds.

The wheel is built the way ``make deps`` builds the editable install: pip with build isolation, which gets the
pyproject's build backend (setuptools>=68) from the configured package index. ``--no-build-isolation`` does not work
here: the venv's own setuptools is older and has no ``bdist_wheel`` without the ``wheel`` package. It builds from a
copy of the checkout (the files git tracks or would track), because setuptools writes ``build/`` and ``*.egg-info``
into the source tree.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = {"connector", "functions"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    src = tmp_path_factory.mktemp("checkout")
    for name in filter(None, listed.decode().split("\0")):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(src)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [built] = out.glob("wa_relay-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_holds_the_connector_and_the_functions_only(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == SHIPPED
    assert {"connector/__main__.py", "connector/app.py", "functions/inbound/handler.py"} <= set(names)


def test_the_wheel_holds_no_dev_stack(wheel: zipfile.ZipFile) -> None:
    dev = [name for name in wheel.namelist() if name.startswith(("infra/", "connector/local/", "tests/"))]
    assert not dev, f"development-only code in the wheel: {dev}"
