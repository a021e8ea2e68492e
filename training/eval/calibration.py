"""Confidence calibration: fitting `Calibration` (logistic regression on the recognizer's match
features) to right/wrong labels, expected calibration error and the reliability bins."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.recognition import Calibration
from training.eval.metrics import JSONObject, rnd


@dataclass(frozen=True)
class CalibrationParams:
    """How the evaluation fits and measures the calibration."""

    ece_bins: int = 10  # equal-width confidence bins of the ECE and the reliability diagram
    seed_offset: int = 7919  # the calibration set's seed differs from the evaluation's by this
    l2: float = 1e-2  # ridge term of the logistic fit


CALIBRATION = CalibrationParams()


def fit_calibration(features: Sequence[tuple[float, ...]], right: Sequence[bool],
                    *, name: str) -> Calibration:
    """Fit `Calibration` (logistic regression on [1, score, margin, agree, check, detail]) to
    right/wrong labels.

    Frame agreement is a feature only when the set lets it be one: when it never varies (no
    clip disagreed) it is collinear with the bias, and a fitted weight saying "disagreeing
    frames make an answer more likely right" is noise; both cases refit without it (weight 0).
    The same holds for the colour and detail checks: a better fit must never lower the
    confidence.
    """
    x = np.asarray([Calibration().features(*f) for f in features], np.float64)
    y = np.asarray(right, np.float64)
    cal = Calibration.fit(x, y, l2=CALIBRATION.l2, name=name)
    for col, weight in ((3, "w_frames"), (4, "w_check"), (5, "w_detail")):
        if np.ptp(x[:, col]) < 1e-9 or getattr(cal, weight) < 0:
            x[:, col] = 0.0  # its weight then stays 0 (only the ridge term acts on it)
            cal = Calibration.fit(x, y, l2=CALIBRATION.l2, name=name)
    return cal


def expected_calibration_error(conf: Sequence[float], correct: Sequence[bool],
                               bins: int = CALIBRATION.ece_bins) -> float:
    """ECE with `bins` equal-width confidence bins: Σ |accuracy - mean confidence| · share."""
    c = np.asarray(conf, np.float64)
    y = np.asarray(correct, np.float64)
    if c.size == 0:
        return 0.0
    idx = np.minimum((c * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            ece += abs(y[m].mean() - c[m].mean()) * m.sum() / c.size
    return float(ece)


@dataclass(frozen=True)
class ReliabilityBin:
    lo: float
    hi: float
    n: int
    confidence: float | None  # mean confidence in the bin (None: empty bin)
    accuracy: float | None

    def to_json(self) -> JSONObject:
        return {"bin": [self.lo, self.hi], "n": self.n, "confidence": self.confidence,
                "accuracy": self.accuracy}


def reliability(conf: Sequence[float], correct: Sequence[bool], bins: int = CALIBRATION.ece_bins
                ) -> list[ReliabilityBin]:
    """Mean confidence and accuracy per equal-width confidence bin."""
    c = np.asarray(conf, np.float64)
    y = np.asarray(correct, np.float64)
    idx = np.minimum((c * bins).astype(int), bins - 1) if c.size else c.astype(int)
    out = []
    for b in range(bins):
        m = idx == b
        out.append(ReliabilityBin(b / bins, (b + 1) / bins, int(m.sum()),
                                  rnd(c[m].mean()) if m.any() else None,
                                  rnd(y[m].mean()) if m.any() else None))
    return out


@dataclass(frozen=True)
class CalibrationFit:
    """A calibration fitted on its own query set and saved."""

    after: Calibration
    path: str
    n: int  # size of the calibration set
    seed: int
    right: int
    wrong: int


@dataclass(frozen=True)
class CalibrationReport:
    """The calibration in use before and (with `--calibrate`) after, and how well it fits."""

    before: Calibration
    fit: CalibrationFit | None
    ece_before: float | None  # ECE of the calibration in use before, on the evaluation queries
    ece: float | None  # ECE of the calibration the evaluation ran with
    reliability: tuple[ReliabilityBin, ...]
    reliability_before: tuple[ReliabilityBin, ...]
    confidence_range: tuple[float | None, float | None] | None

    def to_json(self) -> JSONObject:
        out: JSONObject = {"calibrated": self.fit is not None, "before": dict(vars(self.before))}
        if self.fit is not None:
            f = self.fit
            out.update({"after": dict(vars(f.after)), "path": f.path,
                        "set": {"n": f.n, "seed": f.seed, "right": f.right, "wrong": f.wrong}})
        out["ece_before"] = self.ece_before
        out["ece"] = self.ece
        if self.fit is not None:
            out["ece_after"] = self.ece
        out["reliability"] = [b.to_json() for b in self.reliability]
        out["reliability_before"] = [b.to_json() for b in self.reliability_before]
        out["confidence_range"] = list(self.confidence_range) if self.confidence_range else None
        return out
