"""Indexing on Ray: episodes decoded and embedded in Ray workers, written by the driver.

`RayRunner` is an `EpisodeRunner` (data/indexer.py): each to-do episode is one Ray task
running `prepare_episode` (decode → sample → thumbnails, descriptors, vectors, region
vectors); the results come back to the driver in the order of the to-do list, and the driver
writes them as the serial indexer does: catalog rows as `pending`, vectors into the index,
thumbnails into the frame store, `indexed` only after the index has been saved. Killing a run
therefore leaves what the serial indexer leaves, and the next `anirec index` (Ray or not)
continues from it. Scheduling, retries of a lost worker and the transfer of results are
Ray's; at most `2 × parallelism` episodes are in flight, so a big library is not all held
in memory at once.

`ray.init()` starts a local Ray with `workers` CPUs (`ANIREC_INDEX_WORKERS`); with an
address (`anirec index --ray ADDRESS`, `ANIREC_RAY_ADDRESS`) it joins a running cluster, whose
workers must have AniRec installed and see the library at the same path. Ray is the optional
extra `scale` (`pip install 'anirec[scale]'`), imported only here.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Generator
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.models.embedder import SceneEmbedder
from data.prepare import EpisodeRunner, Prepared, PrepareParams, Progress, SerialRunner, prepare_episode
from data.video import VideoError

logger = logging.getLogger(__name__)

#: torch threads in each worker: one task per CPU, so one thread each
WORKER_TORCH_THREADS = 1
#: a local Ray whose raylet does not register within Ray's fixed 30 s (a machine busy with
#: other work) is started again, this many times in all
START_ATTEMPTS = 3


def _prepare_task(path: str, embedder: SceneEmbedder, params: PrepareParams) -> Prepared:
    """One episode in a Ray worker; a file that cannot be decoded comes back as its error."""
    import torch

    if torch.get_num_threads() != WORKER_TORCH_THREADS:
        torch.set_num_threads(WORKER_TORCH_THREADS)
    try:
        return prepare_episode(Path(path), embedder, params)
    except VideoError as exc:
        return VideoError(str(exc))


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("indexing on Ray needs the `ray` package: pip install 'anirec[scale]' "
                          "(or set ANIREC_INDEX_WORKERS=0 for one process)") from None
    return ray


class RayRunner(EpisodeRunner):
    """Prepares episodes as Ray tasks (see the module docstring).

    Args:
        address: a running cluster (`ray.init(address=...)`, e.g. "auto" or
            "ray://head:10001"); None starts a local Ray for the run and stops it after.
        workers: CPUs of the local Ray (None: all of this machine's); ignored with an address.
    """

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        self.address = address
        self.workers = workers
        import_ray()  # refused now, before anything is scanned, when Ray is missing

    def describe(self) -> str:
        where = self.address or f"local, {self.workers or os.cpu_count()} workers"
        return f"ray ({where})"

    def _init(self, ray: Any) -> bool:
        """Connect (or start a local Ray); True when this run started it."""
        if ray.is_initialized():
            return False
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # self-hosted: no usage report
        kw: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING,
                              "log_to_driver": False}
        if not self.address:
            kw["num_cpus"] = self.workers or os.cpu_count() or 1
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                ray.init(address=self.address, **kw)
                return True
            except Exception as exc:  # Ray gives a plain Exception for a node that started slowly
                if self.address or "timed out during startup" not in str(exc) or attempt == START_ATTEMPTS:
                    raise
                logger.warning("the local Ray started too slowly (a busy machine); trying again")
                ray.shutdown()
        raise AssertionError("unreachable")

    def run(self, paths: list[Path], embedder: SceneEmbedder, params: PrepareParams,
            progress: Progress) -> Generator[Prepared, None, None]:
        if not paths:
            return
        ray = import_ray()
        started = self._init(ray)
        pending: deque[Any] = deque()
        try:
            parallel = max(1, int(ray.cluster_resources().get("CPU", 1)))
            task = ray.remote(num_cpus=1, max_retries=2)(_prepare_task)
            emb_ref = ray.put(embedder)
            todo = iter(paths)
            for path in todo:  # fill the window, then one in for every one out
                pending.append(task.remote(str(path), emb_ref, params))
                if len(pending) >= 2 * parallel:
                    break
            while pending:
                result = ray.get(pending.popleft())
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(task.remote(str(nxt), emb_ref, params))
                yield result
        finally:
            for ref in pending:  # closed early (an error while writing, Ctrl-C)
                ray.cancel(ref, force=True)
            if started:
                ray.shutdown()


def make_runner(workers: int = 0, address: str | None = None, *, ray: bool = False) -> EpisodeRunner:
    """The runner the settings ask for: Ray when `ray` is set, an address is given or
    `workers` >= 2 (ANIREC_INDEX_WORKERS), else the serial one."""
    if ray or address or workers >= 2:
        return RayRunner(address=address, workers=workers or None)
    return SerialRunner()
