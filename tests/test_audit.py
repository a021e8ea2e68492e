"""The offline dependency audit: scripts/osv_offline.py answers pip-audit's OSV queries from
local data (an OSV export folder, safety-db), and scripts/audit.sh runs pip-audit against it
with no network. A planted advisory for a locked version must be found; fixed ones must not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import osv_offline  # noqa: E402


def _record(vid: str, name: str, events: list[dict[str, str]], versions: list[str] | None = None) -> dict:
    return {"id": vid, "schema_version": "1.6.0", "summary": f"planted {vid}",
            "affected": [{"package": {"name": name, "ecosystem": "PyPI"},
                          "ranges": [{"type": "ECOSYSTEM", "events": events}],
                          "versions": versions or []}]}


@pytest.fixture
def osv_dir(tmp_path: Path) -> Path:
    d = tmp_path / "osv"
    d.mkdir()
    recs = [_record("PLANT-1", "Pillow", [{"introduced": "0"}, {"fixed": "99.0"}]),       # affects 13.0.0
            _record("PLANT-2", "pillow", [{"introduced": "0"}, {"fixed": "12.0"}]),       # fixed before
            _record("PLANT-3", "aiohttp", [{"introduced": "3.0"}, {"last_affected": "3.14.5"}]),
            _record("PLANT-4", "aiohttp", [{"introduced": "3.0"}, {"last_affected": "3.14.4"}]),
            _record("PLANT-5", "SQLAlchemy", [], versions=["2.1.9"])]
    for r in recs:
        (d / f"{r['id']}.json").write_text(json.dumps(r))
    return d


def test_version_ranges_follow_the_osv_rules(osv_dir: Path) -> None:
    db = osv_offline.Database()
    assert db.load_osv(osv_dir) == 5
    assert [v["id"] for v in db.query("PILLOW", "13.0.0")] == ["PLANT-1"]
    assert [v["id"] for v in db.query("aiohttp", "3.14.5")] == ["PLANT-3"]
    assert [v["id"] for v in db.query("aiohttp", "2.9")] == []
    assert [v["id"] for v in db.query("sqlalchemy", "2.1.9")] == ["PLANT-5"]
    assert db.query("sqlalchemy", "2.1.8") == [] and db.query("pillow", "not a version") == []


def test_safety_db_entries_use_their_specifiers(tmp_path: Path) -> None:
    f = tmp_path / "insecure_full.json"
    f.write_text(json.dumps({"$meta": {"timestamp": 1625119202}, "numpy": [
        {"id": "pyup.io-1", "cve": "CVE-0-1", "advisory": "old", "specs": ["<=1.16.0"]},
        {"id": "pyup.io-2", "cve": None, "advisory": "current", "specs": [">=2.0,<2.5"]}]}))
    db = osv_offline.Database()
    db.load_safety_db(f)
    hits = db.query("numpy", "2.4.6")
    assert [h["id"] for h in hits] == ["pyup.io-2"]
    assert hits[0]["affected"][0]["ranges"][0]["events"][-1] == {"fixed": "2.5"}
    assert "2021-07-01" in db.sources[0]


def test_the_endpoint_answers_like_osv(osv_dir: Path) -> None:
    db = osv_offline.Database()
    db.load_osv(osv_dir)
    server = osv_offline.serve(db)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1/query"

        def ask(body: bytes) -> tuple[int, dict]:
            req = urllib.request.Request(url, data=body, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, {}

        q = {"package": {"name": "pillow", "ecosystem": "PyPI"}, "version": "13.0.0"}
        code, out = ask(json.dumps(q).encode())
        assert code == 200 and [v["id"] for v in out["vulns"]] == ["PLANT-1"]
        code, out = ask(json.dumps({**q, "version": "99.1"}).encode())
        assert code == 200 and out == {}
        assert ask(b"{not json")[0] == 400
    finally:
        server.shutdown()


def _audit(tmp_path: Path, lock: str, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "req.lock").write_text(lock)
    return subprocess.run(["bash", str(ROOT / "scripts" / "audit.sh")], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "AUDIT_PYTHON": sys.executable,
                                            "AUDIT_LOCK": str(tmp_path / "req.lock"),
                                            "AUDIT_REPORT": str(tmp_path / "audit.json"), **env})


needs_pip_audit = pytest.mark.skipif(
    subprocess.run([sys.executable, "-c", "import pip_audit"], capture_output=True).returncode != 0,
    reason="pip-audit is not installed (pip install 'anirec[audit]')")


@needs_pip_audit
def test_audit_script_finds_a_planted_advisory_offline(tmp_path: Path, osv_dir: Path) -> None:
    r = _audit(tmp_path, "pillow==13.0.0\naiohttp==3.14.5\nsqlalchemy==2.1.8\n", AUDIT_OSV_DB=str(osv_dir))
    assert r.returncode == 1, r.stderr
    assert "PLANT-1" in r.stdout and "PLANT-3" in r.stdout and "PLANT-2" not in r.stdout
    report = json.loads((tmp_path / "audit.json").read_text())
    found = {d["name"]: [v["id"] for v in d["vulns"]] for d in report["dependencies"]}
    assert found == {"pillow": ["PLANT-1"], "aiohttp": ["PLANT-3"], "sqlalchemy": []}
    assert "no AUDIT_OSV_DB" not in r.stderr  # a current export was given


@pytest.mark.slow
@needs_pip_audit
def test_audit_script_without_an_export_says_what_it_misses(tmp_path: Path) -> None:
    r = _audit(tmp_path, "pillow==6.2.0\n")  # a Pillow of 2019: safety-db knows its advisories
    assert r.returncode == 1 and "CVE-2020-" in r.stdout
    assert "only safety-db's advisories (up to July 2021)" in r.stderr
    assert _audit(tmp_path, "pillow==13.0.0\n", AUDIT_OSV_DB=str(tmp_path / "missing.zip")).returncode == 2
