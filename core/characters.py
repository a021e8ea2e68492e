"""The cast the character step matches faces against: each series' `characters` rows with
their reference vectors (`character_references`: images the operator added, or faces of a
cluster they named), the similarity floors below which a face is "unknown", and the annotated
still (faces boxed and named). The matching itself is `core.recognition.characters`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.db.models import Appearance, Character
from core.types import CharacterHit

if TYPE_CHECKING:
    from core.models.characters import CharacterEmbedder
    from core.models.colours import FusedEmbedder

logger = logging.getLogger(__name__)

DEFAULT_FLOOR = 0.55  # cosine similarity below which a face is "unknown" (tuned by `anirec eval characters`)


def vector_bytes(v: np.ndarray) -> bytes:
    return np.asarray(v, np.float32).tobytes()


def bytes_vector(b: bytes) -> np.ndarray:
    return np.frombuffer(b, np.float32)


@dataclass
class CastMember:
    character_id: int
    name: str
    series_id: int
    vectors: np.ndarray  # [k, dim] reference vectors


@dataclass
class Gallery:
    """Reference vectors of every character, by series (for one embedder version)."""

    embedder_version: str
    by_series: dict[int, list[CastMember]] = field(default_factory=dict)
    shot_cast: dict[int, set[int]] = field(default_factory=dict)  # shot id → character ids seen there

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_series.values())

    def all_series(self) -> list[int]:
        """Every series with a cast (for a face with no scene to go by)."""
        return sorted(self.by_series)

    def cast(self, series_ids: Sequence[int]) -> list[CastMember]:
        out: list[CastMember] = []
        for sid in dict.fromkeys(series_ids):
            out.extend(self.by_series.get(sid, []))
        return out


def load_gallery(sessions: sessionmaker[Session], embedder: CharacterEmbedder | FusedEmbedder,
                 home: Path | None = None) -> Gallery:
    """Read every character's references; references embedded by another embedder version are
    re-embedded from their image (and the new vector is stored). A gallery embedded before the
    bot named with the colour descriptor (`core.models.colours.naming_embedder`) is re-embedded
    this way once, on the first load, from the reference crops it keeps."""
    gal = Gallery(embedder_version=embedder.version)
    with sessions() as s:
        for ch in s.scalars(select(Character).order_by(Character.series_id, Character.id)):
            vecs = []
            for ref in ch.references:
                if ref.embedding is not None and ref.embedder_version == embedder.version:
                    vecs.append(bytes_vector(ref.embedding))
                    continue
                path = Path(ref.image_path) if ref.image_path else None
                if path is not None and not path.is_absolute() and home is not None:
                    path = home / path
                if path is None or not path.exists():
                    logger.warning("reference %d of %s has no image to re-embed; skipped", ref.id, ch.name)
                    continue
                with Image.open(path) as im:
                    v = embedder.embed_reference(im)
                ref.embedding, ref.embedder_version = vector_bytes(v), embedder.version
                vecs.append(v)
            if vecs:
                gal.by_series.setdefault(ch.series_id, []).append(
                    CastMember(ch.id, ch.name, ch.series_id, np.stack(vecs).astype(np.float32)))
        s.commit()
        for sid, cid in s.execute(select(Appearance.shot_id, Appearance.character_id)
                                  .where(Appearance.character_id.is_not(None), Appearance.shot_id.is_not(None))
                                  .distinct()):
            if sid is not None and cid is not None:  # always, by the query; narrows the types
                gal.shot_cast.setdefault(int(sid), set()).add(int(cid))
    return gal


@dataclass(frozen=True)
class Floor:
    """Similarity floors below which a face is "unknown": one for a character known from a
    single reference, one for five or more (interpolated in between) — one reference is a
    narrower target than five, so its matches score lower."""

    one: float = DEFAULT_FLOOR
    five: float = DEFAULT_FLOOR

    def at(self, n_refs: int) -> float:
        if n_refs <= 1:
            return self.one
        if n_refs >= 5:
            return self.five
        return self.one + (self.five - self.one) * (n_refs - 1) / 4

    @classmethod
    def of(cls, value: Floor | float | dict[str, float]) -> Floor:
        """From a number, or a {"1": ..., "5": ...} mapping (checkpoint metrics, JSON)."""
        if isinstance(value, Floor):
            return value
        if isinstance(value, dict):
            return cls(float(value["1"]), float(value["5"]))
        return cls(float(value), float(value))


FLOOR_FILE = "characters-floor.json"
MAX_WRONG = 0.05  # the share of faces of a character not in the cast that may still get a name


def impostor_scores(cast: Mapping[Any, np.ndarray]) -> np.ndarray:
    """For every reference vector, its best similarity to any *other* character's references:
    how a face of someone who is not in the cast scores against the cast."""
    keys = list(cast)
    out = []
    for k in keys:
        others = [cast[o] for o in keys if o != k and len(cast[o])]
        if not others or not len(cast[k]):
            continue
        out.append((cast[k] @ np.vstack(others).T).max(1))
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def calibrate_floor(cast: Mapping[Any, np.ndarray], max_wrong: float = MAX_WRONG, minimum: float = 0.0
                    ) -> float | None:
    """The similarity floor above which at most `max_wrong` of the impostor scores lie (the
    operator's own gallery, every series, as the measure of "someone else"); None with fewer
    than two characters or 20 scores to go by."""
    sc = impostor_scores(cast)
    if len(cast) < 2 or len(sc) < 20:
        return None
    k = int(np.floor(max_wrong * len(sc)))  # impostor scores that may stay at or above the floor
    return max(minimum, float(np.sort(sc)[::-1][k]) + 1e-6)


def write_floor(models_dir: Path, embedder_version: str, floor: float, **about: object) -> Path:
    """The operator's floor file (`load_floor` reads it for this embedder version)."""
    import json

    p = models_dir / FLOOR_FILE
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"embedder_version": embedder_version,
                             "floor": {"1": round(floor, 4), "5": round(floor, 4)}, **about}, indent=1))
    return p


def load_floor(models_dir: Path, embedder: CharacterEmbedder | FusedEmbedder) -> Floor:
    """The unknown-face floors: an operator's override in `models/characters-floor.json`
    (`{"embedder_version": ..., "floor": {"1": .., "5": ..}}`) for this embedder version, else
    the ones measured on held-out shots at training time, else the default. For the naming
    embedder (embedder + colour), a file calibrated on the embedder alone is mapped onto the
    fused score (`FusedEmbedder.map_floor`)."""
    import json

    try:
        d = json.loads((models_dir / FLOOR_FILE).read_text())
        if d.get("embedder_version") == embedder.version:
            return Floor.of(d["floor"])
        from core.models.colours import FusedEmbedder

        if isinstance(embedder, FusedEmbedder) and d.get("embedder_version") == embedder.embedder.version:
            # calibrated before naming fused the colour descriptor in: mapped onto the fused score
            f = Floor.of(d["floor"])
            logger.info("characters: the unknown floor in %s was calibrated on the embedder alone; using it "
                        "mapped onto the naming score until `anirec characters calibrate` runs again", FLOOR_FILE)
            return Floor(embedder.map_floor(f.one), embedder.map_floor(f.five))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return Floor.of(embedder.metrics.get("floors", embedder.metrics.get("floor", DEFAULT_FLOOR)))


# ----------------------------------------------------------------------------------------------
# the annotated still
# ----------------------------------------------------------------------------------------------
PALETTE = [(255, 82, 82), (64, 196, 255), (255, 214, 0), (105, 240, 174), (224, 64, 251),
           (255, 145, 0), (83, 109, 254), (29, 233, 182)]


def label_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for name in ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def annotate(image: Image.Image, hits: Sequence[CharacterHit], max_side: int = 960) -> Image.Image:
    """The query image with a box and a name tag on every face (scaled down to `max_side`)."""
    img = image.convert("RGB")
    scale = min(1.0, max_side / max(img.size))
    if scale < 1.0:
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.LANCZOS)
    draw = ImageDraw.Draw(img)
    font = label_font(max(11, round(min(img.size) / 22)))
    lw = max(2, round(min(img.size) / 200))
    for k, h in enumerate(hits):
        col = (200, 200, 200) if h.name == "unknown" else PALETTE[k % len(PALETTE)]
        x0, y0, x1, y1 = (v * scale for v in h.box)
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=col, width=lw)
        label = "?" if h.name == "unknown" else h.name
        tb = draw.textbbox((0, 0), label, font=font)
        tw, th = tb[2] - tb[0] + 6, tb[3] - tb[1] + 6
        ty = y0 - th if y0 - th >= 0 else min(img.height - th, y1)
        tx = max(0, min(x0, img.width - tw))
        draw.rectangle((tx, ty, tx + tw, ty + th), fill=col)
        draw.text((tx + 3 - tb[0], ty + 3 - tb[1]), label, fill=(0, 0, 0), font=font)
    return img
