"""The one home of score calibration: raw model score → P(Exact) and P(Exact or Substitute).

Teacher and students both fit a :class:`Calibration` on their dev split (judged pairs of dev
queries) and store it beside the model as ``calibration.json`` (the manifest names the file when the
model is made; a refit rewrites the file alone, so raw scores and everything computed from them stay
current). Each target gets the simpler of two monotone maps unless the other has a lower log-loss out of fold
(folds are whole queries) on dev by more than its standard error:

- ``platt``: p = sigmoid(a · f(s) + b), f the model's score transform (``logit`` for a probability
  such as the teacher's sigmoid score, ``identity`` for a cosine);
- ``isotonic``: pool-adjacent-violators on s, applied with linear interpolation between steps.

Both are non-decreasing, so thresholding a probability keeps a prefix of the raw-score ranking.

Each map is also fitted on one of two sets of dev pairs: ``all`` of them, or only the ``ranked`` queries'
(those with >= 2 judged candidates: the lists a reranker orders and thresholds, as test's fully judged
queries are). The out-of-fold log-loss is judged on the ranked queries when dev has enough of them, so the
choice of method and of fit set is made for the queries the probabilities will be used on; the folds are
drawn 10 times, as one draw's noise is larger than the differences between choices, and a more complex choice
(isotonic, or the ranked set's fewer pairs) must beat the simpler one by more than one standard error over queries. (Single-judged
queries carry another label mix and another score → Exact relation; docs/calibration.md has the demo's figures.)
numpy (and scikit-learn's PAV); :func:`load_calibration` returns None for a model that has none.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reldistill.artifacts import data_fingerprint, write_json
from reldistill.errors import UserError

CALIBRATION_FILE = "calibration.json"
TARGETS = {"p_exact": ("E",), "p_exact_or_substitute": ("E", "S")}  # field name: labels counted as positive
TRANSFORMS = ("logit", "identity")
METHODS = ("platt", "isotonic")
FIT_SETS = ("all", "ranked")  # every dev pair; only the pairs of queries with >= 2 judged candidates
EPS = 1e-4  # probabilities are kept in [EPS, 1 - EPS]: a finite log-loss, never a certain answer


def _transform(scores: np.ndarray, transform: str) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if transform == "logit":
        p = np.clip(s, 1e-7, 1 - 1e-7)
        return np.log(p) - np.log1p(-p)
    return s


def fit_platt(z: np.ndarray, y: np.ndarray, iters: int = 100) -> tuple[float, float]:
    """(a, b) minimising the log-loss of sigmoid(a·z + b) against 0/1 ``y`` (Newton's method, tiny ridge), with
    a ≥ 0: a probability of relevance never falls as the score rises (isotonic keeps the same rule)."""
    z, y = np.asarray(z, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n_pos, n = y.sum(), len(y)
    t = np.where(y > 0, (n_pos + 1) / (n_pos + 2), 1 / (n - n_pos + 2))  # Platt's smoothed targets
    a, b = 0.0, float(np.log((n_pos + 1) / (n - n_pos + 1)))
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(a * z + b)))
        w = np.maximum(p * (1 - p), 1e-12)
        g = np.array([np.dot(p - t, z), np.sum(p - t)])
        h = np.array([[np.dot(w, z * z) + 1e-6, np.dot(w, z)], [np.dot(w, z), np.sum(w) + 1e-6]])
        step = np.linalg.solve(h, g)
        a, b = a - step[0], b - step[1]
        if np.max(np.abs(step)) < 1e-9:
            break
    if a < 0:  # a score that ranks backwards on dev must not be turned upside down: no slope, the base rate
        return 0.0, float(np.log(t.mean() / (1 - t.mean())))
    return float(a), float(b)


def fit_isotonic(x: np.ndarray, y: np.ndarray) -> tuple[list[float], list[float]]:
    """Pool-adjacent-violators (scikit-learn's): the non-decreasing step function of ``x`` closest to ``y`` in squared error.

    Returns (knots, values): each pooled block's mean x and mean y, for :func:`numpy.interp`."""
    from sklearn.isotonic import isotonic_regression

    order = np.argsort(np.asarray(x, dtype=np.float64), kind="stable")
    xs, ys = np.asarray(x, dtype=np.float64)[order], np.asarray(y, dtype=np.float64)[order]
    fitted = np.asarray(isotonic_regression(ys, increasing=True), dtype=np.float64)
    starts = np.r_[0, np.flatnonzero(np.diff(fitted) != 0) + 1]
    counts = np.diff(np.r_[starts, len(fitted)])
    return (np.add.reduceat(xs, starts) / counts).tolist(), fitted[starts].tolist()


@dataclasses.dataclass
class Calibrator:
    """One fitted monotone map for one target: ``method`` platt (``params`` a, b) or isotonic (knots, values)."""

    method: str
    params: dict[str, Any]
    dev_log_loss: dict[str, float] = dataclasses.field(default_factory=dict)  # out-of-fold, per method (and fit set) tried
    dev_log_loss_se: dict[str, float] = dataclasses.field(default_factory=dict)  # paired standard error against the lowest
    fit_pairs: str = "all"  # which dev pairs it was fitted on: FIT_SETS
    fitted: dict[str, int] = dataclasses.field(default_factory=dict)  # queries and pairs it was fitted on

    def __call__(self, scores: np.ndarray, transform: str) -> np.ndarray:
        if self.method == "platt":
            z = _transform(scores, transform)
            p = 1 / (1 + np.exp(-(self.params["a"] * z + self.params["b"])))
        else:
            p = np.interp(np.asarray(scores, dtype=np.float64), self.params["knots"], self.params["values"])
        return np.clip(p, EPS, 1 - EPS)


def _fit_one(method: str, scores: np.ndarray, y: np.ndarray, transform: str) -> Calibrator:
    if method == "platt":
        a, b = fit_platt(_transform(scores, transform), y)
        return Calibrator("platt", {"a": a, "b": b})
    knots, values = fit_isotonic(scores, y)
    return Calibrator("isotonic", {"knots": knots, "values": values})


def row_log_loss(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each row's log-loss of probability ``p`` against 0/1 ``y`` (``p`` kept in [EPS, 1 - EPS])."""
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    y = np.asarray(y, dtype=np.float64)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(row_log_loss(p, y)))


def ranked_rows(query_ids: Sequence[str]) -> np.ndarray:
    """True for each row whose query has >= 2 rows (a list to rank)."""
    q = np.asarray([str(x) for x in query_ids])
    _, inv, counts = np.unique(q, return_inverse=True, return_counts=True)
    return counts[inv] >= 2


def query_folds(query_ids: Sequence[str], folds: int, seed: int) -> np.ndarray:
    """A fold number per row; a query's rows share one fold. Queries are dealt round the folds in a ``seed``-shuffled
    order, ranked queries and single-judged ones each on their own, so every fold holds its share of both."""
    ranked = dict(zip(map(str, query_ids), ranked_rows(query_ids)))
    order = list(dict.fromkeys(map(str, query_ids)))
    order = [order[i] for i in np.random.default_rng(seed).permutation(len(order))]
    dealt = {True: 0, False: 0}
    codes = {}
    for q in order:
        codes[q] = dealt[ranked[q]] % folds
        dealt[ranked[q]] += 1
    return np.array([codes[str(q)] for q in query_ids], dtype=np.int64)


def _out_of_fold(method: str, scores: np.ndarray, y: np.ndarray, fold: np.ndarray, fit_rows: np.ndarray,
                 judged: np.ndarray, transform: str) -> np.ndarray:
    """Per-row log-loss on the ``judged`` rows (NaN elsewhere), each predicted by a map fitted on the other folds' ``fit_rows``."""
    oof = np.full(len(y), np.nan)
    for f in np.unique(fold[judged]):
        test, train = judged & (fold == f), fit_rows & (fold != f)
        if not train.any() or y[train].min() == y[train].max():
            oof[test] = np.clip(y[train].mean() if train.any() else 0.5, EPS, 1 - EPS)
            continue
        oof[test] = _fit_one(method, scores[train], y[train], transform)(scores[test], transform)
    return row_log_loss(oof, y)


def _paired_se(diff: np.ndarray, qids: np.ndarray) -> float:
    """Standard error of the mean of the per-row ``diff`` when whole queries are the sampled unit."""
    _, inv = np.unique(qids, return_inverse=True)
    per_query = np.bincount(inv, weights=diff)
    return float(np.sqrt(len(per_query)) * per_query.std(ddof=1) / len(diff)) if len(per_query) > 1 else 0.0


def choose_calibrator(scores: np.ndarray, y: np.ndarray, query_ids: Sequence[str], transform: str,
                      folds: int = 5, methods: Sequence[str] = METHODS, repeats: int = 10) -> Calibrator:
    """The simplest method and fit set (:data:`FIT_SETS`) whose out-of-fold log-loss on dev is within one standard
    error of the lowest, refitted on all of its set.

    Simplest first: Platt before isotonic, all dev pairs before the ranked queries' alone (fewer parameters, more
    pairs). Folds keep queries whole and are drawn ``repeats`` times (seeded); each pair's loss is averaged over the
    draws, and the standard error of a choice's loss minus the lowest is taken over queries (paired): on a dev of 64
    ranked queries the choices often differ by less than that, and the lowest alone flips with the draw of dev. The
    loss is judged on the ranked queries when there are at least ``folds`` of them."""
    scores, y = np.asarray(scores, dtype=np.float64), np.asarray(y, dtype=np.float64)
    qids = np.asarray([str(q) for q in query_ids])
    ranked = ranked_rows(qids)
    n_ranked = len(set(qids[ranked]))
    judged = ranked if n_ranked >= folds else np.ones(len(y), dtype=bool)
    sets = {"all": np.ones(len(y), dtype=bool)}
    if n_ranked >= folds and not ranked.all():
        sets["ranked"] = ranked
    draws = [query_folds(qids, folds, seed) for seed in range(repeats)]
    row_loss, keys = {}, {}
    for m in methods:  # simplest first (the dict keeps this order)
        for name, rows in sets.items():
            key = m if name == "all" else f"{m} ({name})"
            keys[key] = (m, name)
            row_loss[key] = np.mean([_out_of_fold(m, scores, y, f, rows, judged, transform) for f in draws], axis=0)[judged]
    losses = {k: round(float(v.mean()), 6) for k, v in row_loss.items()}
    best = min(losses, key=losses.get)
    se = {k: round(_paired_se(v - row_loss[best], qids[judged]), 6) for k, v in row_loss.items()}
    chosen = next(k for k in losses if losses[k] - losses[best] <= se[k])
    method, fit_set = keys[chosen]
    rows = sets[fit_set]
    cal = _fit_one(method, scores[rows], y[rows], transform)
    cal.dev_log_loss, cal.dev_log_loss_se, cal.fit_pairs = losses, se, fit_set
    cal.fitted = {"queries": len(set(qids[rows])), "pairs": int(rows.sum())}
    return cal


@dataclasses.dataclass
class Calibration:
    """A model's calibration: its raw-score ``transform`` and one :class:`Calibrator` per target in :data:`TARGETS`."""

    transform: str
    targets: dict[str, Calibrator]
    score: str = ""  # what the raw score is, in words
    dev: dict[str, Any] = dataclasses.field(default_factory=dict)  # split, queries, pairs, positives, data

    def probabilities(self, scores: Sequence[float] | np.ndarray) -> dict[str, np.ndarray]:
        """{target: probabilities}, one per raw score; P(E or S) is never below P(E)."""
        s = np.asarray(scores, dtype=np.float64)
        out = {t: c(s, self.transform) for t, c in self.targets.items()}
        if "p_exact" in out and "p_exact_or_substitute" in out:
            out["p_exact_or_substitute"] = np.maximum(out["p_exact_or_substitute"], out["p_exact"])
        return out

    def p_exact(self, scores: Sequence[float] | np.ndarray) -> np.ndarray:
        return self.targets["p_exact"](np.asarray(scores, dtype=np.float64), self.transform)

    def to_dict(self) -> dict[str, Any]:
        return {"transform": self.transform, "score": self.score, "dev": self.dev,
                "targets": {t: dataclasses.asdict(c) for t, c in self.targets.items()}}

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str) -> Calibration:
        try:
            targets = {t: Calibrator(**c) for t, c in raw["targets"].items()}
            if raw["transform"] not in TRANSFORMS or any(c.method not in METHODS for c in targets.values()):
                raise ValueError
            return cls(raw["transform"], targets, raw.get("score", ""), raw.get("dev", {}))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise UserError(f"{where} is not a reldistill calibration — refit it with `reldistill calibrate`.") from None


def fit_calibration(scores: Sequence[float] | np.ndarray, labels: Sequence[str], query_ids: Sequence[str],
                    transform: str, score: str = "", folds: int = 5, **dev: Any) -> Calibration:
    """Fit P(Exact) and P(Exact or Substitute) on dev pairs: raw ``scores``, their ESCI ``labels`` (E/S/C/I)
    and ``query_ids`` (folds keep a query whole). ``dev`` (split name, data...) is recorded as given."""
    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
    s = np.asarray(scores, dtype=np.float64)
    lab = np.asarray([str(x) for x in labels])
    if len(s) != len(lab) or len(s) != len(query_ids):
        raise ValueError(f"{len(s)} scores, {len(lab)} labels and {len(query_ids)} query ids")
    n_q = len(set(map(str, query_ids)))
    if len(s) < 10 or n_q < 2:
        raise UserError(f"calibration needs judged dev pairs of at least 2 queries (got {len(s)} pairs of {n_q}) — "
                        "use data with a dev split (data.dev_fraction > 0).")
    targets = {}
    for name, positive in TARGETS.items():
        y = np.isin(lab, positive).astype(np.float64)
        targets[name] = choose_calibrator(s, y, query_ids, transform, min(folds, n_q))
    counts = {lab_: int((lab == lab_).sum()) for lab_ in ("E", "S", "C", "I")}
    return Calibration(transform, targets, score, {"queries": n_q, "pairs": int(len(s)), "labels": counts, **dev})


def dev_identity(data_cfg) -> dict[str, Any]:
    """What names a dev split: the data (path and a digest of its files) and how dev is carved from train."""
    try:
        digest = hashlib.sha256(json.dumps(data_fingerprint(data_cfg.path), sort_keys=True).encode()).hexdigest()[:16]
    except OSError:
        digest = None
    return {"data": str(Path(data_cfg.path).resolve()), "data_digest": digest,
            "dev_fraction": data_cfg.dev_fraction, "seed": data_cfg.seed}


def dev_matches(cal: Calibration, data_cfg) -> bool:
    """Whether ``cal`` was fitted on the dev split ``data_cfg`` carves: the same data files (by digest, wherever
    they lie), dev fraction and seed."""
    want = dev_identity(data_cfg)
    return want["data_digest"] is not None and all(cal.dev.get(k) == want[k] for k in ("data_digest", "dev_fraction", "seed"))


def save_calibration(directory: str | Path, cal: Calibration) -> Path:
    """Write ``directory/calibration.json`` atomically."""
    return write_json(Path(directory) / CALIBRATION_FILE, cal.to_dict())


def load_calibration(directory: str | Path | None) -> Calibration | None:
    """The calibration stored beside a model (``directory/calibration.json``), or None when it has none."""
    if directory is None:
        return None
    p = Path(directory) / CALIBRATION_FILE
    if not p.is_file():
        return None
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{p} is not valid JSON — refit it with `reldistill calibrate`.") from None
    return Calibration.from_dict(raw, str(p))


def fitted_text(fitted: dict[str, Any], target: str) -> str:
    """'1,077 dev pairs of 64 ranked queries': the dev pairs one target was fitted on, from a :func:`summary` (one
    written before fit sets existed was fitted on all of its dev pairs)."""
    on = (fitted.get("fitted_on") or {}).get(target) or {"set": "all", "pairs": fitted["dev"].get("pairs"),
                                                           "queries": fitted["dev"].get("queries")}
    return f"{on['pairs']:,} dev pairs of {on['queries']:,}{' ranked' if on['set'] == 'ranked' else ''} queries"


def summary(cal: Calibration | None) -> dict[str, Any] | None:
    """What a report or manifest shows of a calibration: methods, dev log-losses and dev counts."""
    if cal is None:
        return None
    return {"file": CALIBRATION_FILE, "transform": cal.transform, "dev": cal.dev,
            "methods": {t: c.method for t, c in cal.targets.items()},
            "fitted_on": {t: {"set": c.fit_pairs, **c.fitted} for t, c in cal.targets.items()},
            "dev_log_loss": {t: c.dev_log_loss for t, c in cal.targets.items()}}
