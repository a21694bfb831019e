"""Statistics of the accuracy study (benchmarks/bench_accuracy.py; docs/results.md, "How to read the tables").

The decision rule is a paired t-interval over seeds: for rows A and B run on the same seeds (each seed its own
SynthOcc and training seed), the per-seed differences d_s = metric_A(s) - metric_B(s) give

    mean(d) +- t_{0.975, n-1} * sd(d) / sqrt(n)         (95%; n seeds, n >= 2)

and A is "better" (or "worse") on a metric only when that interval excludes 0; otherwise "no measurable
difference". Beside it, a bootstrap over seeds x queries: seeds drawn with replacement, then each drawn seed's
queries drawn with replacement (the two rows paired query by query), the 2.5 and 97.5 percentiles of the mean
per-query difference. The per-query values are AP (mean: mAP), the Rank-1 hit (mean: Rank-1) and INP (mean:
mINP), stored by each run (its eval.json "per_query"). mAP, Rank-1 and mINP are always reported together.

Needs scipy (the test extra) for the t quantile.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import numpy as np

METRICS = (("mAP", "AP"), ("rank1", "rank1"), ("mINP", "INP"))  # (run-level key, per-query key)


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float

    @property
    def verdict(self) -> str:
        """ "better" / "worse" where the interval excludes 0, else "no measurable difference"."""
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "no measurable difference"


def t_interval(values: list[float], confidence: float = 0.95) -> Interval | None:
    """Student-t interval of the mean of `values` (paired differences over seeds); None for fewer than 2."""
    from scipy.stats import t

    n = len(values)
    if n < 2:
        return None
    mean = statistics.fmean(values)
    half = t.ppf(0.5 + confidence / 2, n - 1) * statistics.stdev(values) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half)


def bootstrap_interval(
    per_seed: list[np.ndarray], resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Interval | None:
    """Percentile interval of the mean per-query difference, resampling seeds, then each drawn seed's
    queries (`per_seed`: one array of per-query differences per seed). None without seeds."""
    if not per_seed:
        return None
    rng = np.random.default_rng(seed)
    n = len(per_seed)
    picks = rng.integers(0, n, size=(resamples, n))
    # means[s][b, j]: the mean of a fresh query resample of seed s, for draw j of bootstrap sample b
    means = [d[rng.integers(0, len(d), size=(resamples, n, len(d)))].mean(axis=2) for d in per_seed]
    stats = np.empty(resamples)
    for b in range(resamples):
        stats[b] = np.mean([means[s][b, j] for j, s in enumerate(picks[b])])
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(stats, [tail, 100 - tail])
    return Interval(float(np.mean([d.mean() for d in per_seed])), float(low), float(high))


def paired_queries(a: dict, b: dict, key: str) -> np.ndarray:
    """Per-query differences of two runs of one seed (same queries), skipped queries left out."""
    pa, pb = a["per_query"][key], b["per_query"][key]
    return np.array([x - y for x, y in zip(pa, pb, strict=True) if x is not None and y is not None], float)


def compare(runs_a: dict, runs_b: dict, seeds: list[int]) -> dict:
    """Row A against row B over the seeds both have: {"seeds": [...], metric: {"t": Interval | None,
    "bootstrap": Interval | None, "per_seed": [d_s]}} for mAP, rank1 and mINP."""
    common = [str(s) for s in seeds if str(s) in runs_a and str(s) in runs_b]
    out: dict = {"seeds": common}
    for metric, key in METRICS:
        diffs = [runs_a[s][metric] - runs_b[s][metric] for s in common]
        with_queries = [s for s in common if "per_query" in runs_a[s] and "per_query" in runs_b[s]]
        boot = None
        if with_queries and len(with_queries) == len(common):
            boot = bootstrap_interval([paired_queries(runs_a[s], runs_b[s], key) for s in common])
        out[metric] = {"t": t_interval(diffs), "bootstrap": boot, "per_seed": diffs}
    return out


def fmt(interval: Interval | None, scale: float = 100.0) -> str:
    if interval is None:
        return "-"
    return f"{scale * interval.mean:+.1f} [{scale * interval.low:+.1f}, {scale * interval.high:+.1f}]"


def pair_lines(results: dict, pairs: list[tuple[str, str]], seeds: list[int]) -> list[str]:
    """A markdown table: one line per pair (A - B), each metric's paired t-interval (the decision), the
    bootstrap interval and the verdict, in points."""
    head = "| A - B | seeds | mAP: t 95% / bootstrap | Rank-1: t 95% / bootstrap | mINP: t 95% / bootstrap |"
    lines = [head, "|---|---|---|---|---|"]
    for a, b in pairs:
        if a not in results or b not in results:
            continue
        c = compare(results[a], results[b], seeds)
        if not c["seeds"]:
            continue
        cells = []
        for metric, _ in METRICS:
            m = c[metric]
            verdict = m["t"].verdict if m["t"] else "one seed"
            cells.append(f"{fmt(m['t'])} / {fmt(m['bootstrap'])} ({verdict})")
        lines.append(f"| {a} - {b} | {len(c['seeds'])} | " + " | ".join(cells) + " |")
    return lines
