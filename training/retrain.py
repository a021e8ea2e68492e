"""`anirec retrain`: votes become training signal, learnt without re-embedding the library.

1. **Signal** (`build_signals`). Each voted answer's active votes are resolved into one
   label: a ✅ says the top answer's frame is right, a 1️⃣–5️⃣ pick that candidate's frame, an
   operator's `--truth` a place that may be no candidate at all, a ❌ that the top answer is
   wrong (a hard negative). Voters are weighted: one who disagrees with the others on most of
   the answers they shared is down-weighted (`voter_weights`), operators count double; an
   answer's weight is the agreeing weight minus the disagreeing one, and unanimous answers
   with several voters weigh more.
2. **Query adapter** (`fit_adapter`): a residual linear map on the stored query vectors,
   trained so each confirmed or corrected query lands nearer its frame's stored vector than
   the other candidates', ❌'d frames and random library frames, while library-like vectors
   (clean screenshots) stay where they are.
3. **Calibration** (`refit_calibration`): the current logistic calibration rescaled (two
   numbers, Platt-style) on the voted answers: "was the top answer right" against its
   stored evidence.
The gate and the promotion are in `training/promote.py` (`gate_retrain`, `promote_retrain`).
"""

from __future__ import annotations

import collections
import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

import numpy as np

from core.catalog import Catalog
from core.feedback import TRUTH
from core.feedback_ops import LabelledQuery, Vote
from core.index import VectorIndex
from core.models.adapter import QueryAdapter
from core.recognition.calibration import Calibration
from core.types import Verdict


class StoredIndex(VectorIndex, Protocol):
    """A vector index that can also list its ids and say whether it holds one (HnswIndex)."""

    def ids(self) -> np.ndarray: ...

    def __contains__(self, id_: object) -> bool: ...


def stored(index: VectorIndex) -> StoredIndex:
    """`index` as a `StoredIndex` (TypeError when it cannot list its ids)."""
    if not (hasattr(index, "ids") and hasattr(index, "__contains__")):
        raise TypeError(f"{type(index).__name__} cannot list its vectors; retraining needs that")
    return cast(StoredIndex, index)


PLACE_SECONDS = 2.0  # two labels within this of each other (same episode) name one place


@dataclass(frozen=True)
class RetrainParams:
    """How votes are weighed and the adapter learnt."""

    operator_weight: float = 2.0  # an operator's label (CLI, web operator page)
    unanimous_bonus: float = 1.5  # several voters, all agreeing
    min_overlap: int = 3  # answers a voter shared with others before their agreement counts
    distrust_below: float = 0.5  # agreement below this: the voter's weight is their agreement
    min_weight: float = 0.05
    steps: int = 300
    lr: float = 0.01
    tau: float = 0.05  # InfoNCE temperature
    anchor: float = 20.0  # keep library-like vectors (clean screenshots) in place
    l2: float = 1e-3  # pull the map towards the identity
    library_negatives: int = 512  # random library frames as extra negatives / anchors
    seed: int = 0
    min_calibration: int = 20  # voted answers (with both outcomes) before refitting the calibration


@dataclass(frozen=True)
class Signal:
    """One voted answer as training signal."""

    query_id: str
    rows: np.ndarray  # every stored vector of the query (float32 [n, dim])
    winner: int  # the row that found the top answer
    pos: int | None  # the stored frame id the query shows (None: only "the top is wrong")
    place: tuple[int, float] | None  # that frame's (episode id, time)
    negs: tuple[int, ...]  # frames it does not show: the ❌'d top answer, other candidates
    weight: float
    kind: str  # confirmed / corrected / rejected
    top_right: bool  # was the answer given right (for the calibration)
    evidence: tuple[float, ...]
    voters: int

    @property
    def vector(self) -> np.ndarray:
        return self.rows[self.winner if 0 <= self.winner < len(self.rows) else 0]


@dataclass(frozen=True)
class _Label:
    user: str
    wrong: bool  # "the top answer is wrong" (no place)
    place: tuple[int, float] | None  # the place it names
    frame: int | None  # the stored frame behind it, when known
    kind: str


def _same(a: tuple[int, float] | None, b: tuple[int, float] | None) -> bool:
    return a is not None and b is not None and a[0] == b[0] and abs(a[1] - b[1]) <= PLACE_SECONDS


def _cand_place(q: LabelledQuery, rank: int) -> tuple[int, float] | None:
    if not 1 <= rank <= len(q.top5):
        return None
    c = q.top5[rank - 1]
    ep, t = c.get("episode_id", -1), c.get("time", 0.0)
    return (int(ep) if isinstance(ep, int) else -1, float(t) if isinstance(t, (int, float)) else 0.0)


def _cand_frame(q: LabelledQuery, rank: int) -> int | None:
    frames = q.trace.get("frames") or []
    return int(frames[rank - 1]) if 1 <= rank <= len(frames) else None


def _nearest_frame(cat: Catalog, episode_id: int, t: float) -> int | None:
    sl = cat.window(episode_id, t - PLACE_SECONDS, t + PLACE_SECONDS)
    if sl.stop <= sl.start:
        return None
    rows = np.arange(sl.start, sl.stop)
    return int(cat.ids[rows[int(np.argmin(np.abs(cat.t[rows] - t)))]])


def _label(q: LabelledQuery, v: Vote, cat: Catalog) -> _Label | None:
    """A vote as a label; None when it cannot be used (a pick beyond the stored candidates,
    a truth in an episode no longer indexed)."""
    if v.verdict == Verdict.WRONG.value:
        return _Label(v.user, True, None, _cand_frame(q, 1), "wrong")
    if v.verdict in (Verdict.CORRECT.value, Verdict.PICK.value):
        rank = 1 if v.verdict == Verdict.CORRECT.value else int(v.rank or 0)
        place, frame = _cand_place(q, rank), _cand_frame(q, rank)
        if place is None or frame is None or len(cat.rows(np.array([frame]))) == 0 \
                or cat.rows(np.array([frame]))[0] < 0:
            return None
        return _Label(v.user, False, place, frame, "pick1" if rank == 1 else "pick")
    if v.verdict == TRUTH and v.truth:
        ep, t = int(v.truth.get("episode_id", -1)), float(v.truth.get("t", 0.0))
        frame = _nearest_frame(cat, ep, t)
        if frame is None:
            return None
        return _Label(v.user, False, (ep, t), frame, "truth")
    return None


def _agrees(a: _Label, b: _Label, top: tuple[int, float] | None) -> bool:
    if a.wrong and b.wrong:
        return True
    if a.wrong or b.wrong:
        other = b if a.wrong else a
        return not _same(other.place, top)
    return _same(a.place, b.place)


def voter_weights(labels: dict[str, list[_Label]], tops: dict[str, tuple[int, float] | None],
                  params: RetrainParams, trusted: Iterable[str] = ()) -> dict[str, float]:
    """Each voter's weight: 1, the operator's more, and a voter who disagrees with the others
    on most of the answers they shared (at least `min_overlap`) down to their agreement."""
    agree: collections.Counter[str] = collections.Counter()
    shared: collections.Counter[str] = collections.Counter()
    for qid, ls in labels.items():
        if len({lb.user for lb in ls}) < 2:
            continue
        for lb in ls:
            others = [o for o in ls if o.user != lb.user]
            ok = sum(_agrees(lb, o, tops[qid]) for o in others)
            shared[lb.user] += 1
            agree[lb.user] += ok * 2 >= len(others)  # agrees with at least half the others
    trusted = set(trusted)
    out: dict[str, float] = {}
    for user in {lb.user for ls in labels.values() for lb in ls}:
        w = params.operator_weight if user in trusted else 1.0
        if user not in trusted and shared[user] >= params.min_overlap:
            rate = agree[user] / shared[user]
            if rate < params.distrust_below:
                w = max(params.min_weight, rate)
        out[user] = w
    return out


def _resolve(q: LabelledQuery, ls: list[_Label], w: dict[str, float], params: RetrainParams
             ) -> tuple[_Label | None, float, bool]:
    """The consensus label of one answer, its weight, and whether the top answer was right."""
    top = _cand_place(q, 1)
    best: tuple[float, _Label | None] = (0.0, None)
    for cand in (lb for lb in ls if not lb.wrong):
        net = sum(w[o.user] * (1 if _agrees(cand, o, top) else -1) for o in ls)
        if net > best[0]:
            best = (net, cand)
    net, lab = best
    if lab is None:  # only "wrong" survives
        wrong = sum(w[o.user] for o in ls if o.wrong)
        right = sum(w[o.user] for o in ls if not o.wrong and _same(o.place, top))
        if wrong <= right:
            return None, 0.0, False
        lab, net = next(o for o in ls if o.wrong), wrong - right
    if len({o.user for o in ls}) >= 2 and all(_agrees(lab, o, top) for o in ls):
        net *= params.unanimous_bonus
    return lab, net, (not lab.wrong and _same(lab.place, top))


def build_signals(queries: Sequence[LabelledQuery], cat: Catalog, params: RetrainParams,
                  trusted: Iterable[str] = ()) -> tuple[list[Signal], dict[str, int]]:
    """The usable signal of the voted answers, and what was dropped (by reason)."""
    dropped: collections.Counter[str] = collections.Counter()
    labels: dict[str, list[_Label]] = {}
    tops = {q.id: _cand_place(q, 1) for q in queries}
    for q in queries:
        ls = []
        for v in q.votes:
            lb = _label(q, v, cat)
            if lb is None:
                dropped["vote names no indexed frame"] += 1
            else:
                ls.append(lb)
        if ls:
            labels[q.id] = ls
    w = voter_weights(labels, tops, params, trusted)
    out: list[Signal] = []
    for q in queries:
        if q.id not in labels:
            continue
        lab, weight, top_right = _resolve(q, labels[q.id], w, params)
        if lab is None or weight <= 0:
            dropped["votes cancel out"] += 1
            continue
        frames = [int(f) for f in q.trace.get("frames") or []]
        if lab.wrong:
            pos, place, negs, kind = None, None, tuple(frames[:1]), "rejected"
        else:
            pos, place, kind = lab.frame, lab.place, ("confirmed" if top_right else "corrected")
            negs = tuple(f for i, f in enumerate(frames) if f != pos
                         and not _same(_cand_place(q, i + 1), place))
        ev = tuple(float(x) for x in q.trace.get("evidence") or ())
        out.append(Signal(q.id, q.vectors, int(q.trace.get("winner", -1)), pos, place, negs,
                          float(weight), kind, top_right, ev, len({lb.user for lb in labels[q.id]})))
    return out, dict(dropped)


def held_out(query_id: str, share: float) -> bool:
    """Whether an answer is in the gate's held-out part (stable: by its id's hash)."""
    h = int.from_bytes(hashlib.sha256(query_id.encode()).digest()[:4], "big")
    return h / 2**32 < share


# ------------------------------------------------------------------------------ the adapter
def _library_sample(index: StoredIndex, n: int, seed: int) -> np.ndarray:
    ids = index.ids()
    if len(ids) == 0:
        return np.zeros((0, index.dim), np.float32)
    pick = np.random.default_rng(seed).choice(ids, size=min(n, len(ids)), replace=False)
    return index.vectors(np.sort(pick))


def fit_adapter(signals: Sequence[Signal], index: StoredIndex, *, version: str,
                embedder_version: str, params: RetrainParams = RetrainParams()) -> QueryAdapter:
    """Learn the residual map on the signals' winning query vectors (see the module doc)."""
    import torch

    torch.manual_seed(params.seed)
    dim = index.dim
    pos_sig = [s for s in signals if s.pos is not None and s.pos in index]
    rej_sig = [s for s in signals if s.pos is None and s.negs and s.negs[0] in index]
    lib = torch.from_numpy(_library_sample(index, params.library_negatives, params.seed))
    k = max([len(s.negs) for s in pos_sig] + [1])

    def vecs(ids: Sequence[int]) -> np.ndarray:
        known = [i for i in ids if i in index]
        return index.vectors(np.array(known, np.int64)) if known else np.zeros((0, dim), np.float32)

    x = torch.tensor(np.stack([s.vector for s in pos_sig]) if pos_sig else np.zeros((0, dim)), dtype=torch.float32)
    p = torch.tensor(vecs([s.pos for s in pos_sig if s.pos is not None]), dtype=torch.float32)
    neg = torch.zeros((len(pos_sig), k, dim))
    mask = torch.zeros((len(pos_sig), k), dtype=torch.bool)
    for i, s in enumerate(pos_sig):
        nv = vecs(s.negs)
        neg[i, :len(nv)] = torch.from_numpy(nv)
        mask[i, :len(nv)] = True
    wp = torch.tensor([s.weight for s in pos_sig], dtype=torch.float32)
    xr = torch.tensor(np.stack([s.vector for s in rej_sig]) if rej_sig else np.zeros((0, dim)), dtype=torch.float32)
    nr = torch.tensor(vecs([s.negs[0] for s in rej_sig]), dtype=torch.float32)
    wr = torch.tensor([s.weight for s in rej_sig], dtype=torch.float32)
    delta = torch.zeros((dim, dim), requires_grad=True)
    eye = torch.eye(dim)
    opt = torch.optim.Adam([delta], lr=params.lr)
    total_w = float(wp.sum() + wr.sum()) or 1.0
    for _ in range(params.steps):
        m = eye + delta
        loss = params.l2 * (delta ** 2).sum() + params.anchor * (
            (torch.nn.functional.normalize(lib @ m.T, dim=1) - lib) ** 2).sum(1).mean()
        if len(x):
            z = torch.nn.functional.normalize(x @ m.T, dim=1)
            lp = (z * p).sum(1, keepdim=True)
            ln = torch.einsum("nd,nkd->nk", z, neg).masked_fill(~mask, -1e4)
            logits = torch.cat([lp, ln, z @ lib.T], dim=1) / params.tau
            loss = loss + (wp * (torch.logsumexp(logits, 1) - logits[:, 0])).sum() / total_w
        if len(xr):
            zr = torch.nn.functional.normalize(xr @ m.T, dim=1)
            before = (xr * nr).sum(1)
            loss = loss + (wr * torch.nn.functional.softplus(((zr * nr).sum(1) - before + 0.05) / 0.02)
                           ).sum() / total_w
        opt.zero_grad()
        loss.backward()
        opt.step()
    return QueryAdapter((eye + delta).detach().numpy().astype(np.float32), version, embedder_version)


def retrieval_accuracy(signals: Sequence[Signal], index: VectorIndex, cat: Catalog,
                       adapter: QueryAdapter | None) -> tuple[float, int]:
    """Share of the signals with a place whose nearest stored frame (over all the query's
    stored vectors, through `adapter`) is at that place; and how many were judged."""
    judged = right = 0
    for s in signals:
        if s.place is None:
            continue
        rows = adapter(s.rows) if adapter is not None else s.rows
        ids, sims = index.search(rows, 1)
        best = int(ids[int(np.argmax(sims[:, 0])), 0])
        r = int(cat.rows(np.array([best]))[0])
        judged += 1
        right += r >= 0 and _same((int(cat.ep[r]), float(cat.t[r])), s.place)
    return (right / judged if judged else 0.0), judged


def preference_accuracy(signals: Sequence[Signal], index: StoredIndex,
                        adapter: QueryAdapter | None) -> tuple[float, int]:
    """Share of the signals with a voted frame and other candidates where the query (through
    `adapter`) is nearer the voted frame than every other candidate's frame and every ❌'d
    one: what the votes say, asked of a version that never saw them; and how many were judged."""
    judged = right = 0
    for s in signals:
        if s.pos is None or s.pos not in index:
            continue
        negs = [n for n in s.negs if n in index]
        if not negs:
            continue
        q = s.vector[None, :]
        q = adapter(q) if adapter is not None else q
        sims = index.vectors(np.array([s.pos, *negs], np.int64)) @ q[0]
        judged += 1
        right += bool(sims[0] > sims[1:].max())
    return (right / judged if judged else 0.0), judged


# -------------------------------------------------------------------------- the calibration
def _logit(cal: Calibration, ev: Sequence[float]) -> float:
    return float(cal.weights() @ cal.features(*ev))


def calibration_loss(cal: Calibration, signals: Sequence[Signal]) -> float:
    """Weighted log loss of "the top answer was right" (signals with evidence)."""
    tot = wsum = 0.0
    for s in signals:
        if len(s.evidence) != 5:
            continue
        p = min(1 - 1e-6, max(1e-6, cal(*s.evidence)))
        tot += -s.weight * (math.log(p) if s.top_right else math.log(1 - p))
        wsum += s.weight
    return tot / wsum if wsum else float("nan")


def refit_calibration(cal: Calibration, signals: Sequence[Signal], params: RetrainParams,
                      name: str) -> Calibration | None:
    """`cal` rescaled (z' = a·z + b) on the voted answers; None with too few of them or only
    one outcome."""
    rows = [(s.weight, _logit(cal, s.evidence), float(s.top_right)) for s in signals if len(s.evidence) == 5]
    ys = {y for _, _, y in rows}
    if len(rows) < params.min_calibration or len(ys) < 2:
        return None
    w, z, y = (np.array(c, np.float64) for c in zip(*rows, strict=True))
    a, b = 1.0, 0.0
    for _ in range(50):  # Newton on (a, b), a ridge towards (1, 0)
        pr = 1 / (1 + np.exp(-np.clip(a * z + b, -50, 50)))
        g = np.array([(w * (pr - y) * z).sum() + 1.0 * (a - 1), (w * (pr - y)).sum() + 1.0 * b])
        h = w * pr * (1 - pr)
        hess = np.array([[(h * z * z).sum() + 1.0, (h * z).sum()], [(h * z).sum(), h.sum() + 1.0]])
        step = np.linalg.solve(hess, g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-9:
            break
    a = max(0.05, a)
    ws = cal.weights() * a
    ws[0] += b
    return Calibration(bias=float(ws[0]), w_score=float(ws[1]), w_margin=float(ws[2]),
                       w_frames=float(ws[3]), w_check=float(ws[4]), w_detail=float(ws[5]),
                       fitted_on=name)


# ------------------------------------------------------------ the closed-form nuisance map
def _nuisance(signals: Sequence[Signal], index: StoredIndex) -> tuple[np.ndarray, float]:
    """The weighted covariance of how confirmed/corrected queries deviate from their frames."""
    sig = [s for s in signals if s.pos is not None and s.pos in index]
    if not sig:
        return np.zeros((index.dim, index.dim), np.float64), 0.0
    pos = index.vectors(np.array([s.pos for s in sig], np.int64)).astype(np.float64)
    q = np.stack([s.vector for s in sig]).astype(np.float64)
    d = q - pos
    w = np.array([s.weight for s in sig], np.float64)
    return (d * w[:, None]).T @ d / w.sum(), float(w.sum())


def shrink_map(cov: np.ndarray, beta: float) -> np.ndarray:
    """(I + beta·C)^-1: the directions in which queries stray from their frames shrunk."""
    return np.linalg.inv(np.eye(cov.shape[0]) + beta * cov).astype(np.float32)


def fit_nuisance_adapter(signals: Sequence[Signal], index: StoredIndex, *, version: str,
                         embedder_version: str, betas: Sequence[float] = (0.0, 1, 3, 10, 30, 100, 300),
                         folds: int = 4) -> tuple[QueryAdapter, float]:
    """Pick the shrinkage strength by cross-validation on the training signals (preference
    accuracy on the left-out fold), then fit on all of them. Returns the adapter and beta."""
    usable = [s for s in signals if s.pos is not None and s.pos in index]
    best_beta, best = 0.0, -1.0
    for beta in betas:
        right = judged = 0
        for k in range(folds):
            tr = [s for i, s in enumerate(usable) if i % folds != k]
            te = [s for i, s in enumerate(usable) if i % folds == k]
            cov, _ = _nuisance(tr, index)
            ad = QueryAdapter(shrink_map(cov, beta), "cv", embedder_version)
            acc, n = preference_accuracy(te, index, ad)
            right += round(acc * n)
            judged += n
        score = right / judged if judged else 0.0
        if score > best + 1e-9:
            best, best_beta = score, float(beta)
    cov, _ = _nuisance(usable, index)
    return QueryAdapter(shrink_map(cov, best_beta), version, embedder_version), best_beta


# ------------------------------------------------------------------ the ridge (least squares)
def fit_ridge_adapter(signals: Sequence[Signal], index: StoredIndex, *, version: str,
                      embedder_version: str, lam: float = 0.3) -> QueryAdapter:
    """The map M minimising Σ w·|M q − f|² + lam·|M − I|² (q: a query's winning vector, f:
    its voted frame's stored vector), in closed form. Consistent distortions of the query
    (a picture turned sideways, a fixed filter) are linear in these vectors, so a few dozen
    labelled answers pin them down."""
    sig = [s for s in signals if s.pos is not None and s.pos in index]
    dim = index.dim
    if not sig:
        return QueryAdapter(np.eye(dim, dtype=np.float32), version, embedder_version)
    q = np.stack([s.vector for s in sig]).astype(np.float64)
    f = index.vectors(np.array([s.pos for s in sig], np.int64)).astype(np.float64)
    w = np.array([s.weight for s in sig], np.float64)[:, None]
    eye = np.eye(dim)
    m = ((f * w).T @ q + lam * eye) @ np.linalg.inv((q * w).T @ q + lam * eye)
    return QueryAdapter(m.astype(np.float32), version, embedder_version)
