#!/usr/bin/env bash
# The README's test command: install (idempotent, quick when up to date), then the checks
# (ruff on the whole tree, mypy on core/ and training/, both configured in pyproject.toml),
# then the default (fast) test suite. Any failing step fails the run; pytest's exit code 5
# (no tests collected) is a failure here.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
.venv/bin/python -m ruff check . || { echo "test.sh: ruff check failed" >&2; exit 1; }
.venv/bin/python -m mypy || { echo "test.sh: mypy failed" >&2; exit 1; }
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "test.sh: no tests were collected; failing" >&2
  exit 1
fi
exit "$rc"
