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


# ----------------------------------------------------------------------------------------------
# the bot's naming (core.recognition.characters.character_recognizer, what `characters who`
# and `identify` build) on human-drawn art: references stored by `characters add`'s code
# ----------------------------------------------------------------------------------------------
class AnnotatedHeads:
    """The composed pictures' annotated head boxes as the recognizer's face finder: naming is
    measured apart from detection here (the detector's recall on this art is its own problem,
    bench/results/realart/)."""

    version = "annotated-heads"

    def __init__(self, pictures: list) -> None:
        self.boxes = {id(p.image): [f.box for f in p.faces] for p in pictures}

    def detect(self, image: Image.Image) -> list:
        from core.models.faces import Face

        return [Face(tuple(float(v) for v in b), 1.0) for b in self.boxes[id(image)]]


def _home_with_cast(tmp_path: Path, pictures: list, embedder: object | None, per_character: int = 7) -> object:
    """A real home (SQLite catalog) whose cast is built by `data.cast.add_references` from
    head crops of tuning-background pictures (what an operator gives `characters add`)."""
    from bot.app import App
    from core.config import Settings
    from core.db.models import Series
    from core.models.characters import crop_face
    from data import cast

    app = App.from_settings(Settings(_env_file=None, home=tmp_path / "home"))  # type: ignore[call-arg]
    with app.sessions() as s:
        s.add(Series(title="Ren'Py", folder=None))
        s.commit()
    crops: dict[str, list] = {}
    for k, p in enumerate(pictures):
        if p.split == "tuning":
            for j, f in enumerate(p.faces):
                if len(crops.setdefault(f.character, [])) < per_character:
                    crop = Image.fromarray(crop_face(p.image, f.box, cast.REF_SPEC))
                    crops[f.character].append((f"{k}-{j}.png", crop))
    for who, imgs in crops.items():
        cast.add_references(app.sessions, app.settings.home, "Ren'Py", who, imgs, detector=None,
                            embedder=embedder)  # type: ignore[arg-type]
    return app


def _named(rec: object, pictures: list, left_out: str | None = None) -> tuple[int, int, int]:
    """(faces, named right, named at all) over the held-apart faces (of `left_out` only, with
    that character's references taken out of the cast, when given)."""
    from core.characters import Gallery

    full = rec.gallery  # type: ignore[attr-defined]
    if left_out is not None:
        rec.gallery = Gallery(full.embedder_version,  # type: ignore[attr-defined]
                              {s: [m for m in ms if m.name != left_out] for s, ms in full.by_series.items()})
    n = right = named = 0
    for p in pictures:
        if p.split != "held_apart":
            continue
        hits = rec.recognize(p.image, rec.gallery.all_series(), {})  # type: ignore[attr-defined]
        for h in hits:  # the annotated boxes come back left to right
            truth = next(f.character for f in p.faces if tuple(int(x) for x in f.box) == h.box)
            if left_out is not None and truth != left_out:
                continue
            n += 1
            right += h.name == truth
            named += h.name != "unknown"
    rec.gallery = full  # type: ignore[attr-defined]
    return n, right, named


@pytest.fixture(scope="module")
def many_pictures(spec: dict) -> list:
    return compose_set(games_dir(ART), n=48, seed=5, spec=spec)


def test_the_bots_naming_names_held_apart_sprites_and_calibrates_unknown(
        tmp_path: Path, many_pictures: list) -> None:
    from core.characters import load_floor, write_floor
    from core.models.characters import new_embedder
    from core.recognition.characters import character_recognizer
    from training.bootstrap import gallery_floor

    base = new_embedder()
    app = _home_with_cast(tmp_path, many_pictures, embedder=None)  # vectors made on load
    models = app.settings.models_dir  # type: ignore[attr-defined]
    heads = AnnotatedHeads(many_pictures)
    rec = character_recognizer(app.sessions, models, heads, base)  # type: ignore[attr-defined]
    assert rec is not None and rec.embedder.version == base.version + "+colour1w30"
    assert all(m.vectors.shape[1] == base.dim + DIM for m in rec.gallery.cast(rec.gallery.all_series()))
    # `anirec characters calibrate`: the floor for the naming score, from the gallery alone
    floor, ids, n = gallery_floor(app.sessions, models, rec.embedder, home=app.settings.home)  # type: ignore[attr-defined]
    assert floor is not None and ids == 3 and n >= 20
    write_floor(models, rec.embedder.version, floor)
    assert load_floor(models, rec.embedder).at(5) == pytest.approx(floor, abs=1e-4)
    rec = character_recognizer(app.sessions, models, heads, base)  # type: ignore[attr-defined]
    assert rec is not None and rec.floor.at(5) == pytest.approx(floor, abs=1e-4)
    faces, right, named = _named(rec, many_pictures)
    assert faces >= 20 and right >= 0.85 * faces, (faces, right, named)
    # the embedder alone (the bot's naming before) on the same cast names far fewer right
    old = character_recognizer(app.sessions, models, heads, base, naming=False)  # type: ignore[attr-defined]
    assert old is not None
    _, right_old, _ = _named(old, many_pictures)
    assert right_old < right
    # a character who is not in the cast comes back unknown (most of their faces)
    for who in ("Sylvie", "Eileen"):
        n_who, _, named_who = _named(rec, many_pictures, left_out=who)
        assert n_who >= 4 and named_who <= 0.3 * n_who, (who, n_who, named_who)


def test_an_old_gallery_is_embedded_again_and_its_floor_mapped(tmp_path: Path, many_pictures: list) -> None:
    """References stored for the embedder alone (before 2026-12-03) load for the naming
    descriptor from their stored crops (and are stored again); a floor calibrated for the
    embedder alone is mapped onto the naming score."""
    import json

    from sqlalchemy import select

    from core.characters import FLOOR_FILE
    from core.db.models import CharacterReference
    from core.models.characters import new_embedder
    from core.models.colours import naming_embedder
    from core.recognition.characters import character_recognizer

    base = new_embedder()
    app = _home_with_cast(tmp_path, many_pictures, embedder=base, per_character=3)
    with app.sessions() as s:  # type: ignore[attr-defined]
        refs = list(s.scalars(select(CharacterReference)))
        assert len(refs) == 9 and {r.embedder_version for r in refs} == {base.version}
        old = {r.id: np.frombuffer(r.embedding, np.float32).copy() for r in refs}
    models = app.settings.models_dir  # type: ignore[attr-defined]
    models.mkdir(parents=True, exist_ok=True)
    (models / FLOOR_FILE).write_text(json.dumps({"embedder_version": base.version, "floor": {"1": 0.9, "5": 0.9}}))
    rec = character_recognizer(app.sessions, models, AnnotatedHeads(many_pictures), base)  # type: ignore[attr-defined]
    assert rec is not None and len(rec.gallery) == 3
    fused = naming_embedder(base)
    assert rec.floor.at(5) == pytest.approx(fused.map_floor(0.9)) and rec.floor.at(5) != pytest.approx(0.9)
    with app.sessions() as s:  # type: ignore[attr-defined]
        for r in s.scalars(select(CharacterReference)):
            v = np.frombuffer(r.embedding, np.float32)
            assert r.embedder_version == fused.version and v.shape == (base.dim + DIM,)
            emb_part, col_part = fused.split(v[None])
            np.testing.assert_allclose(emb_part[0], old[r.id], atol=1e-5)  # the same network vector
            assert np.linalg.norm(col_part) == pytest.approx(1.0, abs=1e-4)
    # the old recognizer's path still works on the same gallery (the embedder alone again)
    again = character_recognizer(app.sessions, models, AnnotatedHeads(many_pictures), base, naming=False)  # type: ignore[attr-defined]
    assert again is not None and again.floor.at(5) == pytest.approx(0.9)
