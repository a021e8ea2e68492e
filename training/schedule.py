"""The learning-rate schedule every trainer here uses (nanoGPT's): linear warm-up, cosine decay
to `min_lr`, then `min_lr` after the last step."""

from __future__ import annotations

import math
from typing import Protocol


class Schedule(Protocol):
    """Read-only, so the frozen training configs match it."""

    @property
    def steps(self) -> int: ...
    @property
    def warmup(self) -> int: ...
    @property
    def lr(self) -> float: ...
    @property
    def min_lr(self) -> float: ...


def get_lr(it: int, cfg: Schedule) -> float:
    if it < cfg.warmup:
        return cfg.lr * (it + 1) / cfg.warmup
    if it >= cfg.steps:
        return cfg.min_lr
    ratio = (it - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.lr - cfg.min_lr)
