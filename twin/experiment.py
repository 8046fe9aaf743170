"""How long to warm up and how many replications to run: the output analysis a simulation study needs before its
figures can be trusted (Law, *Simulation Modeling and Analysis*, ch. 9; Robinson, *Simulation*, ch. 9).

The end of the initial transient is found by MSER-5 (White 1997; Hoad, Robinson & Davies 2010) on Welch's average of
the replications' per-period output: the truncation point that minimises the squared standard error of the mean of
what is left, over batch means of 5 periods (of 1 where a period is already a whole cycle of a shift calendar). The
replications needed for a confidence interval of a given relative half-width follow from the pilot replications'
spread (Law's sequential rule, applied to the pilot's standard deviation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twin.kpi import t_quantile

BATCH = 5  # MSER-5: batch means of 5 observations
MIN_BATCHES = 20  # fewer leave the search (the first half) too few batches to tell a transient from noise


@dataclass(frozen=True)
class Truncation:
    """Where MSER-5 puts the end of a series' initial transient: `periods` observations to delete; `settled` is
    False when that is at the middle of the series, the end of the search (the run is too short to tell, or the
    line never settles)."""

    periods: int
    settled: bool


def mser(series: np.ndarray, batch: int = BATCH) -> Truncation:
    """MSER over batch means of `batch` observations (MSER-5 by default) of one series (e.g. Welch's average of the
    replications' throughput per period)."""
    x = np.asarray(series, dtype=float)
    m = len(x) // batch
    if m < MIN_BATCHES:
        raise ValueError(f"{len(x)} periods make {m} batches of {batch}; MSER needs at least {MIN_BATCHES}")
    z = x[:m * batch].reshape(m, batch).mean(axis=1)
    # for each d, the batches d..m-1: their variance about their own mean over (m - d)², via suffix sums
    s1, s2 = np.cumsum(z[::-1])[::-1], np.cumsum((z * z)[::-1])[::-1]
    left = np.arange(m, 0, -1, dtype=float)  # m - d
    stat = (s2 - s1 * s1 / left) / (left * left)
    # searched over the first half only: near the end the few batches left can have a small variance by chance,
    # and MSER read over the whole series truncates there (a known failure of the rule); a minimum at the half's
    # edge means the transient may go on beyond it
    half = m // 2
    d = int(np.argmin(stat[:half + 1]))
    return Truncation(d * batch, d < half)


def replications_needed(values: np.ndarray, precision: float, confidence: float = 0.95,
                        most: int = 100_000) -> float:
    """The fewest replications whose Student-t interval (at `confidence`) has a half-width within `precision` × the
    mean, from the spread of the pilot `values` (one per replication); nan for a mean of 0 (no relative precision),
    inf beyond `most`."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < 2 or np.mean(x) == 0:
        return np.nan
    sd = float(np.std(x, ddof=1))
    if sd == 0:
        return 2.0
    n = np.arange(2, most + 1, dtype=float)
    ok = t_quantile()(n - 1, 0.5 + confidence / 2) * sd / np.sqrt(n) <= precision * abs(float(np.mean(x)))
    return float(n[np.argmax(ok)]) if ok.any() else np.inf

