"""Loading checkpoints without running pickled code.

`torch.load(weights_only=True)` refuses any object but tensors and plain containers, so a
planted or corrupted checkpoint cannot execute code; the few numpy types our metrics dicts
hold (a float64 score, its dtype) are allowed by name. Anything unreadable becomes one
typed error, `BadCheckpoint`, whose message names the file and the cause.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.errors import AniRecError


class BadCheckpoint(AniRecError, ValueError):
    """A model file that is truncated, corrupt, of another kind, or not a plain checkpoint."""


def _numpy_globals() -> list[Any]:
    core = getattr(np, "_core", None) or np.core
    out: list[Any] = [np.dtype, core.multiarray.scalar]
    out += [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]
    return out


def load_checkpoint(path: Path, kind: str | None = None, what: str | None = None) -> dict[str, Any]:
    """The checkpoint dict at `path` (weights only); `kind`, when given, must match its "kind".

    Raises:
        BadCheckpoint: unreadable, not weights-only, or of another kind.
    """
    path = Path(path)
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            ck = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BadCheckpoint(f"The model file {path} is missing.") from None
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, KeyError, OSError,
            zipfile.BadZipFile, AttributeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise BadCheckpoint(f"The model file {path} is damaged or not a plain checkpoint ({first}).") from None
    if not isinstance(ck, dict):
        raise BadCheckpoint(f"The model file {path} is not a checkpoint.")
    if kind is not None and ck.get("kind") != kind:
        raise BadCheckpoint(f"The model file {path} is not a {what or kind} checkpoint.")
    return ck
