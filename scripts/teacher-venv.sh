#!/usr/bin/env bash
# Create .venv-teacher: an interpreter with the `animeface` face detector and an old Pillow
# (animeface silently finds no faces with Pillow >= 12). It is used offline, only to harvest
# face pseudo-labels (`anirec faces harvest`); the application keeps its own Pillow.
# Idempotent; prints the interpreter path on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
VENV=.venv-teacher
check='import animeface, PIL, sys; v = tuple(int(x) for x in PIL.__version__.split(".")[:2]); sys.exit(0 if v < (12, 0) else 1)'
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "$check" >/dev/null 2>&1; then
  log="$(mktemp)"
  if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
      'animeface==2.0.3' 'Pillow<12' >"$log" 2>&1; then
    cat "$log" >&2
    echo "teacher-venv: pip install failed" >&2
    exit 1
  fi
  rm -f "$log"
  "$VENV/bin/python" -c "$check" \
    || { echo "teacher-venv: animeface or Pillow<12 is missing after install" >&2; exit 1; }
fi
echo "$(pwd)/$VENV/bin/python"
