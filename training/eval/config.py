"""What one `anirec eval` run does: its sizes, seed, switches and recognizer settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EvalConfig:
    """What one `anirec eval` run does."""

    queries: int = 1200  # evaluation queries, out-of-library ones included (300 are too noisy)
    seed: int = 0  # everything (times, perturbations, out-of-library stills) follows from it
    calibrate: bool = False  # fit the calibration on a separate query set first, and save it
    calibration_queries: int = 0  # size of that set; 0: the same as `queries`
    baselines: bool = True  # run ColorLayout, pHash and the untrained CNN on the same queries
    search_k: int = 200  # the recognizer's nearest neighbours per query
    match_threshold: float = 0.80  # confidence from which an answer is a match
    unsure_threshold: float = 0.35  # confidence from which an answer is "not sure" (else none)
    subcrops: bool | None = None  # search the query's sub-crops (None: as the embedder says)

    def __post_init__(self) -> None:
        if self.queries < 1:
            raise ValueError(f"queries must be >= 1, got {self.queries}")
        if self.calibration_queries < 0:
            raise ValueError(f"calibration_queries must be >= 0, got {self.calibration_queries}")
