#!/usr/bin/env bash
# The README's main command: install into .venv (if needed), then run `anirec demo` on the
# bundled synthetic sample library. Extra arguments go to `anirec demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/anirec demo "$@"
