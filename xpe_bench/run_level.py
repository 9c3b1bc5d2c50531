"""Run-level statistics: two systems compared with the *run* (seed) as the unit of replication.

The item-level tests of :mod:`xpe_bench.statistics` hold the seeds fixed: they ask whether these particular
runs differ on these test items. A seed is a random draw (initialisation, data order, dropout), and one
re-run can move a section's mean accuracy by several points, which an item-level test mistakes for a
difference between methods. The tests here put the runs' spread into the uncertainty of each system's mean.

Input per system is a ``(runs, languages)`` matrix: each run's accuracy on each language of the set.

**Estimate.** ``Δ = mean over languages of (mean over A's runs − mean over B's runs)``, the same number as
the item-level Δ (the mean per-language difference of seed-mean accuracies).

**Hierarchical bootstrap (seeds, then languages).** Model: a run's accuracy on a language is the
language's level for that method, plus the run's overall luck (a seed effect), plus noise particular to the
run and the language (which items it happened to get right, seed × language). The first stage resamples each
system's runs and takes the mean of their per-run means over the language set: its spread holds the seed
effect *and* all the run-and-language noise, averaged over the set. The second stage resamples languages, but
only their *heterogeneity* — how much the true difference varies between languages, which a new choice of
languages would change. The raw per-language differences also carry the run noise of stage one, so they are
shrunk towards their mean until their variance is the method-of-moments estimate of the heterogeneity,
``τ² = s²_Δ − σ²_A / S_A − σ²_B / S_B`` (``s²_Δ`` the variance of the per-language differences, ``σ²`` each
system's seed × language residual mean square; 0 when negative), as Davison and Hinkley (1997, §3.8)
adjust the upper-level residuals of two-level data. Resampling both stages raw would count the run noise
twice; at 2 languages of 40 items that doubles the interval. Test items are not resampled as a third stage:
each per-language accuracy already carries its items' sampling noise, and the two stages above contain it
(the "ultimate cluster" argument of survey sampling, Cochran 1977 §11). Each stage draws ``n − 1`` of its
``n`` units (McCarthy and Snowden 1985): the bootstrap variance of a mean of ``n − 1`` draws is ``s² / n``,
unbiased, where the usual ``n`` draws give ``s² (n − 1) / n`` — two thirds of the truth at three seeds.

**p-value and interval.** With three runs per system no resampling distribution is calibrated on its own
(three values give ten distinct resamples), so the bootstrap supplies the *standard error* and the small
number of runs is accounted for as in Welch's test: ``t = Δ / SE`` is referred to Student's t with
Satterthwaite degrees of freedom from the variance components ``s²_A / S_A``, ``s²_B / S_B`` (between-run
variance of each system's mean over the set, over its run count) and ``τ² / L``; the interval is
``Δ ± t_{df, 0.975} SE``. Without heterogeneity between languages this is Welch's t-test on the runs'
means, with the bootstrap's standard error.

**Paired seeds.** When both systems ran the same seeds and seed ``k`` of A shares something real with seed
``k`` of B (the same data order), the runs can be paired: a resample then draws seed *numbers*, used for
both systems, and the seed component is the variance of the per-seed differences (``S − 1`` degrees of
freedom). Items and languages are always paired: both systems are scored on the same ones, and a resample
draws the same languages for both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from xpe_bench.statistics import ALPHA, CONFIDENCE, POWER, RESAMPLES, SEED, Estimate

MAX_SEEDS = 1000
"""The power analysis searches seed counts up to this (see :func:`seeds_needed`)."""


@dataclass(frozen=True)
class VarianceComponents:
    """The parts of ``Var(Δ)`` the run-level test estimates (squared accuracy units)."""

    seeds_a: float
    """``s²_A / S_A``: between-run variance of A's mean over the language set, over its run count (paired
    seeds: the variance of the per-seed differences over the seed count, and ``seeds_b`` is 0)."""
    seeds_b: float
    languages: float
    """``τ² / L``: heterogeneity of the per-language differences (their variance less the run noise in them,
    at least 0) over the language count; 0 for a single language."""
    df_a: int
    df_b: int
    df_languages: int

    @property
    def total(self) -> float:
        return self.seeds_a + self.seeds_b + self.languages

    @property
    def df(self) -> float:
        """Satterthwaite's degrees of freedom of the total (NaN when every component is zero)."""
        parts = [(self.seeds_a, self.df_a), (self.seeds_b, self.df_b), (self.languages, self.df_languages)]
        denominator = sum(value**2 / df for value, df in parts if df > 0 and value > 0)
        return self.total**2 / denominator if denominator > 0 else math.nan


def _matrices(per_run_a: np.ndarray, per_run_b: np.ndarray, paired: bool) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(per_run_a, dtype=np.float64)
    b = np.asarray(per_run_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or a.shape[1] == 0:
        raise ValueError(
            f"need (runs, languages) matrices over the same languages, got {np.shape(per_run_a)} "
            f"and {np.shape(per_run_b)}"
        )
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError(
            f"a run-level test needs at least 2 runs per system, got {a.shape[0]} and {b.shape[0]}"
        )
    if paired and a.shape[0] != b.shape[0]:
        raise ValueError(f"paired seeds need as many runs in both systems, got {a.shape[0]} and {b.shape[0]}")
    return a, b


def _residual_variance(matrix: np.ndarray) -> float:
    """Seed × language residual mean square of a ``(runs, languages)`` matrix (two-way decomposition)."""
    runs, languages = matrix.shape
    residuals = (
        matrix - matrix.mean(axis=1, keepdims=True) - matrix.mean(axis=0, keepdims=True) + matrix.mean()
    )
    return float((residuals**2).sum() / ((runs - 1) * (languages - 1)))


def variance_components(
    per_run_a: np.ndarray, per_run_b: np.ndarray, *, paired: bool = False
) -> VarianceComponents:
    """The method-of-moments variance components of Δ (see the module docstring)."""
    a, b = _matrices(per_run_a, per_run_b, paired)
    runs_a, languages = a.shape
    runs_b = b.shape[0]
    if paired:
        differences = a - b
        per_seed = differences.mean(axis=1)
        seeds_a, seeds_b, df_b = float(per_seed.var(ddof=1) / runs_a), 0.0, 0
    else:
        seeds_a = float(a.mean(axis=1).var(ddof=1) / runs_a)
        seeds_b = float(b.mean(axis=1).var(ddof=1) / runs_b)
        df_b = runs_b - 1
    language_part = 0.0
    if languages > 1:
        spread = float((a.mean(axis=0) - b.mean(axis=0)).var(ddof=1))
        if paired:
            noise = _residual_variance(differences) / runs_a
        else:
            noise = _residual_variance(a) / runs_a + _residual_variance(b) / runs_b
        language_part = max(0.0, spread - noise) / languages
    return VarianceComponents(
        seeds_a=seeds_a,
        seeds_b=seeds_b,
        languages=language_part,
        df_a=runs_a - 1,
        df_b=df_b,
        df_languages=languages - 1,
    )


def _weights(rng: np.random.Generator, units: int, resamples: int) -> np.ndarray:
    """``(resamples, units)`` draw counts of ``units − 1`` draws with replacement, divided by ``units − 1``
    (each row sums to 1); a single unit always has weight 1."""
    if units == 1:
        return np.ones((resamples, 1))
    draws = rng.integers(0, units, size=(resamples, units - 1))
    flat = (draws + np.arange(resamples)[:, None] * units).ravel()
    counts = np.bincount(flat, minlength=resamples * units).reshape(resamples, units)
    return counts / (units - 1)


def hierarchical_bootstrap(
    per_run_a: np.ndarray,
    per_run_b: np.ndarray,
    *,
    paired: bool = False,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> np.ndarray:
    """``(resamples,)`` replicates of Δ: runs resampled per system (seed numbers for both when ``paired``),
    then languages, whose differences are shrunk to the heterogeneity between languages (module
    docstring); each stage draws ``n − 1`` of its ``n`` units."""
    a, b = _matrices(per_run_a, per_run_b, paired)
    rng = np.random.default_rng(seed)
    if paired:
        runs = _weights(rng, a.shape[0], resamples) @ (a - b).mean(axis=1)
    else:
        runs = _weights(rng, a.shape[0], resamples) @ a.mean(axis=1) - _weights(
            rng, b.shape[0], resamples
        ) @ b.mean(axis=1)
    languages = a.shape[1]
    if languages == 1:
        return runs
    effects = a.mean(axis=0) - b.mean(axis=0)
    effects = effects - effects.mean()
    spread = float(effects.var(ddof=1))
    heterogeneity = variance_components(a, b, paired=paired).languages * languages
    shrink = math.sqrt(heterogeneity / spread) if spread > 0 else 0.0
    return runs + _weights(rng, languages, resamples) @ (shrink * effects)


@dataclass(frozen=True)
class RunLevelResult:
    """System A against system B with the runs as the unit (differences are A − B)."""

    difference: Estimate
    """Δ with its run-level interval, ``Δ ± t_{df} SE``."""
    standard_error: float
    """Standard deviation of the hierarchical bootstrap replicates of Δ."""
    df: float
    p_value: float
    languages: int
    paired: bool
    components: VarianceComponents
    run_means_a: tuple[float, ...]
    """Each run's mean accuracy over the language set."""
    run_means_b: tuple[float, ...]

    @property
    def t_test_p(self) -> float:
        """Cross-check: Welch's t-test (paired seeds: the paired t-test) on the runs' mean accuracies, which
        treats the languages as fixed (:func:`run_mean_t_test`)."""
        return run_mean_t_test(self.run_means_a, self.run_means_b, paired=self.paired)

    def seeds_needed(self, *, alpha: float = ALPHA, power: float = POWER) -> int | None:
        """Runs per system for ``power`` at this Δ (:func:`seeds_needed`)."""
        return seeds_needed(self.difference.value, self.components, alpha=alpha, power=power)

    def verdict(self, alpha: float = ALPHA) -> str:
        """``better`` / ``worse`` (A than B, p < alpha) or ``no difference shown``."""
        if self.p_value < alpha and self.difference.value != 0:
            return "better" if self.difference.value > 0 else "worse"
        return "no difference shown"


def run_level_test(
    per_run_a: np.ndarray,
    per_run_b: np.ndarray,
    *,
    paired: bool = False,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> RunLevelResult:
    """A against B with the runs as the unit: hierarchical bootstrap standard error, Student-t reference
    with Satterthwaite degrees of freedom (module docstring). Needs at least two runs per system: a single
    run has no spread to measure."""
    a, b = _matrices(per_run_a, per_run_b, paired)
    difference = float(a.mean() - b.mean())
    components = variance_components(a, b, paired=paired)
    error = float(hierarchical_bootstrap(a, b, paired=paired, resamples=resamples, seed=seed).std(ddof=1))
    df = components.df
    if error == 0 or math.isnan(df):
        p_value = 1.0 if difference == 0 else 0.0
        low = high = difference
    else:
        p_value = float(2 * stats.t.sf(abs(difference) / error, df))
        half = float(stats.t.ppf(0.5 + confidence / 2, df)) * error
        low, high = difference - half, difference + half
    return RunLevelResult(
        difference=Estimate(difference, low, high),
        standard_error=error,
        df=df,
        p_value=p_value,
        languages=a.shape[1],
        paired=paired,
        components=components,
        run_means_a=tuple(map(float, a.mean(axis=1))),
        run_means_b=tuple(map(float, b.mean(axis=1))),
    )


def run_mean_t_test(
    run_means_a: Sequence[float] | np.ndarray,
    run_means_b: Sequence[float] | np.ndarray,
    *,
    paired: bool = False,
) -> float:
    """Welch's t-test (paired: the paired t-test) on each run's mean accuracy over the language set (scipy).

    1 when the two sets of means are equal and have no spread; 0 when they differ without spread."""
    means_a = np.asarray(run_means_a, dtype=np.float64)
    means_b = np.asarray(run_means_b, dtype=np.float64)
    if paired and means_a.size != means_b.size:
        raise ValueError(
            f"paired seeds need as many runs in both systems, got {means_a.size} and {means_b.size}"
        )
    spread = np.ptp(means_a - means_b) if paired else max(np.ptp(means_a), np.ptp(means_b))
    if spread == 0:
        return 1.0 if means_a.mean() == means_b.mean() else 0.0
    if paired:
        return float(stats.ttest_rel(means_a, means_b).pvalue)
    return float(stats.ttest_ind(means_a, means_b, equal_var=False).pvalue)


def seeds_needed(
    difference: float,
    components: VarianceComponents,
    *,
    alpha: float = ALPHA,
    power: float = POWER,
    max_seeds: int = MAX_SEEDS,
) -> int | None:
    """The smallest number of runs per system at which the run-level test detects ``difference`` with
    ``power`` at level ``alpha``, taking the observed spreads as the truth.

    With ``n`` runs per system each seed component becomes ``s² / n`` (the observed between-run variance
    held fixed), the language component stays (more seeds do not add languages), the degrees of freedom
    follow Satterthwaite, and the power of the two-sided t-test is that of a noncentral t with
    noncentrality ``|difference| / SE_n``. None when ``difference`` is 0 or no ``n`` up to ``max_seeds``
    gets there (the language spread alone is then too large). A post-hoc figure: with three runs the
    observed spread is itself uncertain (a standard deviation from 2 degrees of freedom is off by a factor
    of two or more about one time in four), so read it as an order of magnitude for planning.
    """
    if difference == 0 or math.isnan(difference):
        return None
    n = np.arange(2, max_seeds + 1)
    seeds_a = components.seeds_a * (components.df_a + 1) / n
    seeds_b = components.seeds_b * (components.df_b + 1) / n
    total = seeds_a + seeds_b + components.languages
    if not (total > 0).all():
        return 2  # no spread at all: two runs each already settle it
    denominator = (seeds_a**2 + seeds_b**2) / (n - 1)
    if components.df_languages > 0:
        denominator = denominator + components.languages**2 / components.df_languages
    df = total**2 / denominator
    noncentrality = abs(difference) / np.sqrt(total)
    critical = stats.t.ppf(1 - alpha / 2, df)
    # the far tail (rejecting with the wrong sign) underflows to NaN in scipy for large noncentralities
    wrong_sign = np.nan_to_num(stats.nct.cdf(-critical, df, noncentrality), nan=0.0)
    achieved = stats.nct.sf(critical, df, noncentrality) + wrong_sign
    reached = np.flatnonzero(achieved >= power)
    return int(n[reached[0]]) if reached.size else None
