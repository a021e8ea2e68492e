"""Labelled faces for training and evaluating the face detector and the character embedder.

The labels come from a ground-truth file in the synthetic generator's format
(`ground_truth.json`: per episode, per frame, the head boxes and who they are). Frames are
decoded in order with PyAV and every `every`-th one is kept (never seeking).

Held-out honesty: `split_episodes` holds out every Nth episode of each series, the same rule
`anirec train scene --holdout-every N` uses, so models are evaluated on episodes they never saw.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from core.errors import AniRecError


class LabelsError(AniRecError):
    """A face-label file is missing, unreadable or does not describe this library."""


@dataclass(frozen=True)
class FaceLabel:
    character: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (x1/y1 exclusive) in frame pixels
    profile: bool = False
    occluded: bool = False


@dataclass
class FaceFrame:
    """One decoded frame of a labelled episode and the faces in it."""

    series: str
    episode: str  # path relative to the library root
    number: int  # episode number
    index: int  # frame index in the episode
    shot: int
    rgb: np.ndarray  # uint8 [H, W, 3]
    faces: list[FaceLabel] = field(default_factory=list)

    @property
    def image(self) -> Image.Image:
        return Image.fromarray(self.rgb)

    def track(self, face: FaceLabel) -> str:
        """A face track: one character within one shot of one episode."""
        return f"{self.episode}#{self.shot}#{face.character}"


def read_labels(path: Path) -> dict[str, Any]:
    """Load a ground-truth file. Raises LabelsError with a clear message."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LabelsError(f"no face labels at {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LabelsError(f"cannot read face labels {path}: {e}") from None
    eps = data.get("episodes") if isinstance(data, dict) else None
    if not isinstance(eps, list) or not all(isinstance(e, dict) and "frames_gt" in e for e in eps):
        raise LabelsError(f"{path} is not a face-label file (expected episodes with frames_gt)")
    return data


def split_episodes(labels: dict[str, Any], holdout_every: int = 3) -> tuple[list[str], list[str]]:
    """(training, held-out) episode paths: every Nth episode of each series is held out."""
    by_series: dict[str, list[dict[str, Any]]] = {}
    for e in labels["episodes"]:
        by_series.setdefault(e["series"], []).append(e)
    train, held = [], []
    for eps in by_series.values():
        eps.sort(key=lambda e: (e.get("season", 1), e.get("episode", 0)))
        for k, e in enumerate(eps):
            if holdout_every and k % holdout_every == holdout_every - 1:
                held.append(e["path"])
            else:
                train.append(e["path"])
    return train, held


def references(root: Path, labels: dict[str, Any]) -> dict[str, dict[str, Path]]:
    """series → character → the reference face image the generator wrote (if present)."""
    rel = "references/{series}/{character}.png"
    out: dict[str, dict[str, Path]] = {}
    for s in labels.get("series", []):
        folder = s.get("folder", s.get("name", ""))
        for c in s.get("characters", []):
            p = root / rel.format(series=folder, character=c["name"])
            if p.exists():
                out.setdefault(s.get("name", folder), {})[c["name"]] = p
    return out


def iter_face_frames(root: Path, labels: dict[str, Any], episodes: list[str] | None = None, *,
                     every: int = 6, offset: int = 0, with_faces_only: bool = False
                     ) -> Iterator[FaceFrame]:
    """Decode the labelled episodes in order and yield every `every`-th frame with its faces.

    `frames_gt[i]` may be null: a frame nobody labelled (harvested pseudo-labels cover only
    some frames) is skipped; a labelled frame with no faces is still a negative."""
    wanted = None if episodes is None else set(episodes)
    for e in labels["episodes"]:
        if wanted is not None and e["path"] not in wanted:
            continue
        gt = e["frames_gt"]
        path = Path(root) / e["path"]
        try:
            container = av.open(str(path))
        except (av.FFmpegError, OSError) as err:
            raise LabelsError(f"cannot decode {path}: {err}") from None
        with container:
            for i, frame in enumerate(container.decode(video=0)):
                if i >= len(gt):
                    break
                if (i - offset) % every or gt[i] is None:  # None: an unlabelled frame
                    continue
                faces = [FaceLabel(f["character"], tuple(int(v) for v in f["box"]),  # type: ignore[arg-type]
                                   bool(f.get("profile")), bool(f.get("occluded")))
                         for f in gt[i]["faces"]]
                if with_faces_only and not faces:
                    continue
                yield FaceFrame(series=e["series"], episode=e["path"], number=int(e.get("episode", 0)),
                                index=i, shot=int(gt[i]["shot"]), rgb=frame.to_ndarray(format="rgb24"),
                                faces=faces)


def library_labels(root: Path) -> Path:
    """The default label file of a library folder (the generator writes it there)."""
    return Path(root) / "ground_truth.json"
