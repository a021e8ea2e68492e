"""The character step: faces in the query, matched against the cast of the matched series
(or, when unsure, of the top candidates' series), with a bonus for who appears in the
matched shot; below the similarity floor a face is "unknown" rather than the nearest name.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from core.catalog import Catalog
from core.characters import Floor, Gallery, load_floor, load_gallery
from core.media import Media
from core.models.faces import Face
from core.types import CharacterHit, Recognition

if TYPE_CHECKING:
    from core.models.characters import CharacterEmbedder
    from core.models.colours import FusedEmbedder

logger = logging.getLogger(__name__)


class FaceFinder(Protocol):
    """A face detector (core.models.faces.FaceDetector)."""

    version: str

    def detect(self, image: Image.Image) -> Sequence[Face]: ...


class FaceEmbedder(Protocol):
    """A character embedder (core.models.characters.CharacterEmbedder, or the naming
    descriptor core.models.colours.FusedEmbedder)."""

    @property
    def version(self) -> str: ...

    def embed_faces(self, image: Image.Image, boxes: Sequence[Sequence[float]]) -> np.ndarray: ...


@dataclass
class CharacterRecognizer:
    """Face detector + character embedder + gallery."""

    detector: FaceFinder  # core.models.faces.FaceDetector
    embedder: FaceEmbedder  # core.models.characters.CharacterEmbedder
    gallery: Gallery
    floor: Floor = field(default_factory=Floor)
    max_faces: int = 8  # faces identified per query (the largest / most confident first)
    shot_bonus: float = 0.05  # similarity bonus for characters known to appear in the matched shot

    def __post_init__(self) -> None:
        self.floor = Floor.of(self.floor)  # a plain number works too

    @property
    def version(self) -> str:
        return f"{self.detector.version}+{self.embedder.version}"

    def recognize(self, image: Image.Image, series_ids: Sequence[int], series_titles: dict[int, str],
                  shot_ids: Sequence[int] = ()) -> list[CharacterHit]:
        """Faces in `image` and who they are among the cast of `series_ids` (in order of trust)."""
        faces = self.detector.detect(image)[: self.max_faces]
        if not faces:
            return []
        vecs = self.embedder.embed_faces(image, [f.box for f in faces])
        cast = self.gallery.cast(series_ids)
        in_shot: set[int] = set()
        for sid in shot_ids:
            in_shot |= self.gallery.shot_cast.get(int(sid), set())
        hits = []
        for face, v in zip(faces, vecs, strict=True):
            x0, y0, x1, y1 = (int(x) for x in face.box)
            box = (x0, y0, x1, y1)
            best, best_sim = None, -1.0
            for m in cast:
                sim = float((m.vectors @ v).max()) + (self.shot_bonus if m.character_id in in_shot else 0.0)
                if sim > best_sim:
                    best, best_sim = m, sim
            if best is not None and best_sim >= self.floor.at(len(best.vectors)):
                hits.append(CharacterHit(name=best.name, series=series_titles.get(best.series_id),
                                         score=min(1.0, best_sim), box=box))
            else:
                hits.append(CharacterHit(name="unknown", series=None, score=max(0.0, best_sim), box=box))
        hits.sort(key=lambda h: h.box[0])  # left to right, as people read the picture
        return hits


def with_characters(rec: Recognition, media: Media, cat: Catalog,
                    characters: CharacterRecognizer, timings: dict[str, float]) -> Recognition:
    """Faces in the (first) query frame, matched against the cast of the matched series (or,
    when unsure, of the top candidates' series, at most three), with a bonus for who appears
    in the matched shot. No scene matched (fan art, a sticker, an episode not in the library):
    against every cast, open set — below the floor a face stays "unknown"."""
    t0 = time.perf_counter()
    # a confident match: its series' cast only; unsure: the casts of up to three series
    series_ids = list(dict.fromkeys(c.series.id for c in rec.candidates[:5]))[:3]
    if rec.status == "match":
        series_ids = series_ids[:1]
    elif rec.status == "no_match":
        series_ids = characters.gallery.all_series()
    shots: list[int] = []
    if rec.candidates and rec.status != "no_match":
        best = rec.candidates[0]
        sl = cat.window(best.episode_id, best.time - 0.5, best.time + 0.5)
        shots = sorted({int(x) for x in cat.shot[sl] if x >= 0})
    titles = {sid: info.title for sid, info in cat.series.items()}
    hits = characters.recognize(media.frames[0], series_ids, titles, shots)
    timings["characters"] = (time.perf_counter() - t0) * 1000
    return replace(rec, characters=tuple(hits))


def build_character_recognizer(sessions: sessionmaker[Session], models_dir: Path
                               ) -> CharacterRecognizer | None:
    """Face detector + the naming descriptor (the character embedder fused with the colour
    descriptor, `core.models.colours.naming_embedder`) + the cast gallery, or None while any is
    missing (characters are then simply left out of answers)."""
    from core.models.registry import load_character_embedder, load_face_detector

    detector = load_face_detector(sessions, models_dir)
    embedder = load_character_embedder(sessions, models_dir) if detector is not None else None
    if detector is None or embedder is None:
        return None
    return character_recognizer(sessions, models_dir, detector, embedder)


def character_recognizer(sessions: sessionmaker[Session], models_dir: Path, detector: FaceFinder,
                         embedder: CharacterEmbedder, *, naming: bool = True) -> CharacterRecognizer | None:
    """The recognizer the bot runs for these models: the embedder wrapped as the naming
    descriptor (`naming=False`: the embedder alone, as before 2026-12-03; the real-art bench's
    "before"), the gallery re-embedded for it where needed, the floor for its score."""
    from core.models.colours import naming_embedder

    emb: CharacterEmbedder | FusedEmbedder = naming_embedder(embedder) if naming else embedder
    gallery = load_gallery(sessions, emb, home=models_dir.parent)
    if not len(gallery):
        logger.info("characters: no cast yet (`anirec characters add` / `discover`); faces are off")
        return None
    return CharacterRecognizer(detector=detector, embedder=emb, gallery=gallery, floor=load_floor(models_dir, emb))
