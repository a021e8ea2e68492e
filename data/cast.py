"""Cast building: add reference faces, discover faces in the library, cluster and name them.

`discover` reads a few indexed frames of every shot of a series (decoding each episode once,
in order), detects faces, embeds them, stores them as `appearances` and clusters them; the
operator then looks at the contact sheet and names clusters (`name_cluster`), which creates
the character (if new), labels the cluster's appearances and adds its most typical faces as
references. Everything is written in one transaction per step: an interrupted run leaves the
catalog as it was.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np
from PIL import Image, ImageDraw
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from core.characters import bytes_vector, label_font, vector_bytes
from core.db.models import Appearance, Character, CharacterReference, Episode, Frame, Series
from core.errors import AniRecError
from core.models.characters import CharacterEmbedder, CharacterSpec, crop_face, whole_image_crop
from core.models.colours import FusedEmbedder
from core.models.faces import FaceDetector

logger = logging.getLogger(__name__)

REF_SIZE = 128  # stored reference crops are REF_SIZE × REF_SIZE PNGs
REF_SPEC = CharacterSpec(size=REF_SIZE)  # the embedder's crop margin, at reference size
CLUSTER_SIMILARITY = 0.75  # average-linkage merge threshold (cosine)
MAX_DISCOVER_FACES = 4000


class CastError(AniRecError):
    """A cast-building request that cannot be carried out (unknown series, cluster, ...)."""


def find_series(sessions: sessionmaker[Session], query: str) -> tuple[int, str]:
    """A series by id, exact title, folder or any alternative title (case-insensitive)."""
    q = query.strip().casefold()
    with sessions() as s:
        rows = s.execute(select(Series.id, Series.title, Series.folder, Series.titles)).all()
    for sid, title, folder, titles in rows:
        names = {str(sid), title.casefold(), (folder or "").casefold()}
        names |= {str(v).casefold() for v in (titles or {}).values()}
        if q in names:
            return sid, title
    close = [t for _, t, _, _ in rows if q and q in t.casefold()]
    hint = f" Did you mean: {', '.join(close[:3])}?" if close else ""
    known = ", ".join(t for _, t, _, _ in rows[:8]) or "none indexed yet"
    raise CastError(f"no series called {query!r}.{hint} Known series: {known}")


def safe_name(text: str) -> str:
    """A file-name-safe slug (never a path)."""
    s = re.sub(r"[^\w.-]+", "-", text, flags=re.UNICODE).strip(".-")
    return s[:80] or "x"


def _ref_dir(home: Path, series_id: int, character_id: int) -> Path:
    return home / "characters" / str(series_id) / str(character_id)


def _get_or_create(s: Session, series_id: int, name: str) -> Character:
    name = " ".join(name.split())
    if not name or len(name) > 256:
        raise CastError("a character name must be 1–256 characters")
    ch = s.scalar(select(Character).where(Character.series_id == series_id, Character.name == name))
    if ch is None:
        ch = Character(series_id=series_id, name=name)
        s.add(ch)
        s.flush()
    return ch


def _store_reference(s: Session, home: Path, ch: Character, crop: np.ndarray, source: str,
                     embedder: CharacterEmbedder | FusedEmbedder | None, tag: str) -> CharacterReference:
    folder = _ref_dir(home, ch.series_id, ch.id)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{safe_name(tag)}.png"
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(crop).save(tmp, format="PNG")
    tmp.replace(path)
    ref = CharacterReference(character_id=ch.id, source=source, image_path=str(path.relative_to(home)))
    if embedder is not None:
        with Image.open(path) as im:
            ref.embedding, ref.embedder_version = vector_bytes(embedder.embed_reference(im)), embedder.version
    s.add(ref)
    return ref


@dataclass
class AddResult:
    character_id: int
    name: str
    series: str
    added: int
    faces_found: list[str]  # per image: "face 0.93" / "whole image"


def add_references(sessions: sessionmaker[Session], home: Path, series: str, name: str,
                   images: Sequence[tuple[str, Image.Image]], *, detector: FaceDetector | None,
                   embedder: CharacterEmbedder | FusedEmbedder | None) -> AddResult:
    """One-shot cast building: 1–5 (or more) images of a character become its references.

    An image that is a screenshot is cropped to its most confident face; an image that is
    already a head (no face found, or the face fills most of it) is used whole."""
    if not images:
        raise CastError("give at least one image of the character")
    sid, title = find_series(sessions, series)
    crops, notes = [], []
    for label, im in images:
        faces = detector.detect(im) if detector is not None else []
        big = faces and (faces[0].box[2] - faces[0].box[0]) * (faces[0].box[3] - faces[0].box[1]) \
            < 0.5 * im.width * im.height
        if faces and big:
            crops.append(crop_face(im, faces[0].box, REF_SPEC))
            notes.append(f"{label}: face {faces[0].score:.2f}")
        else:
            crops.append(whole_image_crop(im, REF_SPEC))
            notes.append(f"{label}: whole image")
    with sessions() as s:
        ch = _get_or_create(s, sid, name)
        start = s.scalar(select(func.count()).select_from(CharacterReference)
                         .where(CharacterReference.character_id == ch.id)) or 0
        for k, crop in enumerate(crops):
            _store_reference(s, home, ch, crop, "image", embedder, f"image-{start + k + 1}")
        s.commit()
        return AddResult(ch.id, ch.name, title, len(crops), notes)


# ----------------------------------------------------------------------------------------------
# discovery
# ----------------------------------------------------------------------------------------------
def cluster_vectors(vecs: np.ndarray, threshold: float = CLUSTER_SIMILARITY) -> np.ndarray:
    """Average-linkage agglomerative clustering on cosine similarity; labels 0..k-1, the
    biggest cluster first."""
    n = len(vecs)
    if n == 0:
        return np.zeros(0, np.int64)
    sim = (vecs @ vecs.T).astype(np.float64)
    members: dict[int, list[int]] = {i: [i] for i in range(n)}
    # cluster-to-cluster average similarity, kept as a dense matrix over live clusters
    link = sim.copy()
    np.fill_diagonal(link, -np.inf)
    alive = np.ones(n, bool)
    while True:
        masked = np.where(alive[:, None] & alive[None, :], link, -np.inf)
        i, j = np.unravel_index(int(np.argmax(masked)), masked.shape)
        if masked[i, j] < threshold:
            break
        ni, nj = len(members[i]), len(members[j])
        link[i, :] = (link[i, :] * ni + link[j, :] * nj) / (ni + nj)
        link[:, i] = link[i, :]
        link[i, i] = -np.inf
        members[i] += members.pop(j)
        alive[j] = False
    labels = np.zeros(n, np.int64)
    order = sorted(members.values(), key=len, reverse=True)
    for k, m in enumerate(order):
        labels[m] = k
    return labels


class ClusterSize(TypedDict):
    """A discovered cluster's number and how many faces it holds."""

    id: int
    size: int


class _Cluster(ClusterSize):
    typical: list[int]  # positions of its faces, the most typical (nearest the centre) first


class CastEntry(TypedDict):
    """One character as `list_cast` reports it."""

    id: int
    series: str
    name: str
    references: int
    appearances: int


@dataclass
class DiscoverResult:
    series: str
    frames: int
    faces: int
    clusters: list[ClusterSize]
    sheet_png: Path | None
    sheet_html: Path | None


def _series_frames(s: Session, series_id: int, per_shot: int) -> dict[str, list[tuple[int, int | None, float]]]:
    """episode path → [(frame id, shot id, t)]: up to `per_shot` evenly spread frames a shot."""
    rows = s.execute(select(Episode.path, Frame.id, Frame.shot_id, Frame.t)
                     .join(Frame, Frame.episode_id == Episode.id)
                     .where(Episode.series_id == series_id, Episode.status == "indexed")
                     .order_by(Episode.path, Frame.t)).all()
    by_shot: dict[tuple[str, int | str], list[tuple[int, int | None, float]]] = {}
    for path, fid, shot, t in rows:
        by_shot.setdefault((path, shot if shot is not None else f"f{fid}"), []).append((fid, shot, t))
    out: dict[str, list[tuple[int, int | None, float]]] = {}
    for (path, _), frames in by_shot.items():
        pick = np.unique(np.linspace(0, len(frames) - 1, min(per_shot, len(frames))).round().astype(int))
        out.setdefault(path, []).extend(frames[i] for i in pick)
    return out


def discover(sessions: sessionmaker[Session], home: Path, series: str, *, detector: FaceDetector,
             embedder: CharacterEmbedder | FusedEmbedder,
             per_shot: int = 3, threshold: float = CLUSTER_SIMILARITY,
             progress: Callable[[int, int], None] | None = None) -> DiscoverResult:
    """Find the faces of a series in its indexed frames, cluster them, write the contact sheet."""
    from data.video import read_frames_at

    sid, title = find_series(sessions, series)
    with sessions() as s:
        plan = _series_frames(s, sid, per_shot)
    if not plan:
        raise CastError(f"{title} has no indexed frames; run `anirec index LIBRARY` first")
    found: list[tuple[int, int | None, tuple[int, int, int, int], float, np.ndarray, np.ndarray]] = []
    total = sum(len(v) for v in plan.values())
    done = 0
    for path, frames in plan.items():
        rgbs = read_frames_at(Path(path), [t for _, _, t in frames])
        for (fid, shot, _), rgb in zip(frames, rgbs, strict=True):
            img = Image.fromarray(rgb)
            faces = detector.detect(img)
            if faces:
                vecs = embedder.embed_faces(img, [f.box for f in faces])
                for f, v in zip(faces, vecs, strict=True):
                    found.append((fid, shot, tuple(int(x) for x in f.box), float(f.score), v,
                                  crop_face(img, f.box, REF_SPEC)))
            done += 1
            if progress:
                progress(done, total)
        if len(found) >= MAX_DISCOVER_FACES:
            logger.warning("discover: stopped at %d faces", len(found))
            break
    vecs = np.stack([f[4] for f in found]) if found else np.zeros((0, embedder.dim), np.float32)
    # clusters are formed on the embedder's part of the naming vector (the colour part alone
    # cannot tell characters of one palette apart); the stored vectors are the naming ones
    labels = cluster_vectors(embedder.split(vecs)[0] if isinstance(embedder, FusedEmbedder) else vecs, threshold)
    with sessions() as s:
        frame_ids = [fid for frames in plan.values() for fid, _, _ in frames]
        # a re-run replaces the unnamed faces of these frames; named ones are kept
        for chunk in range(0, len(frame_ids), 500):
            s.execute(delete(Appearance).where(Appearance.frame_id.in_(frame_ids[chunk:chunk + 500]),
                                               Appearance.character_id.is_(None)))
        base = (s.scalar(select(func.max(Appearance.cluster))) or 0) + 1
        for (fid, shot, box, score, v, _), lab in zip(found, labels, strict=True):
            s.add(Appearance(frame_id=fid, shot_id=shot, x0=box[0], y0=box[1], x1=box[2], y1=box[3],
                             score=score, cluster=base + int(lab), embedding=vector_bytes(v)))
        s.commit()
    clusters: list[_Cluster] = []
    for k in range(int(labels.max()) + 1 if len(labels) else 0):
        idx = np.flatnonzero(labels == k)
        centroid = vecs[idx].mean(0)
        typical = idx[np.argsort(-(vecs[idx] @ centroid))]
        clusters.append(_Cluster(id=base + k, size=int(len(idx)), typical=[int(i) for i in typical[:12]]))
    sheet_png, sheet_html = write_contact_sheet(home / "contact-sheets", title,
                                                [(c["id"], c["size"], [found[i][5] for i in c["typical"]])
                                                 for c in clusters])
    return DiscoverResult(title, total, len(found),
                          [ClusterSize(id=c["id"], size=c["size"]) for c in clusters], sheet_png, sheet_html)


def write_contact_sheet(folder: Path, title: str, clusters: list[tuple[int, int, list[np.ndarray]]],
                        *, thumb: int = 72, per_row: int = 12) -> tuple[Path | None, Path | None]:
    """An image grid (PNG) and a self-contained HTML page: one row per cluster."""
    if not clusters:
        return None, None
    folder.mkdir(parents=True, exist_ok=True)
    label_w = 150
    w = label_w + per_row * (thumb + 4) + 4
    h = 40 + len(clusters) * (thumb + 8)
    sheet = Image.new("RGB", (w, h), (250, 250, 252))
    draw = ImageDraw.Draw(sheet)
    draw.text((8, 10), f"{title}: {len(clusters)} face clusters — name them with "
                       f"`anirec characters name CLUSTER NAME`", fill=(20, 20, 30), font=label_font(14))
    rows_html = []
    for r, (cid, size, crops) in enumerate(clusters):
        y = 40 + r * (thumb + 8)
        draw.text((8, y + thumb // 2 - 16), f"cluster {cid}", fill=(20, 20, 30), font=label_font(15))
        faces = f"{size} face{'s' if size != 1 else ''}"
        draw.text((8, y + thumb // 2 + 4), faces, fill=(90, 90, 100), font=label_font(12))
        cells = []
        for k, crop in enumerate(crops[:per_row]):
            im = Image.fromarray(crop).resize((thumb, thumb), Image.Resampling.LANCZOS)
            sheet.paste(im, (label_w + k * (thumb + 4), y))
            buf = io.BytesIO()
            im.save(buf, format="PNG")
            cells.append(f"<img alt='' src='data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}'>")
        rows_html.append(f"<tr><th>cluster {cid}<br><small>{faces}</small></th><td>{''.join(cells)}</td></tr>")
    stem = safe_name(title)
    png = folder / f"{stem}.png"
    tmp = png.with_name(png.name + ".tmp")
    sheet.save(tmp, format="PNG")
    tmp.replace(png)
    page = (f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)} — faces</title>"
            "<style>body{font:14px system-ui;margin:1em}th{text-align:left;padding-right:1em}"
            "img{width:72px;height:72px;margin:2px;border-radius:4px}</style>"
            f"<h1>{html.escape(title)}</h1><p>Name a cluster: <code>anirec characters name CLUSTER "
            f"NAME</code></p><table>{''.join(rows_html)}</table>")
    page_path = folder / f"{stem}.html"
    page_path.write_text(page, encoding="utf-8")
    return png, page_path


@dataclass
class NameResult:
    character_id: int
    name: str
    series: str
    faces: int
    references: int


def name_cluster(sessions: sessionmaker[Session], home: Path, cluster: int, name: str, *,
                 embedder: CharacterEmbedder | FusedEmbedder | None, max_refs: int = 5) -> NameResult:
    """Name a discovered cluster: its faces become appearances of the character and its most
    typical faces (closest to the cluster's centre) become references."""
    from data.video import read_frames_at

    with sessions() as s:
        apps = list(s.scalars(select(Appearance).where(Appearance.cluster == cluster)))
        if not apps:
            raise CastError(f"no cluster {cluster}; run `anirec characters discover SERIES` and "
                            "read the cluster numbers off its contact sheet")
        frame = s.get(Frame, apps[0].frame_id)
        if frame is None:
            raise CastError(f"cluster {cluster} belongs to frames that are no longer indexed")
        ep = s.get(Episode, frame.episode_id)
        assert ep is not None
        series = s.get(Series, ep.series_id)
        assert series is not None
        ch = _get_or_create(s, series.id, name)
        for a in apps:
            a.character_id = ch.id
        vecs = np.stack([bytes_vector(a.embedding) for a in apps if a.embedding is not None])
        centroid = vecs.mean(0)
        ranked = sorted((a for a in apps if a.embedding is not None),
                        key=lambda a: -float(bytes_vector(a.embedding) @ centroid))[:max_refs]
        # cut the reference crops out of the frames they were seen in
        by_ep: dict[str, list[tuple[Appearance, float]]] = {}
        for a in ranked:
            fr = s.get(Frame, a.frame_id)
            e = s.get(Episode, fr.episode_id) if fr is not None else None
            if fr is not None and e is not None:
                by_ep.setdefault(e.path, []).append((a, fr.t))
        n_refs = 0
        for path, items in by_ep.items():
            rgbs = read_frames_at(Path(path), [t for _, t in items])
            for (a, _), rgb in zip(items, rgbs, strict=True):
                crop = crop_face(Image.fromarray(rgb), (a.x0, a.y0, a.x1, a.y1), REF_SPEC)
                _store_reference(s, home, ch, crop, "cluster", embedder, f"cluster-{cluster}-{a.id}")
                n_refs += 1
        s.commit()
        return NameResult(ch.id, ch.name, series.title, len(apps), n_refs)


def list_cast(sessions: sessionmaker[Session], series: str | None = None) -> list[CastEntry]:
    with sessions() as s:
        q = select(Character, Series.title).join(Series, Series.id == Character.series_id)
        if series is not None:
            sid, _ = find_series(sessions, series)
            q = q.where(Character.series_id == sid)
        out: list[CastEntry] = []
        for ch, title in s.execute(q.order_by(Series.title, Character.name)):
            n_app = s.scalar(select(func.count()).select_from(Appearance)
                             .where(Appearance.character_id == ch.id)) or 0
            out.append({"id": ch.id, "series": title, "name": ch.name,
                        "references": len(ch.references), "appearances": n_app})
        return out
