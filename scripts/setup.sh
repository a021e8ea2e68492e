#!/usr/bin/env bash
# Create .venv and install AniRec with its dev extras (train, tests, ruff, mypy); idempotent, fast when up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# torch/torchvision are pinned in pyproject.toml (2.14.1 / 0.29.1).
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
log="$(mktemp)"
if ! .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' >"$log" 2>&1; then
  grep -v "is ignored: it is neither a file nor a directory" "$log" >&2
  echo "setup: pip install failed" >&2
  exit 1
fi
rm -f "$log"
.venv/bin/python -c "import torch, torchvision, av, hnswlib, discord, telegram, sqlalchemy, alembic" \
  || { echo "setup: the install is incomplete" >&2; exit 1; }
# The optional face-label teacher (animeface needs Pillow < 12, so it lives in its own venv).
# Best effort: without it, `anirec faces harvest` explains how to get it and its tests skip.
bash scripts/teacher-venv.sh >/dev/null 2>&1 || echo "setup: the optional animeface teacher (.venv-teacher) could not be installed" >&2
# The browser test drives Debian's Chromium. Best effort, as root with apt-get only (CI runs
# as root on Debian); without it the browser test skips and says why.
if { ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; } \
    && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
    || echo "setup: could not install chromium; the browser test will be skipped" >&2
fi
# The catalog tests also run on a real PostgreSQL they start themselves (initdb/pg_ctl from
# Debian's postgresql, core/db/pg_local.py). Best effort, as root with apt-get only; without
# it the PostgreSQL tests skip and say why.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1 \
    && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
    || echo "setup: could not install postgresql; the PostgreSQL tests will be skipped" >&2
fi
