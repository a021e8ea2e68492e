"""The face detector: training on real labelled frames, checkpoints, resume, matching and metrics."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from core.models.faces import Face, FaceDetector, load_face_detector
from training.facedata import FaceFrame, FaceLabel, iter_face_frames, library_labels, read_labels, split_episodes
from training.faces import (
    Matches,
    TrainConfig,
    augment,
    box_iou,
    evaluate_detector,
    get_lr,
    make_targets,
    match_detections,
    train_face_detector,
    tune_threshold,
)

TINY = TrainConfig(steps=40, batch=4, crop=(128, 160), lr=3e-3, warmup=5, eval_interval=20, eval_frames=8,
                   input_long=320)


@pytest.fixture(scope="module")
def frames(sample_library: Path) -> dict[str, list[FaceFrame]]:
    labels = read_labels(library_labels(sample_library))
    train_eps, held_eps = split_episodes(labels, 2)
    train = list(iter_face_frames(sample_library, labels, train_eps, every=8))
    held = list(iter_face_frames(sample_library, labels, held_eps, every=16, with_faces_only=True))
    return {"train": train, "val": train[1::6], "held": held[:12]}


@pytest.fixture(scope="module")
def trained(frames: dict[str, list[FaceFrame]], tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[FaceDetector, dict[str, Any], list[float], Path]:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("faces")
    losses: list[float] = []
    det, metrics = train_face_detector(frames["train"], frames["val"], TINY, out,
                                       progress=lambda step, loss, m: losses.append(loss))
    return det, metrics, losses, out


def _valid(faces: list[Face], size: tuple[int, int]) -> None:
    w, h = size
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)
    for f in faces:
        x0, y0, x1, y1 = f.box
        assert all(isinstance(v, int) for v in f.box)
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        assert 0.0 <= f.score <= 1.0


def test_training_lowers_the_loss_and_checkpoints(trained: Any, frames: dict[str, list[FaceFrame]]) -> None:
    det, metrics, losses, out = trained
    assert len(losses) == TINY.steps
    assert losses[-1] < 0.8 * max(losses[:10]), losses  # the loss EMA falls from its early peak
    assert (out / "ckpt.pt").exists()
    assert metrics["steps"] == TINY.steps and [h["step"] for h in metrics["history"]] == [20, 40]
    assert det.version.startswith("faces-") and 0.0 < det.threshold < 1.0
    assert {"precision", "recall", "f1", "ap"} <= set(metrics["val"])
    img = frames["held"][0].image
    _valid(det.detect(img, threshold=0.01), img.size)


def test_save_load_round_trip(trained: Any, frames: dict[str, list[FaceFrame]], tmp_path: Path) -> None:
    det = trained[0]
    path = tmp_path / "faces.pt"
    det.save(path)
    ck = torch.load(path, map_location="cpu", weights_only=True)  # plain content only
    assert ck["kind"] == "faces" and ck["spec"]["input_long"] == 320
    back = load_face_detector(path)
    assert (back.version, back.threshold, back.spec) == (det.version, det.threshold, det.spec)
    assert back.metrics["steps"] == det.metrics["steps"]
    for f in frames["held"][:4]:
        a, b = det.detect(f.image, threshold=0.01), back.detect(f.image, threshold=0.01)
        assert a == b


def test_not_a_checkpoint(tmp_path: Path) -> None:
    torch.save({"kind": "series"}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not a face detector"):
        load_face_detector(tmp_path / "x.pt")


@pytest.mark.parametrize("make", [
    lambda: Image.new("RGB", (1, 1)),
    lambda: Image.new("RGBA", (200, 120), (10, 200, 30, 128)),
    lambda: Image.new("L", (97, 301), 128),
    lambda: Image.new("P", (64, 64)),
    lambda: Image.new("RGB", (2000, 7), (255, 255, 255)),
    lambda: Image.fromarray(np.random.default_rng(0).integers(0, 255, (333, 517, 3), dtype=np.uint8)),
])
def test_odd_images_do_not_crash(trained: Any, make: Any) -> None:
    img = make()
    faces = trained[0].detect(img, threshold=0.0)
    _valid(faces, img.size)
    assert len(faces) <= trained[0].spec.max_faces


def test_resume_continues_from_the_checkpoint(frames: dict[str, list[FaceFrame]], tmp_path: Path) -> None:
    torch.set_num_threads(1)
    cfg = replace(TINY, steps=8, eval_interval=4, eval_frames=2)

    class Stop(Exception):
        pass

    def stop_at_5(step: int, loss: float, m: dict[str, Any]) -> None:
        if step == 5:
            raise Stop

    with pytest.raises(Stop):
        train_face_detector(frames["train"], frames["val"][:2], cfg, tmp_path, progress=stop_at_5)
    assert torch.load(tmp_path / "ckpt.pt", weights_only=False)["step"] == 4
    steps: list[int] = []
    det, metrics = train_face_detector(frames["train"], frames["val"][:2], cfg, tmp_path, resume=True,
                                       progress=lambda step, loss, m: steps.append(step))
    assert steps == [5, 6, 7, 8]
    assert [h["step"] for h in metrics["history"]] == [4, 8]


def test_get_lr_warms_up_then_decays() -> None:
    cfg = TrainConfig(steps=100, warmup=10, lr=1e-2, min_lr=1e-4)
    lrs = [get_lr(i, cfg) for i in range(120)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[9] == pytest.approx(1e-2)
    assert all(a >= b for a, b in zip(lrs[10:100], lrs[11:101], strict=True))
    assert lrs[119] == cfg.min_lr


def test_box_iou_and_greedy_matching() -> None:
    gt = np.array([[0, 0, 10, 10], [20, 0, 30, 10]])
    assert box_iou(gt[:1], np.array([[5, 0, 15, 10]]))[0, 0] == pytest.approx(50 / 150)
    boxes = np.array([[0, 0, 10, 10],    # exact: gt 0
                      [1, 0, 11, 10],    # duplicate of gt 0 (lower score) -> false positive
                      [20, 0, 30, 11],   # gt 1
                      [50, 50, 60, 60]])  # nothing
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    det_gt, gt_score = match_detections(boxes, scores, gt)
    assert det_gt.tolist() == [0, -1, 1, -1]
    assert gt_score.tolist() == [0.9, 0.7]
    # the higher-scoring duplicate takes the box even if the other overlaps more
    det_gt, _ = match_detections(np.array([[1, 0, 11, 10], [0, 0, 10, 10]]), np.array([0.9, 0.5]), gt[:1])
    assert det_gt.tolist() == [0, -1]
    assert match_detections(np.zeros((0, 4)), np.zeros(0), gt)[1].tolist() == [-1, -1]


def test_precision_recall_and_ap_by_hand() -> None:
    # 4 faces; detections by score: TP .9, FP .8, TP .6, TP .3 ; one face never found
    m = Matches(det_scores=np.array([0.9, 0.8, 0.6, 0.3]), det_tp=np.array([True, False, True, True]),
                gt_scores=np.array([0.9, 0.6, 0.3, -1.0]), gt_small=np.array([True, False, False, True]),
                gt_profile=np.array([False, True, False, False]), gt_occluded=np.zeros(4, bool))
    at5 = m.at(0.5)
    assert (at5["tp"], at5["fp"], at5["fn"]) == (2, 1, 2)
    assert at5["precision"] == pytest.approx(2 / 3) and at5["recall"] == pytest.approx(0.5)
    assert at5["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    kinds = m.category_recall(0.5)
    assert kinds["small"] == 0.5 and kinds["profile"] == 1.0 and kinds["occluded"] is None
    # AP: recall steps .25 (p 1), .5 (p 2/3), .75 (p 3/4) -> .25*1 + .25*.75 + .25*.75
    assert m.average_precision() == pytest.approx(0.25 + 0.25 * 0.75 + 0.25 * 0.75)


def test_evaluate_on_real_frames(trained: Any, frames: dict[str, list[FaceFrame]]) -> None:
    det = trained[0]
    ev = evaluate_detector(det, frames["held"], latency_samples=3)
    assert ev["faces"] == sum(len(f.faces) for f in frames["held"]) > 0
    assert ev["tp"] + ev["fn"] == ev["faces"]
    assert 0.0 <= ev["precision"] <= 1.0 and 0.0 <= ev["recall"] <= 1.0 and 0.0 <= ev["ap"] <= 1.0
    recalls = [s["recall"] for s in ev["sweep"]]
    assert all(a >= b for a, b in zip(recalls, recalls[1:], strict=False))
    assert ev["latency"]["images"] == 3 and ev["latency"]["width"] == 640
    t = tune_threshold(det, frames["held"])
    assert 0.0 < t <= 1.0


def test_perfect_detections_score_perfectly(frames: dict[str, list[FaceFrame]]) -> None:
    """A frame whose detections are its own labels: P = R = AP = 1, exactly."""
    f = frames["held"][0]
    gt = np.array([x.box for x in f.faces], float)
    det_gt, gt_score = match_detections(gt, np.ones(len(gt)), gt)
    assert det_gt.tolist() == list(range(len(gt))) and (gt_score == 1).all()


def test_augment_keeps_boxes_in_the_crop(frames: dict[str, list[FaceFrame]]) -> None:
    rng = random.Random(0)
    seen = 0
    for f in frames["train"][:40]:
        boxes = np.array([x.box for x in f.faces], np.float32).reshape(-1, 4)
        s = augment(f.rgb, boxes, rng, (128, 160))
        assert s.rgb.shape == (128, 160, 3) and s.rgb.dtype == np.uint8
        if len(s.boxes):
            seen += 1
            assert (s.boxes[:, [0, 2]] >= 0).all() and (s.boxes[:, [0, 2]] <= 160).all()
            assert (s.boxes[:, [1, 3]] >= 0).all() and (s.boxes[:, [1, 3]] <= 128).all()
            assert (s.boxes[:, 2] > s.boxes[:, 0]).all() and (s.boxes[:, 3] > s.boxes[:, 1]).all()
    assert seen > 5


def test_targets_put_the_centre_in_the_right_cell() -> None:
    heat, size, offset, regw, negw = make_targets(np.array([[10, 20, 30, 60]], np.float32),
                                                  np.array([[80, 0, 100, 20]], np.float32), (64, 128))
    assert heat.shape == (16, 32) and heat.max() == 1.0 and (heat == 1).sum() == 1
    iy, ix = np.unravel_index(heat.argmax(), heat.shape)
    assert (ix, iy) == (5, 10)
    assert regw.sum() == pytest.approx(1.0) and regw.argmax() == heat.argmax()
    core = regw > 0
    assert core.sum() > 1  # dense supervision around the centre
    assert size[:, core] == pytest.approx(np.log([[5.0], [10.0]]) * np.ones((1, core.sum())))
    assert offset[:, iy, ix] == pytest.approx([0.0, 0.0])
    heat2, _, offset2, _, _ = make_targets(np.array([[10, 20, 31, 63]], np.float32), np.zeros((0, 4)), (64, 128))
    assert offset2[:, 10, 5] == pytest.approx([0.125, 0.375]) and np.abs(offset2).sum() == pytest.approx(0.5)
    assert negw[0:5, 20:25].sum() == 0 and negw[iy, ix] == 1


def test_labels_of_a_library(sample_library: Path) -> None:
    labels = read_labels(library_labels(sample_library))
    f = next(iter_face_frames(sample_library, labels, every=50, with_faces_only=True))
    assert f.faces and isinstance(f.faces[0], FaceLabel)
