"""Scene training smoke test through the real CLI: trains a few steps on the frame store,
writes a self-contained checkpoint, registers and promotes it, re-embeds the index, and the
recogniser then loads the new model (and refuses nothing)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from sqlalchemy import select

from core.db.models import ModelVersion
from core.index import read_manifest
from core.models.embedder import load_embedder
from training.scene import SceneTrainConfig, get_lr, info_nce


def test_lr_schedule() -> None:
    cfg = SceneTrainConfig(steps=100, warmup=10, lr=1e-3, min_lr=1e-5)
    assert get_lr(0, cfg) == pytest.approx(1e-4)
    assert get_lr(10, cfg) == pytest.approx(1e-3)
    assert get_lr(100, cfg) == pytest.approx(1e-5)
    assert get_lr(55, cfg) < get_lr(20, cfg)


def test_info_nce_masks_twins() -> None:
    a = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    none = torch.zeros(4, 4, dtype=torch.bool)
    twins = none.clone()
    twins[0, 1] = twins[1, 0] = True
    b = a.clone()
    b[1] = a[0]  # a near-identical pair: without the mask it is a hard false negative
    assert info_nce(a, b, twins, 0.1) < info_nce(a, b, none, 0.1)


def test_train_scene_cli(indexed_home: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    from bot.app import App
    from bot.cli import main
    from core.config import Settings

    home = tmp_path / "home"
    shutil.copytree(indexed_home.settings.home, home)  # never touch the shared index
    monkeypatch.setenv("ANIREC_HOME", str(home))
    rc = main(["train", "scene", "--steps", "4", "--promote"])
    assert rc == 0
    out = capsys.readouterr().out
    res = json.loads(out[: out.rindex("}") + 1])
    assert res["promoted"] and res["reembedded_frames"] > 0
    app = App.from_settings(Settings(_env_file=None, home=home))  # type: ignore[call-arg]
    with app.sessions() as s:
        mv = s.scalar(select(ModelVersion).where(ModelVersion.kind == "scene"))
        assert mv is not None and mv.promoted and mv.version == res["version"]
        assert "train_episodes" in mv.metrics and mv.metrics["gate_on"]
    ckpt = home / "models" / mv.path
    model = load_embedder(ckpt)  # rebuilt without the training code
    assert model.version == res["version"] and model.spec.arch == "hybrid-mobilenet_v3_small"
    assert read_manifest(home / "index").embedder_version == res["version"]
    # the recogniser now loads the trained model and its re-embedded index
    from core.recognition import build_recognizer

    rec = build_recognizer(app.sessions, index_dir=home / "index", models_dir=home / "models")
    assert rec.embedder.version == res["version"]


def test_train_series_head_cli(indexed_home: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np

    from bot.app import App
    from bot.cli import main
    from core.config import Settings
    from core.recognition import build_recognizer

    home = tmp_path / "home"
    shutil.copytree(indexed_home.settings.home, home)
    monkeypatch.setenv("ANIREC_HOME", str(home))
    assert main(["train", "series"]) == 0
    out = capsys.readouterr().out
    res = json.loads(out[: out.rindex("}") + 1])
    assert res["promoted"] and 0.0 <= res["series_top1"] <= 1.0
    library_genres = set()
    for meta in indexed_home.library.glob("*/series.json"):
        library_genres |= set(json.loads(meta.read_text()).get("genres", []))
    assert set(res["genres"]) == library_genres  # every genre gets a threshold and P/R/F1
    for m in res["genres"].values():
        assert {"threshold", "precision", "recall", "f1"} <= set(m)
    app = App.from_settings(Settings(_env_file=None, home=home))  # type: ignore[call-arg]
    rec = build_recognizer(app.sessions, index_dir=home / "index", models_dir=home / "models")
    assert rec.series_head is not None and "+series:" in rec.model_version
    v = rec.embedder.embed_arrays(np.zeros((2, 144, 256, 3), np.uint8))
    probs = rec.series_head.predict(v)
    assert set(probs) == set(rec.catalog.series) and sum(probs.values()) == pytest.approx(1.0, abs=1e-4)
    head = rec.series_head
    for name, p in head.genres(v):
        assert p >= head.thresholds[head.genre_names.index(name)]
