#!/usr/bin/env bash
# Offline Terraform checks (`make check-infra`, part of `make test`); needs only python3 and terraform, no provider
# download, no network beyond the one-time PyPI install of checkov:
#   1. terraform fmt -check;
#   2. checkov, pinned, in its own virtual environment (it installs bc-python-hcl2, which ships a module also named
#      `hcl2` and would shadow the python-hcl2 our structural tests use), failing on any check not waived in the code
#      with a written reason (`#checkov:skip=<ID>:<reason>`).
# The python-hcl2 structural tests (tests/infra) are not run here: they are part of the normal pytest run
# (`make test-py`), and running them twice would only cost time. Run them alone with `.venv/bin/python -m pytest tests/infra`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TF_DIR=infra/terraform
CHECKOV_VERSION=3.3.30
CHECKOV_CONSTRAINTS=infra/checkov/constraints.txt
CHECKOV_VENV=.venv-checkov
PYTHON="${PYTHON:-python3}"

# This machine's TF_CLI_CONFIG_FILE may point at a missing file; fmt needs no CLI configuration at all.
export TF_CLI_CONFIG_FILE=/dev/null

command -v terraform >/dev/null || { echo "check-infra: terraform not found on PATH (needed for fmt -check)" >&2; exit 1; }

echo "== terraform fmt -check ($TF_DIR)"
terraform fmt -check -recursive -diff "$TF_DIR"

# (Re)create the venv only when missing or when the pinned version or the constraints changed (stamp = both).
stamp="$CHECKOV_VENV/.installed"
# (Hashed with Python, not sha256sum: macOS has no sha256sum.)
constraints_hash="$("$PYTHON" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$CHECKOV_CONSTRAINTS")"
want="checkov==$CHECKOV_VERSION $constraints_hash"
if [[ ! -x "$CHECKOV_VENV/bin/checkov" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "== installing checkov $CHECKOV_VERSION into $CHECKOV_VENV"
  start=$SECONDS
  rm -rf "$CHECKOV_VENV"
  "$PYTHON" -m venv "$CHECKOV_VENV"
  # (grep: hide the "Location ... is ignored" noise some pip configurations print for every package; pipefail keeps
  # pip's own exit status.)
  "$CHECKOV_VENV/bin/pip" install --quiet --disable-pip-version-check \
    -c "$CHECKOV_CONSTRAINTS" "checkov==$CHECKOV_VERSION" 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }
  echo "$want" >"$stamp"
  echo "   installed in $((SECONDS - start)) s"
fi

echo "== checkov $CHECKOV_VERSION ($TF_DIR, offline)"
# Offline and anonymous: no API key, no policy download, no guideline mapping; a file checkov cannot parse is an
# error, not a silently skipped file.
BC_SKIP_MAPPING=TRUE CKV_PARSE_ERROR_FAIL=true \
  "$CHECKOV_VENV/bin/checkov" -d "$TF_DIR" --framework terraform --quiet --compact --skip-download
