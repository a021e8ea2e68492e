"""Series classifier and multi-label genre head over the scene embedding (AniRec-style).

The recogniser fuses the series probabilities into candidate scores (so a picture from an
episode that is not indexed still leans to the right series) and shows predicted genres
when nothing matched. A head is tied to the embedder version it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


class SeriesHeadNet(nn.Module):
    def __init__(self, dim: int, n_series: int, n_genres: int) -> None:
        super().__init__()
        self.series = nn.Linear(dim, n_series)
        self.genres = nn.Linear(dim, max(1, n_genres))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.series(x), self.genres(x)


@dataclass
class SeriesHead:
    """A trained head with its label spaces and per-genre thresholds."""

    version: str
    embedder_version: str
    series_ids: list[int]
    genre_names: list[str]
    thresholds: list[float]
    net: SeriesHeadNet
    metrics: dict[str, Any] = field(default_factory=dict)

    @torch.inference_mode()
    def _probs(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s, g = self.net(torch.from_numpy(np.asarray(vectors, np.float32)))
        return torch.softmax(s, dim=-1).mean(0).numpy(), torch.sigmoid(g).mean(0).numpy()

    def predict(self, vectors: np.ndarray) -> dict[int, float]:
        """Series id → probability, averaged over the query's views."""
        p, _ = self._probs(vectors)
        return {sid: float(x) for sid, x in zip(self.series_ids, p.tolist(), strict=True)}

    def genres(self, vectors: np.ndarray) -> list[tuple[str, float]]:
        """Genres whose probability passes their own tuned threshold, most likely first."""
        if not self.genre_names:
            return []
        _, g = self._probs(vectors)
        hits = [(n, float(p)) for n, p, t in zip(self.genre_names, g.tolist(), self.thresholds, strict=True) if p >= t]
        return sorted(hits, key=lambda x: -x[1])

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save({"kind": "series", "version": self.version, "embedder_version": self.embedder_version,
                    "series_ids": self.series_ids, "genre_names": self.genre_names,
                    "thresholds": self.thresholds, "dim": self.net.series.in_features,
                    "model": self.net.state_dict(), "metrics": self.metrics}, tmp)
        tmp.replace(path)


def load_series_head(path: Path) -> SeriesHead:
    from core.models.checkpoint import load_checkpoint

    ck = load_checkpoint(path, "series", "series head")  # weights only: no pickled code runs
    net = SeriesHeadNet(ck["dim"], len(ck["series_ids"]), len(ck["genre_names"]))
    net.load_state_dict(ck["model"])
    net.eval()
    return SeriesHead(version=ck["version"], embedder_version=ck["embedder_version"],
                      series_ids=list(ck["series_ids"]), genre_names=list(ck["genre_names"]),
                      thresholds=list(ck["thresholds"]), net=net, metrics=dict(ck.get("metrics", {})))
