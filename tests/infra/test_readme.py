"""The README's "Deploy to AWS" section is what users follow instead of reading the Terraform: every variable is in
its table with the Terraform default, and every output the steps use exists."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.infra.tfmodel import Model

README = Path(__file__).resolve().parents[2] / "README.md"


def deploy_section() -> str:
    text = README.read_text()
    start = text.index("## Deploy to AWS")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def variable_rows(section: str) -> dict[str, str]:
    """``{variable: default cell}`` from the rows of the variables table (a row may name several variables)."""
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([a-z0-9_]+)`", cells[0])
        defaults = [d.strip() for d in cells[1].split(",")] if len(names) > 1 else [cells[1]]
        for i, name in enumerate(names):
            rows[name] = defaults[min(i, len(defaults) - 1)]
    return rows


def as_cell(value: Any) -> str:
    return f"`{json.dumps(value)}`" if isinstance(value, str) else f"`{json.dumps(value)}`".replace('"', "")


@pytest.fixture(scope="module")
def terraform() -> Model:
    return Model.from_dir()


def test_every_variable_is_documented_with_its_default(terraform: Model) -> None:
    rows = variable_rows(deploy_section())
    missing = sorted(set(terraform.variables) - set(rows))
    assert not missing, f"variables missing from the README's table: {missing}"
    wrong = []
    for name, body in terraform.variables.items():
        cell = rows[name]
        if "default" not in body:
            if cell != "required":
                wrong.append(f"{name}: Terraform requires it, the README says {cell}")
            continue
        default = body["default"]
        if isinstance(default, (str, bool, int, float)) and cell.startswith("`") and cell != as_cell(default):
            wrong.append(f"{name}: Terraform default {as_cell(default)}, the README says {cell}")
    assert not wrong, "\n".join(wrong)


def test_the_readme_names_no_variable_terraform_lacks(terraform: Model) -> None:
    section = deploy_section()
    tfvars = section[section.index("terraform.tfvars <<") : section.index("TFVARS\n```")]
    used = set(re.findall(r"^([a-z0-9_]+)\s*=", tfvars, re.M))
    assert used and used <= set(terraform.variables), sorted(used - set(terraform.variables))
    documented = set(variable_rows(section))
    assert documented <= set(terraform.variables), sorted(documented - set(terraform.variables))


def test_every_output_the_steps_read_exists(terraform: Model) -> None:
    used = set(re.findall(r"terraform output -raw ([a-z0-9_]+)", deploy_section()))
    assert used, "the deploy steps read no terraform output"
    assert used <= set(terraform.outputs), sorted(used - set(terraform.outputs))


def test_the_checker_reads_defaults_that_differ() -> None:
    section = '| `a` | `"X"` | x |\n| `b`, `c` | `1`, `2` | y |\n| `d` | required | z |'
    assert variable_rows(section) == {"a": '`"X"`', "b": "`1`", "c": "`2`", "d": "required"}
    assert as_cell("ARM64") == '`"ARM64"`' and as_cell(True) == "`true`" and as_cell(86400) == "`86400`"
