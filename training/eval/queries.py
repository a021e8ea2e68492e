"""The one query maker: files a user would send, cut from the library's own videos at random
times and perturbed, each with the truth about where its footage is.

A query set is a list of `Draw`s (which episode, which times, which perturbation, how the file
is encoded), rendered by `render_draws`, which decodes every episode once for all its draws.
Three recipes draw them: `build_queries` for `anirec eval` (every perturbation of the suite in
turn, GIF clips, times that are never a stored frame, out-of-library stills), `demo_queries`
for `anirec demo` and `bench_queries` for the identify latency benchmark.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from data.perturb import SUITE, apply
from data.synth import render_out_of_library
from data.video import read_frames_at
from training.eval.truth import Place, Truth, TruthEpisode, places_of, segment_at

CLIP = "clip"
OOL = "out_of_library"

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class QueryParams:
    """How `anirec eval` draws its queries."""

    ool_fraction: float = 0.10  # share of out-of-library queries
    clip_span: float = 2.0  # seconds a clip spans
    # the perturbations a clip's frames get (one per clip)
    clip_perturbations: tuple[str, ...] = ("clean", "crop50", "mirror", "color", "subtitles",
                                           "borders", "downscale360")
    clip_widths: tuple[int, ...] = (320, 400, 480)  # a clip's width (its height keeps the aspect)
    start: float = 0.25  # seconds: no query starts earlier, nor later than this before the end
    tries: int = 200  # random times tried per query to miss every stored frame


EVAL_QUERIES = QueryParams()


def categories() -> list[str]:
    """In-library query categories in report order: every suite perturbation, then clips."""
    return [*SUITE, CLIP]


@dataclass
class Query:
    """One query: the file a user would send, and the truth about it."""

    qid: str
    category: str  # a SUITE name, "clip" or "out_of_library"
    perturbation: str  # what was applied ("clip:<name>" for the evaluation's clips)
    data: bytes = field(repr=False)
    episode: str | None = None  # ground-truth path of the episode (relative to the library)
    series: str | None = None
    t: float | None = None  # time of the (first) frame in that episode
    segment: str = "main"  # opening / ending / recap / title / main
    places: tuple[Place, ...] = ()  # every place showing this footage (the first is the primary)
    episode_number: int | None = None  # the episode's number in its series

    @property
    def in_library(self) -> bool:
        return self.category != OOL

    @property
    def suffix(self) -> str:
        """The file name ending of `data`'s format."""
        if self.data[:3] == b"GIF":
            return ".gif"
        if self.data[:2] == b"\xff\xd8":
            return ".jpg"
        return ".png"


@dataclass(frozen=True)
class Encoding:
    """How a query's picture(s) become a file."""

    format: str  # "PNG" (fast compression), "JPEG" or "GIF" (every frame, looping)
    quality: int = 90  # JPEG quality
    frame_ms: int = 100  # GIF frame duration


PNG = Encoding("PNG")


@dataclass(frozen=True)
class Draw:
    """One planned query: where its frames are and what is done to them."""

    index: int
    episode: TruthEpisode
    video: Path
    t: float  # time of the first frame
    encoding: Encoding = PNG
    offsets: tuple[float, ...] = (0.0,)  # frame times after t (several: a GIF)
    perturbation: str | None = None  # the SUITE perturbation applied to every frame
    perturb_seed: int = 0
    # after the perturbation: an int is a width (height keeps the aspect, bilinear), a pair an
    # exact size (Pillow's default filter); None keeps the size
    size: int | tuple[int, int] | None = None

    @property
    def times(self) -> list[float]:
        return [self.t + o for o in self.offsets]


def encode(imgs: Sequence[Image.Image], enc: Encoding) -> bytes:
    """One picture (or, for GIF, all of them) as a file of format `enc`."""
    buf = io.BytesIO()
    if enc.format == "GIF":
        imgs[0].save(buf, format="GIF", save_all=True, append_images=list(imgs[1:]),
                     duration=enc.frame_ms, loop=0)
    elif enc.format == "JPEG":
        imgs[0].save(buf, format="JPEG", quality=enc.quality)
    else:
        imgs[0].save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _render(d: Draw, frames: Sequence[Image.Image]) -> bytes:
    imgs = list(frames)
    if d.perturbation is not None:
        imgs = [apply(d.perturbation, im, d.perturb_seed) for im in imgs]
    if isinstance(d.size, int):
        w = d.size
        imgs = [im.resize((w, max(16, round(im.height * w / im.width))), Image.Resampling.BILINEAR)
                for im in imgs]
    elif d.size is not None:
        imgs = [im.resize(d.size) for im in imgs]
    return encode(imgs, d.encoding)


def render_draws(draws: Sequence[Draw], progress: Callable[[int, int], None] | None = None
                 ) -> dict[int, bytes]:
    """The file of every draw, by its index; each video is decoded once for all its draws.

    progress(done, total) is called after each video.
    """
    by_video: dict[str, list[Draw]] = {}
    for d in draws:
        by_video.setdefault(d.video.as_posix(), []).append(d)
    out: dict[int, bytes] = {}
    for done, (path, items) in enumerate(sorted(by_video.items())):
        frames = read_frames_at(Path(path), [t for d in items for t in d.times])
        k = 0
        for d in items:
            out[d.index] = _render(d, [Image.fromarray(f) for f in frames[k:k + len(d.offsets)]])
            k += len(d.offsets)
        if progress:
            progress(done + 1, len(by_video))
    return out


# ----------------------------------------------------------------------------------------------
# `anirec eval`
# ----------------------------------------------------------------------------------------------
def _eval_draw(truth: Truth, stored: dict[str, set[int]], i: int, seed: int,
               params: QueryParams) -> Draw:
    # each query draws from its own stream: another index (other stored frames to avoid)
    # changes only the queries that hit one of them, so index changes compare fairly
    rng = random.Random(f"anirec-eval:{seed}:{i}")
    cats = categories()
    cat = cats[i % len(cats)]
    ep = rng.choice(truth.episodes)
    fps, dur = float(ep["fps"]), float(ep["duration"])
    if cat == CLIP:
        nf = rng.choice((3, 4))
        offsets = [params.clip_span * j / (nf - 1) for j in range(nf)]
        pert = rng.choice(params.clip_perturbations)
    else:
        offsets, pert = [0.0], cat
    hi = max(0.3, dur - params.start - offsets[-1])
    frames_stored = stored.get(ep["abs"], set())
    for _ in range(params.tries):
        t = rng.uniform(params.start, hi)
        if all(round((t + o) * fps) not in frames_stored for o in offsets):
            break
    width = rng.choice(params.clip_widths)
    pseed = seed * 100_003 + i
    if cat != CLIP:
        return Draw(i, ep, Path(ep["abs"]), t, PNG, perturbation=pert, perturb_seed=pseed)
    step = params.clip_span / (len(offsets) - 1)
    return Draw(i, ep, Path(ep["abs"]), t, Encoding("GIF", frame_ms=round(step * 100) * 10),
                offsets=tuple(offsets), perturbation=pert, perturb_seed=pseed, size=width)


def _out_of_library(truth: Truth, n_in: int, n_ool: int, seed: int) -> list[Query]:
    w = int(truth.params.get("width", 480))
    h = int(truth.params.get("height", 270))
    singles = list(SUITE)
    out = []
    for j, img in enumerate(render_out_of_library(n_ool, seed=seed, width=w, height=h)):
        name = singles[j % len(singles)]  # perturbed like the rest: no shortcut to abstain
        out.append(Query(qid=f"q{n_in + j:04d}", category=OOL, perturbation=name,
                         data=encode([apply(name, img, seed * 100_003 + n_in + j)], PNG)))
    return out


def build_queries(truth: Truth, stored: dict[str, set[int]], *, n: int, seed: int,
                  progress: Progress | None = None,
                  params: QueryParams = EVAL_QUERIES) -> list[Query]:
    """N seeded queries: perturbed stills, GIF clips and out-of-library stills.

    In-library queries are drawn at uniformly random times of uniformly random indexed
    episodes, rejecting any time whose video frame is a stored frame (for clips: any of its
    frames). Each episode is decoded once for all its queries.
    """
    n_ool = round(n * params.ool_fraction) if n >= 10 else min(1, n - 1)
    n_in = n - n_ool
    draws = [_eval_draw(truth, stored, i, seed, params) for i in range(n_in)]
    extra = 1 if n_ool else 0

    def on_video(done: int, total: int) -> None:
        if progress:
            progress("building queries", done, total + extra)

    data = render_draws(draws, on_video)
    out = []
    for d in draws:
        ep = d.episode
        pert = f"clip:{d.perturbation}" if len(d.offsets) > 1 else str(d.perturbation)
        out.append(Query(qid=f"q{d.index:04d}", category=categories()[d.index % len(categories())],
                         perturbation=pert, data=data[d.index], episode=ep["path"],
                         series=ep["series"], t=float(d.t), segment=segment_at(ep, d.t),
                         places=places_of(ep, d.t, truth)))
    if n_ool:
        out += _out_of_library(truth, n_in, n_ool, seed)
        if progress:
            total = len({d.video.as_posix() for d in draws}) + 1
            progress("building queries", total, total)
    return out


# ----------------------------------------------------------------------------------------------
# `anirec demo` and the identify benchmark
# ----------------------------------------------------------------------------------------------
def _library_episodes(library: Path) -> list[TruthEpisode]:
    gt = json.loads((library / "ground_truth.json").read_text())
    episodes: list[TruthEpisode] = gt["episodes"]
    return episodes


def demo_queries(library: Path, *, n: int, seed: int = 7) -> list[Query]:
    """Perturbed JPEG screenshots (every eighth a clean 3-frame GIF) at random times of the
    sample library, judged strictly: only the episode itself is right (an answer flagged as the
    opening is right by its series for a query inside the opening)."""
    episodes = _library_episodes(library)
    rng = random.Random(seed)
    names = [k for k in SUITE if k != "clean"]
    draws: list[Draw] = []
    kinds: dict[int, str] = {}
    for i in range(n):
        ep = rng.choice(episodes)
        t = rng.uniform(0.5, ep["duration"] - 2.5)
        kind = "gif" if i % 8 == 7 else names[i % len(names)]
        kinds[i] = kind
        video = library / ep["path"]
        if kind == "gif":
            draws.append(Draw(i, ep, video, t, Encoding("GIF", frame_ms=700),
                              offsets=(0.0, 0.7, 1.4), size=(320, 180)))
        else:
            draws.append(Draw(i, ep, video, t, Encoding("JPEG", quality=92), perturbation=kind,
                              perturb_seed=seed * 1000 + i))
    data = render_draws(draws)
    out = []
    for d in draws:
        ep, kind = d.episode, kinds[d.index]
        opening = bool(ep.get("opening") and ep["opening"][0] <= d.t <= ep["opening"][1])
        clip = kind == "gif"
        out.append(Query(qid=f"q{d.index:02d}-" + ("clip" if clip else kind.replace("+", "_")),
                         category=CLIP if clip else kind, perturbation=kind, data=data[d.index],
                         episode=ep["path"], series=ep["series"], t=d.t,
                         segment="opening" if opening else "main",
                         places=(Place(d.video.resolve().as_posix(), d.t),),
                         episode_number=ep["episode"]))
    return out


def write_query_files(queries: Sequence[Query], out_dir: Path) -> list[tuple[Path, Query]]:
    """Write each query's file as `<out_dir>/<qid><suffix>`; the files sorted by name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for q in queries:
        path = out_dir / f"{q.qid}{q.suffix}"
        path.write_bytes(q.data)
        written.append((path, q))
    written.sort(key=lambda pq: str(pq[0]))
    return written


def bench_queries(library: Path, n: int, seed: int = 11) -> list[bytes]:
    """JPEG stills at random times of the library, cycling through every perturbation."""
    episodes = _library_episodes(library)
    rng = random.Random(seed)
    names = list(SUITE)
    draws = []
    for i in range(n):
        ep = rng.choice(episodes)
        t = rng.uniform(0.5, ep["duration"] - 1)
        draws.append(Draw(i, ep, library / ep["path"], t, Encoding("JPEG", quality=90),
                          perturbation=names[i % len(names)], perturb_seed=i))
    data = render_draws(draws)
    return [data[i] for i in range(n)]
