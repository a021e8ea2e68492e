"""The confidence step: a logistic map from the match features (score, margin, frame
agreement, the colour and detail checks) to the probability that the top answer is right.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.types import Recognition


@dataclass
class Calibration:
    """Logistic map from match features to a probability that the top answer is right.

    Fitted by the evaluation harness (`anirec eval --calibrate` writes
    `<home>/models/calibration.json`, which wins). The defaults are that fit on the default
    sample library with the default embedder (1,200 separate queries, seed 7919); on the
    evaluation queries it gives an expected calibration error of 0.0082. Frame agreement got
    no weight in that fit (see `training.eval.fit_calibration`).
    """

    bias: float = -16.1379
    w_score: float = 11.3141
    w_margin: float = 12.1473
    w_frames: float = 0.0
    w_check: float = 5.7528  # files fitted before the check existed have none: 0
    w_detail: float = 4.0562  # files fitted before the detail check existed have none: 0
    fitted_on: str = "default sample library, default embedder, eval seed 7919, n=1200"

    def features(self, score: float, margin: float, agree: float, check: float = 0.0,
                 detail: float = 0.0) -> np.ndarray:
        return np.array([1.0, score, margin, agree, check, detail], dtype=np.float64)

    def weights(self) -> np.ndarray:
        return np.array([self.bias, self.w_score, self.w_margin, self.w_frames, self.w_check,
                         self.w_detail])

    def __call__(self, score: float, margin: float, agree: float, check: float = 0.0,
                 detail: float = 0.0) -> float:
        z = float(self.weights() @ self.features(score, margin, agree, check, detail))
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    @classmethod
    def fit(cls, feats: np.ndarray, labels: np.ndarray, *, l2: float = 1e-3, iters: int = 200,
            name: str = "eval") -> Calibration:
        """Logistic regression by Newton's method on rows [1, score, margin, agree, check,
        detail]."""
        x = np.asarray(feats, np.float64)
        y = np.asarray(labels, np.float64)
        w = np.zeros(x.shape[1])
        for _ in range(iters):
            p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -50, 50)))
            g = x.T @ (p - y) + l2 * w
            hess = (x * (p * (1 - p))[:, None]).T @ x + l2 * np.eye(x.shape[1])
            step = np.linalg.solve(hess, g)
            w -= step
            if np.abs(step).max() < 1e-8:
                break
        return cls(bias=float(w[0]), w_score=float(w[1]), w_margin=float(w[2]),
                   w_frames=float(w[3]), w_check=float(w[4]), w_detail=float(w[5]),
                   fitted_on=name)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__, indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Calibration:
        if not path.exists():
            return cls()
        data = json.loads(path.read_text())
        data.setdefault("w_check", 0.0)  # fitted before the check existed: it has no say
        data.setdefault("w_detail", 0.0)  # the same for the detail check
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def features_of(rec: Recognition) -> tuple[float, float, float, float, float]:
    """The calibration features behind a recognition's confidence (for fitting): score,
    margin, frame agreement, colour check, detail check."""
    return tuple(rec.evidence) if len(rec.evidence) == 5 else (0.0,) * 5  # type: ignore[return-value]
