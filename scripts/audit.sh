#!/usr/bin/env bash
# Audit the pinned dependencies (requirements.lock) for known vulnerabilities with pip-audit.
#
#   bash scripts/audit.sh                 # offline (the default): a local OSV endpoint
#   AUDIT_OSV_DB=/path/PyPI-all.zip bash scripts/audit.sh   # ... fed with a current OSV export
#   AUDIT_MODE=online bash scripts/audit.sh                 # a connected machine: api.osv.dev
#
# Offline, scripts/osv_offline.py serves pip-audit's OSV query API on 127.0.0.1 from
# AUDIT_OSV_DB (OSV's PyPI export, all.zip or a folder of JSON, copied from a connected machine)
# and the safety-db package (on PyPI, but frozen in July 2021). Without AUDIT_OSV_DB the result
# only covers advisories published before July 2021: the script says so. Online never runs unless
# asked (this machine and CI reach no network but the package registries).
# Exit code: 0 no known vulnerability, 1 vulnerabilities found, 2 the audit could not run.
# AUDIT_REPORT (default var/audit.json) receives pip-audit's JSON report.
set -uo pipefail
cd "$(dirname "$0")/.."
LOCK=${AUDIT_LOCK:-requirements.lock}
MODE=${AUDIT_MODE:-offline}
REPORT=${AUDIT_REPORT:-var/audit.json}
mkdir -p "$(dirname "$REPORT")"

# a Python with pip-audit: the project's, else a throwaway venv with the `audit` extra's tools
PY=
VENV=${XDG_CACHE_HOME:-$HOME/.cache}/anirec-audit
for cand in "${AUDIT_PYTHON:-}" .venv/bin/python python3 "$VENV/bin/python"; do
    if [ -n "$cand" ] && "$cand" -c "import importlib.util as u, sys
sys.exit(not (u.find_spec('pip_audit') and u.find_spec('safety_db')))" 2>/dev/null; then
        PY=$cand; break
    fi
done
if [ -z "$PY" ]; then
    echo "audit: installing pip-audit and safety-db into $VENV" >&2
    python3 -m venv "$VENV" && "$VENV/bin/pip" install -q "pip-audit>=2.10" safety-db 2>/dev/null || {
        echo "audit: could not install pip-audit (pip install 'anirec[audit]')" >&2; exit 2; }
    PY=$VENV/bin/python
fi

AUDIT=("$PY" -m pip_audit -r "$LOCK" --no-deps --disable-pip --progress-spinner off
       --vulnerability-service osv --desc on --aliases on)

run() {  # pip-audit twice: once readable, once as the JSON report
    "$@" -f columns; local rc=$?
    "$@" -f json -o "$REPORT" >/dev/null 2>&1
    return $rc
}

case "$MODE" in
online)
    echo "audit: $LOCK against api.osv.dev (online)" >&2
    run "${AUDIT[@]}"; rc=$? ;;
offline)
    SRC=(--safety-db)
    if [ -n "${AUDIT_OSV_DB:-}" ]; then
        SRC+=(--osv "$AUDIT_OSV_DB")
    else
        echo "audit: WARNING no AUDIT_OSV_DB given: only safety-db's advisories (up to July 2021)" \
             "are checked; advisories published since are NOT covered" >&2
    fi
    echo "audit: $LOCK against a local OSV endpoint (offline)" >&2
    run "$PY" scripts/osv_offline.py "${SRC[@]}" -- "${AUDIT[@]}"; rc=$? ;;
*)
    echo "audit: AUDIT_MODE must be offline or online, not '$MODE'" >&2; exit 2 ;;
esac
[ "$rc" -le 1 ] || { echo "audit: pip-audit failed (exit $rc)" >&2; exit 2; }
echo "audit: report in $REPORT" >&2
exit "$rc"
