"""An index folder's manifest and the crash-safe file writes behind it.

The manifest (`manifest.json`) says what built the index, how, and which data files belong
to it, with each file's size and sha256. Data files are written under fresh names (temp file,
fsync, `os.replace`) and the manifest last, so a crash leaves the previous version readable
and a damaged or truncated file is caught on load.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from core.errors import IndexMismatch, IndexUnavailable
from core.index.regions import RegionSpec, RegionSpecJson

#: Bumped when the folder layout or manifest fields change incompatibly.
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
BACKEND = "hnswlib"
#: Names of versioned data files (any other version of them is stale after a save).
DATA_FILE_RE = re.compile(r"^(vectors|deleted|ids|codes)-.+\.(hnsw|npy|faiss)$")
_HASH_CHUNK = 4 << 20


class ManifestRegions(RegionSpecJson, total=False):
    """The manifest's `regions` entry: the region settings plus what `regions/` holds."""

    version: str  # the region index's own manifest version
    count: int  # live region vectors


@dataclass(frozen=True)
class DataFile:
    """One file of an index folder, with what is needed to detect damage."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class IndexManifest:
    """Everything needed to decide whether an index folder can be used, stored as JSON."""

    format_version: int
    backend: str
    space: str
    dim: int
    M: int
    ef_construction: int
    embedder_name: str
    embedder_version: str
    count: int  # live vectors
    created_at: str  # ISO 8601 UTC
    updated_at: str  # ISO 8601 UTC
    #: Changes on every save; reported as `index_version` in answers.
    version: str
    #: role ("vectors", "deleted") -> file; empty until the index is saved.
    files: dict[str, DataFile] = field(default_factory=dict)
    #: region settings plus the version/count of `regions/`; None: no region vectors.
    regions: ManifestRegions | None = None

    @property
    def region_spec(self) -> RegionSpec | None:
        return RegionSpec.from_json(self.regions) if self.regions else None

    @property
    def data_file(self) -> DataFile | None:
        """The hnswlib data file, once saved."""
        return self.files.get("vectors")

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict."""
        out = asdict(self)
        out["files"] = {role: asdict(f) for role, f in self.files.items()}
        return out

    @classmethod
    def from_json(cls, data: object) -> IndexManifest:
        """Parse a manifest dict.

        Raises:
            ValueError: a field is missing or has the wrong type.
        """
        if not isinstance(data, dict):
            raise ValueError("manifest is not a JSON object")
        try:
            files = {str(role): DataFile(name=str(f["name"]), size=int(f["size"]),
                                         sha256=str(f["sha256"]))
                     for role, f in dict(data.get("files") or {}).items()}
            return cls(
                format_version=int(data["format_version"]),
                backend=str(data["backend"]),
                space=str(data["space"]),
                dim=int(data["dim"]),
                M=int(data["M"]),
                ef_construction=int(data["ef_construction"]),
                embedder_name=str(data["embedder_name"]),
                embedder_version=str(data["embedder_version"]),
                count=int(data["count"]),
                created_at=str(data["created_at"]),
                updated_at=str(data["updated_at"]),
                version=str(data["version"]),
                files=files,
                regions=(cast(ManifestRegions, dict(data["regions"])) if data.get("regions")
                         else None),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"bad manifest field: {exc}") from None

    def describe_embedder(self) -> str:
        """E.g. ``"scene-resnet18 v3"``."""
        return f"{self.embedder_name} v{self.embedder_version}"


def check_embedder(folder: Path, m: IndexManifest, embedder_name: str, embedder_version: str,
                   dim: int) -> None:
    """Refuse an index built by another embedder (IndexMismatch, saying how to rebuild)."""
    if (m.embedder_name, m.embedder_version, m.dim) != (embedder_name, embedder_version, dim):
        raise IndexMismatch(
            f"The index in {folder} was built by embedder {m.describe_embedder()} "
            f"(dim {m.dim}), but the current embedder is {embedder_name} "
            f"v{embedder_version} (dim {dim}). Run `anirec index --reembed` to rebuild it.")


def utcnow() -> str:
    """Now, as the manifest's ISO 8601 UTC timestamps."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_manifest(folder: Path) -> IndexManifest:
    """Read `folder/manifest.json`.

    Args:
        folder: an index folder.

    Returns:
        The parsed manifest.

    Raises:
        IndexUnavailable: there is no manifest, or it cannot be parsed.
    """
    path = Path(folder) / MANIFEST_NAME
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise IndexUnavailable(
            f"No index in {folder} (no {MANIFEST_NAME}). Run `anirec index` first.") from None
    except OSError as exc:
        raise IndexUnavailable(f"Cannot read the index manifest {path}: {exc}") from None
    try:
        return IndexManifest.from_json(json.loads(raw))
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise IndexUnavailable(
            f"The index manifest {path} is corrupt ({exc}). Rebuild with `anirec index`.") from None


def write_manifest(folder: Path, manifest: IndexManifest) -> None:
    """Write `folder/manifest.json` atomically, after the data files it names."""
    with temp_path(folder, ".json") as tmp:
        tmp.write_text(json.dumps(manifest.to_json(), indent=2) + "\n", encoding="utf-8")
        commit_temp(tmp, folder / MANIFEST_NAME)
    fsync_dir(folder)


def fsync_dir(folder: Path) -> None:
    """Make the renames in `folder` durable (not possible on every platform/filesystem)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def commit_temp(tmp: Path, final: Path) -> DataFile:
    """fsync `tmp`, hash it, and atomically rename it to `final`."""
    h = hashlib.sha256()
    with open(tmp, "rb+") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
        f.flush()
        os.fsync(f.fileno())
        size = f.tell()
    os.replace(tmp, final)
    return DataFile(name=final.name, size=size, sha256=h.hexdigest())


@contextlib.contextmanager
def temp_path(folder: Path, suffix: str) -> Iterator[Path]:
    """A fresh temp file name in `folder`, removed if the block fails before renaming it."""
    fd, name = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def verify_file(folder: Path, f: DataFile, *, checksum: bool = True) -> Path:
    """Check a data file's size (and sha256 when `checksum`); return its path."""
    path = folder / f.name
    if Path(f.name).name != f.name or f.name in ("", ".", ".."):  # stay inside the folder
        raise IndexUnavailable(f"The index manifest in {folder} names a bad file: {f.name!r}")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise IndexUnavailable(
            f"The index in {folder} is incomplete: {f.name} is missing. "
            "Rebuild with `anirec index`.") from None
    if size != f.size:
        raise IndexUnavailable(
            f"The index file {path} is damaged or truncated ({size} bytes, expected {f.size}). "
            "Rebuild with `anirec index`.")
    if checksum and sha256_file(path) != f.sha256:
        raise IndexUnavailable(
            f"The index file {path} is corrupt (checksum mismatch). Rebuild with `anirec index`.")
    return path


def remove_stale_files(folder: Path, keep: set[str]) -> None:
    """Delete data files of older versions and leftover temp files (best effort)."""
    for p in folder.iterdir():
        stale_data = DATA_FILE_RE.match(p.name) and p.name not in keep
        if stale_data or p.name.startswith(".tmp-"):
            with contextlib.suppress(OSError):
                p.unlink()
