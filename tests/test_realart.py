"""The real-art check's composition (data.realart) on the Ren'Py art shipped with the tests,
the colour descriptor that names those characters without any learning, the floor calibrated
from a gallery alone, and the naming measure (training.eval_realart)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.characters import calibrate_floor, impostor_scores
from core.models.colours import DIM, FusedEmbedder, colour_descriptor, colour_descriptors
from data.realart import RealArtError, compose_set, games_dir, load_sprites, read_spec
from training import eval_realart as ev

ART = Path(__file__).parent / "data" / "renpy"


@pytest.fixture(scope="module")
def spec() -> dict:
    return read_spec(ART / "sprites.json")


@pytest.fixture(scope="module")
def pictures(spec: dict) -> list:
    return compose_set(games_dir(ART), n=36, seed=3, spec=spec)


def test_licence_ships_next_to_the_art() -> None:
    text = (ART / "LICENSE").read_text()
    assert "Tom Rothamel" in text and "Permission is hereby granted, free of charge" in text
    assert "Expat" in (ART / "README.md").read_text()


def test_missing_art_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RealArtError, match="apt-get download renpy-thequestion"):
        games_dir(tmp_path)
    (tmp_path / "demo").mkdir()
    with pytest.raises(RealArtError, match="none of the annotated sprites"):
        load_sprites(tmp_path, read_spec(ART / "sprites.json"))


def test_composition_is_deterministic_and_keeps_the_faces_in_the_picture(spec: dict, pictures: list) -> None:
    again = compose_set(games_dir(ART), n=6, seed=3, spec=spec)
    for a, b in zip(again, pictures[:6], strict=True):
        assert a.to_json() == b.to_json()
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert {p.split for p in pictures} == {"tuning", "held_apart"}
    for p in pictures:
        assert p.background in spec["backgrounds"][p.split]
        w, h = p.image.size
        assert 1 <= len(p.faces) <= 3
        for f in p.faces:
            x0, y0, x1, y1 = f.box
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    assert len({f.character for p in pictures for f in p.faces}) == 3
    assert len({p.image.size for p in pictures}) > 3 and len({p.encoding for p in pictures}) > 3


def test_the_box_lands_on_the_sprites_head(spec: dict, pictures: list) -> None:
    """The composed box shows the same head as the annotated sprite box: its colours match
    that sprite's head far better than another character's."""
    sprites = {s.file: s for s in load_sprites(games_dir(ART), spec)}

    def head(file: str) -> np.ndarray:
        s = sprites[file]
        flat = Image.new("RGB", s.image.size, (128, 128, 128))
        flat.paste(s.image, (0, 0), s.image)
        return colour_descriptor(flat, s.box)

    heads = {f: head(f) for f in sprites}
    right = wrong = 0
    for p in pictures:
        for f in p.faces:
            d = colour_descriptor(p.image, f.box)
            own = float(d @ heads[f.sprite])
            best_other = max(float(d @ v) for k, v in heads.items() if sprites[k].character != f.character)
            right += own > best_other
            wrong += own <= best_other
    assert right >= 0.9 * (right + wrong), (right, wrong)


def test_colour_descriptor_names_human_drawn_characters(pictures: list) -> None:
    vecs, names, splits, pics = ev.face_table(pictures, colour_descriptors)
    assert vecs.shape[1] == DIM and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    refs = ev.pick_references(names, splits, pics, shots=3)
    assert all(len(v) == 3 and all(splits[i] == "tuning" for i in v) for v in refs.values())
    held = [i for i, s in enumerate(splits) if s == "held_apart"]
    cast = ev.reference_vectors(vecs, refs)
    r = ev.naming(vecs, names, cast, held, floor=0.0)
    assert r["queries"] == len(held) and r["top1"] >= 0.85, r
    assert r["open_set_confident_wrong"] == 1.0  # floor 0: every left-out face still gets a name
    r1 = ev.naming(vecs, names, cast, held, floor=1.01)
    assert r1["confident_wrong"] == r1["named_right"] == 0.0 and r1["said_unknown"] == 1.0


def test_floor_from_the_gallery_alone_holds_wrong_names_down() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 16))
    cast = {}
    for k, c in enumerate(centres):
        v = c + 0.35 * rng.normal(size=(8, 16))
        cast[k] = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    sc = impostor_scores(cast)
    assert len(sc) == 48
    floor = calibrate_floor(cast)
    assert floor is not None and float(np.mean(sc >= floor)) <= 0.05 + 1e-9
    assert calibrate_floor({0: cast[0]}) is None  # one character: nothing to calibrate against
    # new faces of a character left out of the gallery: few clear the floor
    v = centres[0] + 0.35 * rng.normal(size=(200, 16))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    rest = np.vstack([cast[k] for k in range(1, 6)])
    assert float(np.mean((v @ rest.T).max(1) >= floor)) <= 0.1


def test_fused_embedder_mixes_the_two_similarities(pictures: list) -> None:
    from core.models.characters import new_embedder

    emb = new_embedder()
    fused = FusedEmbedder(emb, weight=0.3)
    p = next(p for p in pictures if len(p.faces) >= 2)
    boxes = [f.box for f in p.faces]
    a, e, c = fused.embed_faces(p.image, boxes), emb.embed_faces(p.image, boxes), colour_descriptors(p.image, boxes)
    assert a.shape == (len(boxes), emb.dim + DIM)
    np.testing.assert_allclose(a @ a.T, 0.3 * (e @ e.T) + 0.7 * (c @ c.T), atol=1e-5)
    assert fused.version.startswith(emb.version + "+colour")
    ref = fused.embed_reference(p.image.crop(boxes[0]))
    assert ref.shape == (emb.dim + DIM,)
