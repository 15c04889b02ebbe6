#!/usr/bin/env bash
# make package: the inbound Lambda's zip (dist/lambda/inbound.zip), built for python3.11 on arm64. The work is done by
# infra/package.py (standard library + pip); this wrapper only picks the interpreter: the repo's venv when it exists
# (make package depends on it), else python3. Arguments pass through: --out PATH, --build-dir DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[[ -x $PY ]] || PY=python3
exec "$PY" infra/package.py "$@"
