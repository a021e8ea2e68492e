"""Progress bars (tqdm, on stderr) for the commands: indexing, training and evaluation."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from tqdm import tqdm

from data.prepare import Progress

if TYPE_CHECKING:
    from typing import Never

    Bar = tqdm[Never]  # tqdm is generic in the items of what it wraps; these bars wrap nothing


class TqdmProgress(Progress):
    """Indexing progress: an overall bar in video seconds (its rate is the multiple of real
    time) and a per-episode bar in frames."""

    def __init__(self) -> None:
        self.overall: Bar | None = None
        self.current: Bar | None = None

    def start(self, total_seconds: float, episodes: int) -> None:
        self.overall = tqdm(total=round(total_seconds, 1), unit="s", unit_scale=False,
                            desc=f"library ({episodes} episodes)", position=0,
                            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s video "
                                       "[{elapsed}<{remaining}, {rate_fmt}]")

    def episode(self, name: str, duration: float) -> None:
        if self.current is not None:
            self.current.close()
        label = name if len(name) <= 48 else "…" + name[-47:]
        self.current = tqdm(total=round(duration, 1), desc=label, unit="s", position=1,
                            leave=False, bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s "
                                                    "[{elapsed}<{remaining}]")

    def frames(self, n: int, t: float) -> None:
        if self.current is not None:
            self.current.n = min(t, self.current.total or t)
            self.current.refresh()

    def episode_done(self, duration: float) -> None:
        if self.overall is not None:
            self.overall.update(round(duration, 1))

    def close(self) -> None:
        for bar in (self.current, self.overall):
            if bar is not None:
                bar.close()


class TrainBars:
    """Training progress (`training.promote.TrainProgress`): one bar per stage."""

    def __init__(self, *, quiet: bool = False) -> None:
        self.quiet = quiet
        self.bar: Bar | None = None

    def begin(self, desc: str, total: int | None, unit: str) -> None:
        self.end()
        self.bar = tqdm(total=total, desc=desc, unit=unit, disable=self.quiet, file=sys.stderr)

    def advance(self, done: int, postfix: dict[str, str] | None = None) -> None:
        if self.bar is None:
            return
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(done - self.bar.n)

    def end(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class StageBars:
    """One tqdm bar (on stderr) per evaluation stage."""

    def __init__(self) -> None:
        self.stage: str | None = None
        self.bar: Bar | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage or self.bar is None:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=total, desc=stage, unit="q" if "queries" not in stage
                            and "features" not in stage else "it", file=sys.stderr, leave=False)
        assert self.bar is not None
        self.bar.total = total
        self.bar.update(done - self.bar.n)  # redraws at most every `mininterval` seconds

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class CountBar:
    """One bar fed by a `progress(done, total)` callback, for the library calls that report
    counts (`data.cast.discover`, `data.teacher.harvest_labels`); closes the bar on exit."""

    def __init__(self, desc: str, *, unit: str = "frame", disable: bool = False) -> None:
        self.bar: Bar = tqdm(desc=desc, unit=unit, file=sys.stderr, disable=disable)

    def __call__(self, done: int, total: int) -> None:
        self.bar.total = total
        self.bar.update(done - self.bar.n)

    def __enter__(self) -> CountBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()
