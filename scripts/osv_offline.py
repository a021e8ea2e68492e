"""A local, offline stand-in for the OSV query API, so `pip-audit` runs without network access.

pip-audit's OSV service posts `{"package": {"name", "ecosystem"}, "version"}` to `--osv-url`
and reads back `{"vulns": [...]}`. This serves that one endpoint on 127.0.0.1 from local data:

- `--osv PATH`: OSV records, as the OSV project exports them (the PyPI ecosystem's `all.zip`,
  or a folder of its `*.json` files) — copy it onto the machine from a connected one;
- `--safety-db`: the `safety-db` package's `insecure_full.json` (installable from PyPI, but
  frozen in July 2021: it misses every advisory published since).

`python scripts/osv_offline.py [--osv PATH] [--safety-db] -- pip-audit ARGS...` starts the
server, runs the command with `--osv-url` pointing at it and exits with the command's code.
Used by `scripts/audit.sh`; stdlib and `packaging` only.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _in_range(v: Version, events: list[dict[str, str]]) -> bool:
    """OSV ECOSYSTEM range evaluation: walk the events in version order."""
    def key(ev: dict[str, str]) -> Version:
        raw = next(iter(ev.values()))
        return Version("0") if raw == "0" else (_version(raw) or Version("0"))

    affected = False
    for ev in sorted(events, key=key):
        if "introduced" in ev and v >= key(ev):
            affected = True
        elif "fixed" in ev and v >= key(ev):
            affected = False
        elif "last_affected" in ev and v > key(ev):
            affected = False
    return affected


@dataclass
class Advisory:
    record: dict[str, Any]  # what the API answers (an OSV record)
    specifiers: list[SpecifierSet] = field(default_factory=list)  # safety-db's form

    def affects(self, name: str, v: Version) -> bool:
        if self.specifiers:  # a safety-db entry: its specifiers decide (the ranges only carry fixes)
            return any(v in s for s in self.specifiers)
        for aff in self.record.get("affected", []):
            pkg = aff.get("package", {})
            if pkg.get("ecosystem") != "PyPI" or canonical(pkg.get("name", "")) != name:
                continue
            if any(_version(x) == v for x in aff.get("versions", [])):
                return True
            if any(r.get("type") == "ECOSYSTEM" and _in_range(v, r.get("events", []))
                   for r in aff.get("ranges", [])):
                return True
        return False


class Database:
    """Advisories by canonical package name."""

    def __init__(self) -> None:
        self.by_name: dict[str, list[Advisory]] = defaultdict(list)
        self.sources: list[str] = []

    def add_osv_record(self, rec: dict[str, Any]) -> None:
        names = {canonical(a["package"]["name"]) for a in rec.get("affected", [])
                 if a.get("package", {}).get("ecosystem") == "PyPI"}
        for name in names:
            self.by_name[name].append(Advisory(rec))

    def load_osv(self, path: Path) -> int:
        """Load an OSV export (a zip or a folder of JSON records); returns the record count."""
        n = 0
        for text in _osv_texts(path):
            rec = json.loads(text)
            self.add_osv_record(rec)
            n += 1
        self.sources.append(f"OSV export {path} ({n} records)")
        return n

    def load_safety_db(self, path: Path | None = None) -> int:
        if path is None:  # found, not imported: its __init__ opens a path relative to the cwd
            import importlib.util

            spec = importlib.util.find_spec("safety_db")
            if spec is None or not spec.submodule_search_locations:
                raise FileNotFoundError("the safety-db package is not installed (pip install safety-db)")
            path = Path(next(iter(spec.submodule_search_locations))) / "insecure_full.json"
        data = json.loads(path.read_text())
        meta = data.pop("$meta", {})
        n = 0
        for pkg, entries in data.items():
            for e in entries:
                specs = []
                for s in e.get("specs", []):
                    try:
                        specs.append(SpecifierSet(s))
                    except InvalidSpecifier:
                        continue
                fixed = [m.group(1) for s in e.get("specs", []) for m in [re.search(r"<([^,=<>]+)$", s)] if m]
                rec = {"id": e["id"], "schema_version": "1.0.0", "aliases": [e["cve"]] if e.get("cve") else [],
                       "summary": e.get("advisory", ""),
                       "affected": [{"package": {"name": pkg, "ecosystem": "PyPI"},
                                     "ranges": [{"type": "ECOSYSTEM",
                                                 "events": [{"introduced": "0"}, *({"fixed": f} for f in fixed)]}]}]}
                self.by_name[canonical(pkg)].append(Advisory(rec, specs))
                n += 1
        stamp = meta.get("timestamp")
        dated = time.strftime("%Y-%m-%d", time.gmtime(stamp)) if isinstance(stamp, int) else "?"
        self.sources.append(f"safety-db {path} ({n} advisories, dated {dated})")
        return n

    def query(self, name: str, version: str) -> list[dict[str, Any]]:
        v = _version(version)
        if v is None:
            return []
        name = canonical(name)
        return [a.record for a in self.by_name.get(name, []) if a.affects(name, v)]


def _osv_texts(path: Path) -> Iterator[str]:
    if path.is_dir():
        for p in sorted(path.rglob("*.json")):
            yield p.read_text()
    else:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if info.filename.endswith(".json"):
                    yield z.read(info).decode()


def serve(db: Database) -> ThreadingHTTPServer:
    """Start the query endpoint on 127.0.0.1 (a free port) in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                pkg = body["package"]
                vulns = db.query(pkg["name"], body["version"]) if pkg.get("ecosystem") == "PyPI" else []
                out, code = json.dumps({"vulns": vulns} if vulns else {}).encode(), 200
            except (ValueError, KeyError, TypeError):
                out, code = b'{"message": "bad query"}', 400
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv: Iterable[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[args.index("--") + 1:] if "--" in args else []
    opts = args[:args.index("--")] if "--" in args else args
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--osv", type=Path, action="append", default=[], help="OSV export (zip or folder)")
    ap.add_argument("--safety-db", action="store_true", help="also use the safety-db package")
    ns = ap.parse_args(opts)
    db = Database()
    try:
        for p in ns.osv:
            db.load_osv(p)
        if ns.safety_db:
            db.load_safety_db()
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        print(f"osv_offline: could not load the vulnerability data: {exc}", file=sys.stderr)
        return 2
    if not db.sources:
        print("osv_offline: no vulnerability data (give --osv PATH and/or --safety-db)", file=sys.stderr)
        return 2
    for s in db.sources:
        print(f"osv_offline: {s}", file=sys.stderr)
    server = serve(db)
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/query"
    if not command:
        print(url, flush=True)
        threading.Event().wait()
    try:
        return subprocess.call([*command, "--osv-url", url])
    finally:
        server.shutdown()


if __name__ == "__main__":
    sys.exit(main())
