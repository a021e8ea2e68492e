"""Characters: crops, the embedder, training, galleries, clustering, cast building, annotation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from core.characters import CastMember, Gallery, annotate
from core.models.characters import CharacterSpec, crop_face, load_character_embedder, new_embedder, whole_image_crop
from core.recognition import CharacterRecognizer
from core.types import CharacterHit
from data.cast import CastError, cluster_vectors, safe_name
from training.characters import CharacterTrainConfig, FaceSet, identify, supcon, train_characters, tune_floor
from training.facedata import iter_face_frames, read_labels, references, split_episodes


@pytest.fixture(scope="module")
def labelled(sample_library: Path) -> dict[str, Any]:
    labels = read_labels(sample_library / "ground_truth.json")
    train, held = split_episodes(labels, 2)
    faces = FaceSet.from_frames(iter_face_frames(sample_library, labels, train, every=4, with_faces_only=True))
    held_faces = FaceSet.from_frames(iter_face_frames(sample_library, labels, held, every=8, with_faces_only=True))
    return {"labels": labels, "train": train, "held": held, "faces": faces, "held_faces": held_faces}


def test_split_holds_out_every_nth_episode_of_each_series(labelled: dict[str, Any]) -> None:
    train, held = labelled["train"], labelled["held"]
    assert len(held) == 3 and len(train) == 3 and not set(train) & set(held)
    assert all("02" in Path(p).name or "E02" in p for p in held)


def test_crop_face_keeps_scale_at_the_frame_edge() -> None:
    img = Image.new("RGB", (100, 60), (255, 0, 0))
    spec = CharacterSpec(size=32, margin=0.0)
    inside = crop_face(img, (10, 10, 30, 30), spec)
    edge = crop_face(img, (-10, -10, 10, 10), spec)  # three quarters outside the image
    assert inside.shape == edge.shape == (32, 32, 3)
    assert (inside == [255, 0, 0]).all()
    # the visible quarter stays in the bottom-right quarter; the rest is neutral grey
    assert tuple(edge[24, 24]) == (255, 0, 0) and tuple(edge[4, 4]) == (128, 128, 128)
    assert whole_image_crop(Image.new("L", (10, 40), 200), spec).shape == (32, 32, 3)


def test_embedder_round_trip_is_exact(tmp_path: Path) -> None:
    emb = new_embedder(CharacterSpec(width=8, dim=16), seed=1)
    crops = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    v = emb.embed_crops(crops)
    assert v.shape == (3, 16) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    emb.save(tmp_path / "c.pt")
    back = load_character_embedder(tmp_path / "c.pt")
    assert back.spec == emb.spec and np.array_equal(back.embed_crops(crops), v)
    with pytest.raises(ValueError):
        (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
        load_character_embedder(tmp_path / "bad.pt")


def test_supcon_prefers_grouped_embeddings() -> None:
    import torch

    groups = torch.tensor([0, 0, 1, 1])
    good = torch.nn.functional.normalize(torch.tensor([[1.0, 0], [1, 0.1], [0, 1], [0.1, 1]]), dim=1)
    bad = good[[0, 2, 1, 3]]
    assert supcon(good, groups, 0.1) < supcon(bad, groups, 0.1)


def test_identify_is_a_closed_set_with_an_unknown_floor() -> None:
    gallery = {"A": np.array([[1.0, 0, 0]], np.float32), "B": np.array([[0, 1.0, 0]], np.float32)}
    q = np.array([[0.9, 0.1, 0], [0, 0, 1.0]], np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    out = identify(q, gallery, floor=0.5)
    assert out[0][0] == "A" and out[1] == ("unknown", 0.0)
    assert identify(q, {}, floor=0.5) == [("unknown", 0.0), ("unknown", 0.0)]
    assert tune_floor([0.9, 0.8, 0.7, 0.6, 0.95, 0.85, 0.75, 0.65, 0.99, 0.5], []) == 0.5


def test_training_lowers_the_loss_and_resumes(labelled: dict[str, Any], tmp_path: Path) -> None:
    faces = labelled["faces"]
    assert len(faces) > 50 and len(set(faces.names)) >= 6
    cfg = CharacterTrainConfig(steps=24, batch=32, warmup=4, checkpoint_every=12,
                               spec=CharacterSpec(width=8, dim=32).to_dict())
    emb, m = train_characters(faces, cfg, tmp_path / "run")
    h = m["history"]
    assert len(h) == 24 and np.mean(h[-6:]) < np.mean(h[:6])
    assert emb.version.startswith("characters-") and (tmp_path / "run" / "last.pt").exists()
    # resume: a longer run continues from step 24 and keeps the history
    cfg2 = CharacterTrainConfig(**{**cfg.__dict__, "steps": 30})
    _, m2 = train_characters(faces, cfg2, tmp_path / "run", resume=True)
    assert len(m2["history"]) == 30 and m2["history"][:24] == h


def test_cluster_vectors_finds_planted_groups() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(4, 16, dtype=np.float32)
    vecs = np.concatenate([c + 0.05 * rng.standard_normal((n, 16)) for c, n in zip(centres, (9, 6, 4, 1), strict=True)])
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    labels = cluster_vectors(vecs.astype(np.float32), 0.75)
    assert list(np.bincount(labels)) == [9, 6, 4, 1]  # biggest cluster first
    assert len(set(labels[:9])) == 1 and len(set(labels[9:15])) == 1
    assert cluster_vectors(np.zeros((0, 16), np.float32)).shape == (0,)


def test_safe_name_never_makes_a_path() -> None:
    for hostile in ("../../etc/passwd", "a/b\\c", "..", "", "名前 スペース", "x" * 500):
        s = safe_name(hostile)
        assert "/" not in s and "\\" not in s and s not in ("", ".", "..") and len(s) <= 80


class _Boxes:
    """A detector over known boxes (for testing the recognizer's matching logic only)."""

    version = "boxes"

    def __init__(self, boxes: list[tuple[int, int, int, int]]) -> None:
        self.boxes = boxes

    def detect(self, image: Image.Image) -> list[Any]:
        from core.models.faces import Face

        return [Face(b, 0.9) for b in self.boxes]


def _one_face(labelled: dict[str, Any], sample_library: Path) -> tuple[Any, Image.Image, Any, np.ndarray]:
    """A small untrained embedder, a held-out frame, its first face and that face's vector."""
    emb = new_embedder(CharacterSpec(width=8, dim=32), seed=0)
    frame = next(iter_face_frames(sample_library, labelled["labels"], labelled["held"], every=1,
                                  with_faces_only=True))
    img, face = frame.image, frame.faces[0]
    return emb, img, face, emb.embed_faces(img, [face.box])


def test_recognizer_matches_only_the_given_cast_and_says_unknown(labelled: dict[str, Any],
                                                                 sample_library: Path) -> None:
    emb, img, face, v = _one_face(labelled, sample_library)
    gal = Gallery("x", by_series={1: [CastMember(7, face.character, 1, v)],
                                  2: [CastMember(8, "Other", 2, -v)]})
    rec = CharacterRecognizer(_Boxes([face.box]), emb, gal, floor=0.9)
    hit, = rec.recognize(img, [1], {1: "S1"})
    assert hit.name == face.character and hit.series == "S1" and hit.score > 0.99
    assert rec.recognize(img, [2], {2: "S2"})[0].name == "unknown"  # not in this cast
    assert rec.recognize(img, [], {})[0].name == "unknown"  # nothing matched: no cast at all


def test_annotate_draws_boxes_and_names() -> None:
    img = Image.new("RGB", (1600, 900), (255, 255, 255))
    hits = [CharacterHit("Aoi", "S", 0.9, (100, 100, 300, 320)),
            CharacterHit("unknown", None, 0.2, (800, 400, 900, 500))]
    out = annotate(img, hits)
    assert out.size == (960, 540)  # scaled to fit 960 px
    a = np.asarray(out)
    assert (a[60:200, 55:185] != 255).any()  # the first box, scaled by 0.6
    assert (a[60, 100] != [255, 255, 255]).any()
    assert annotate(Image.new("RGBA", (50, 30)), []).mode == "RGB"


def test_references_of_the_generator(sample_library: Path, labelled: dict[str, Any]) -> None:
    refs = references(sample_library, labelled["labels"])
    gt_names = {c["name"] for s in labelled["labels"]["series"] for c in s["characters"]}
    assert {n for cast in refs.values() for n in cast} == gt_names
    assert all(p.suffix == ".png" for cast in refs.values() for p in cast.values())


def test_cast_errors_are_clear(tmp_path: Path) -> None:
    from core.db import open_database
    from data.cast import find_series, name_cluster

    _, sessions = open_database(f"sqlite:///{tmp_path / 'c.db'}")
    with pytest.raises(CastError, match="no series called"):
        find_series(sessions, "Nope")
    with pytest.raises(CastError, match="no cluster 42"):
        name_cluster(sessions, tmp_path, 42, "X", embedder=None)
    assert json.dumps(str(CastError("x")))


def test_no_scene_matched_faces_are_matched_against_every_cast(labelled: dict[str, Any],
                                                               sample_library: Path) -> None:
    from types import SimpleNamespace

    from core.recognition.characters import with_characters
    from core.types import Recognition

    emb, img, face, v = _one_face(labelled, sample_library)
    gal = Gallery("x", by_series={1: [CastMember(7, "Other", 1, -v)], 2: [CastMember(8, face.character, 2, v)]})
    assert gal.all_series() == [1, 2]
    rec = CharacterRecognizer(_Boxes([face.box]), emb, gal, floor=0.9)
    cat = SimpleNamespace(series={1: SimpleNamespace(title="S1"), 2: SimpleNamespace(title="S2")})
    media = SimpleNamespace(frames=[img])
    timings: dict[str, float] = {}
    out = with_characters(Recognition(status="no_match", confidence=0.0), media, cat, rec, timings)  # type: ignore[arg-type]
    hit, = out.characters
    assert (hit.name, hit.series) == (face.character, "S2") and "characters" in timings
    assert hit.to_json()["name"] == face.character
    # below the floor in every cast: unknown, and null in the JSON
    far = CharacterRecognizer(_Boxes([face.box]), emb, Gallery("x", by_series={1: [CastMember(7, "Other", 1, -v)]}),
                              floor=0.9)
    hit, = with_characters(Recognition(status="no_match", confidence=0.0), media, cat, far, {}).characters  # type: ignore[arg-type]
    assert hit.name == "unknown" and hit.to_json()["name"] is None and hit.to_json()["series"] is None


def test_no_match_answer_names_the_characters_on_every_platform(tmp_path: Path) -> None:
    """No scene matched but a face is known: "Characters: Mika" on Discord, Telegram and the
    web; only unknown faces: nothing about characters."""
    from bot.chat.answer import answer_text
    from bot.discord_render import render_answer as discord_answer
    from bot.telegram_render import render_answer as telegram_answer
    from bot.web_render import answer_view
    from core.types import Recognition

    class Tokens:
        def token_for(self, path: object) -> str:
            return "t"

    named = Recognition(status="no_match", confidence=0.0,
                        characters=(CharacterHit("Mika", "Neon Shrine", 0.8, (1, 2, 30, 40)),
                                    CharacterHit("unknown", None, 0.1, (50, 2, 80, 40))))
    nobody = Recognition(status="no_match", confidence=0.0,
                         characters=(CharacterHit("unknown", None, 0.1, (50, 2, 80, 40)),))
    assert answer_text(named).characters == "Mika, 1 unknown" and answer_text(nobody).characters == ""
    assert "Characters: Mika, 1 unknown" in telegram_answer(named)
    assert "Characters" not in telegram_answer(nobody)
    fields = {f.name: f.value for f in discord_answer(named).embed.fields}
    assert fields.get("Characters") == "Mika, 1 unknown"
    assert "Characters" not in {f.name for f in discord_answer(nobody).embed.fields}
    view = answer_view(named, Tokens())  # type: ignore[arg-type]
    assert view["characters"] == ["Mika", "unknown"] and view["characters_text"] == "Mika, 1 unknown"
    assert answer_view(nobody, Tokens())["characters"] == []  # type: ignore[arg-type]
