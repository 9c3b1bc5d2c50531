"""Statistics for comparing runs: bootstrap intervals, paired tests, corrections, seeds.

Everything works on *item correctness*: for one language, a method's predictions become a ``(seeds, items)``
0/1 matrix (an abstention is wrong; a tie at the top score between k labels earns 1/k when it holds the gold
label, see :mod:`xpe_bench.metrics`). Several seeds of one method are combined by averaging each item's
correctness over the seeds, so an item counts 2/3 correct when two of three seeds got it right. Every test
below therefore uses seeds and items together instead of treating one seed as the truth: the test items are
the resampling unit, the seeds are repeated measurements of each item. (The alternative, a permutation test
stratified by (language, seed) pairs, needs seeds of the two methods paired one to one, which is arbitrary;
averaging needs no pairing and also works for unequal seed counts.)

Per-item sums are integers (correct seeds per item; fractional credit is carried as integer numerators over
a common denominator), so every bootstrap and permutation statistic is computed
in exact integer arithmetic (held in floats, exact below 2**24): ties such as ``|resampled| >= |observed|``
are decided exactly and results are bit-for-bit reproducible.

Conventions: a difference is ``A - B``; intervals are two-sided percentile intervals; every random draw comes
from ``numpy.random.default_rng(seed)`` with a fixed default seed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

import numpy as np
from scipy import stats

from xpe_bench.metrics import Ties, answer_weights

RESAMPLES = 10_000
SEED = 0
CONFIDENCE = 0.95
ALPHA = 0.05
POWER = 0.8

PairedTestName = Literal["mcnemar", "bootstrap", "permutation"]
PAIRED_TESTS: tuple[PairedTestName, ...] = ("mcnemar", "bootstrap", "permutation")
Correction = Literal["holm", "bh", "none"]
CORRECTIONS: tuple[Correction, ...] = ("holm", "bh", "none")
Verdict = Literal["win", "tie", "loss"]

_COLUMN_BUDGET = 512
"""Columns per matrix product (bounds memory: resamples × columns × 8 bytes, 41 MB by default)."""


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a confidence interval."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


# resampling -------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def bootstrap_weights(n: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """``(resamples, n)`` counts: how often each of ``n`` items is drawn in each bootstrap resample.

    Resampling ``n`` items with replacement is the same as weighting item ``i`` by its draw count, so any
    statistic that is a sum over items becomes one matrix product for all resamples at once. The matrix
    depends only on its arguments (cached, read-only): every language of the same size, and both methods of a
    paired comparison, see the same resamples — which is what makes the paired bootstrap paired.
    """
    if n <= 0 or resamples <= 0:
        raise ValueError(f"need n > 0 and resamples > 0, got n={n}, resamples={resamples}")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(resamples, n))
    flat = (draws + np.arange(resamples)[:, None] * n).ravel()
    weights = np.bincount(flat, minlength=resamples * n).reshape(resamples, n).astype(np.float32)
    weights.flags.writeable = False
    return weights


def percentile_interval(replicates: np.ndarray, confidence: float = CONFIDENCE) -> np.ndarray:
    """Two-sided percentile intervals of bootstrap replicates along the first axis: ``[low, high]`` rows."""
    tail = (1.0 - confidence) / 2.0
    return np.quantile(np.asarray(replicates, dtype=np.float64), [tail, 1.0 - tail], axis=0)


def _as_matrix(values: np.ndarray, n: int, what: str) -> np.ndarray:
    """A ``(seeds, n)`` view of one seed's vector or of a seeds × items matrix."""
    matrix = np.atleast_2d(np.asarray(values))
    if matrix.ndim != 2 or matrix.shape[1] != n or matrix.shape[0] == 0:
        raise ValueError(f"{what}: expected shape (n,) or (seeds, n) with n={n}, got {np.shape(values)}")
    return matrix


def _batches(names: Sequence[str], per_name: int) -> list[list[str]]:
    size = max(1, _COLUMN_BUDGET // max(per_name, 1))
    return [list(names[i : i + size]) for i in range(0, len(names), size)]


def _by_size(sizes: Mapping[str, int]) -> dict[int, list[str]]:
    groups: dict[int, list[str]] = {}
    for name, n in sizes.items():
        groups.setdefault(n, []).append(name)
    return groups


# per language: accuracy and macro-F1 ------------------------------------------------------------------------
@dataclass(frozen=True)
class LanguageScores:
    """One language's scores for one method: seed means with bootstrap intervals over test items."""

    n: int
    accuracy: Estimate
    macro_f1: Estimate
    seed_accuracy: tuple[float, ...]
    """Accuracy of each seed, in the order the seeds were given."""
    replicates: np.ndarray = field(repr=False, compare=False)
    """``(resamples,)`` bootstrap replicates of the seed-mean accuracy (for aggregating languages)."""

    @property
    def accuracy_sd(self) -> float:
        """Standard deviation of the accuracy over seeds (NaN for a single seed)."""
        return seed_spread(np.array(self.seed_accuracy))[1]


def _macro_f1(tp: np.ndarray, predicted: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Macro-F1 from per-label counts (last axis), as :func:`xpe_bench.metrics.macro_f1` defines it.

    F1 of label k is ``2 tp / (predicted + gold)``; a label absent from both gold and predictions is not
    scored (its tp is 0, so dividing by 1 instead of 0 adds nothing). There is always a scored label, since
    every item has a gold label.
    """
    denominator = predicted + gold
    return (2.0 * tp / np.maximum(denominator, 1.0)).sum(axis=-1) / (denominator > 0).sum(axis=-1)


def score_languages(
    items: Mapping[str, tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, Sequence[Ties]]],
    num_labels: int,
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> dict[str, LanguageScores]:
    """Accuracy and macro-F1 with percentile bootstrap intervals over test items, for many languages.

    ``items`` maps a language to ``(gold, pred)`` or ``(gold, pred, ties)``: gold labels ``(n,)``,
    predictions ``(n,)`` or ``(seeds, n)`` (``-1`` = abstention) and, optionally, each seed's ties at the top
    score. Items are credited as :mod:`xpe_bench.metrics` defines (abstentions wrong, ties 1/k), from its
    integer answer weights, so every count stays an exact integer. With several seeds the estimate is the
    mean over seeds and every bootstrap resample draws the same items for all seeds. All languages of the
    same size share one resampling matrix and are scored with a few matrix products (per-label counts of
    every resample), which keeps 205 languages × 204 items × 10,000 resamples to about a second.
    """
    labels = np.arange(num_labels)
    prepared: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}
    for lang, (gold_raw, pred_raw, *rest) in items.items():
        gold = np.asarray(gold_raw)
        if gold.ndim != 1 or gold.size == 0:
            raise ValueError(f"{lang}: gold must be a non-empty vector, got shape {gold.shape}")
        pred = _as_matrix(pred_raw, gold.size, f"{lang} predictions")
        if gold.min() < 0 or gold.max() >= num_labels or pred.min() < -1 or pred.max() >= num_labels:
            raise ValueError(f"{lang}: labels must lie in 0..{num_labels - 1} (predictions may be -1)")
        ties: Sequence[Ties] = rest[0] if rest else [{}] * pred.shape[0]
        if len(ties) != pred.shape[0]:
            raise ValueError(f"{lang}: {len(ties)} sets of ties for {pred.shape[0]} seeds")
        per_seed = [answer_weights(gold, row, num_labels, tied) for row, tied in zip(pred, ties, strict=True)]
        denominator = math.lcm(*(d for _, d in per_seed))
        weights = np.stack([w * (denominator // d) for w, d in per_seed])  # (S, n, K)
        prepared[lang] = (gold, weights, denominator)

    shapes: dict[tuple[int, int], list[str]] = {}
    for lang, (gold, weights, _) in prepared.items():
        shapes.setdefault((weights.shape[0], gold.size), []).append(lang)
    results: dict[str, LanguageScores] = {}
    for (seeds, n), langs in shapes.items():
        bootstrap = bootstrap_weights(n, resamples, seed)
        for batch in _batches(langs, num_labels * (1 + 2 * seeds)):
            # one denominator for the batch: counts are integers, divided by n * scale at the end
            scale = math.lcm(*(prepared[lang][2] for lang in batch))
            gold = np.stack([prepared[lang][0] for lang in batch])  # (L, n)
            answers = np.stack([prepared[lang][1] * (scale // prepared[lang][2]) for lang in batch])
            gold_hot = gold[:, None, :, None] == labels  # (L, 1, n, K)
            # per language: gold counts, answer mass per seed, answer mass on the gold label per seed
            hot = np.concatenate([gold_hot * scale, answers, answers * gold_hot], axis=1)  # (L, 1 + 2S, n, K)
            matrix = hot.transpose(2, 0, 1, 3).reshape(n, -1).astype(np.float32)
            counts = (bootstrap @ matrix).astype(np.float64).reshape(resamples, *hot.shape[:2], num_labels)
            accuracy, f1 = _accuracy_and_f1(counts, seeds, n * scale)  # (B, L) each
            observed = hot.sum(axis=2).astype(np.float64)  # every item drawn once
            point_accuracy, point_f1 = _accuracy_and_f1(observed[None], seeds, n * scale)
            accuracy_ci = percentile_interval(accuracy, confidence)
            f1_ci = percentile_interval(f1, confidence)
            per_seed_accuracy = observed[:, 1 + seeds :].sum(axis=-1) / (n * scale)  # (L, S)
            for i, lang in enumerate(batch):
                results[lang] = LanguageScores(
                    n=n,
                    accuracy=Estimate(float(point_accuracy[0, i]), *map(float, accuracy_ci[:, i])),
                    macro_f1=Estimate(float(point_f1[0, i]), *map(float, f1_ci[:, i])),
                    seed_accuracy=tuple(map(float, per_seed_accuracy[i])),
                    replicates=accuracy[:, i],
                )
    return {lang: results[lang] for lang in items}


def _accuracy_and_f1(counts: np.ndarray, seeds: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Seed-mean accuracy and macro-F1 from ``(..., 1 + 2 seeds, labels)`` counts (gold, predicted, tp);
    ``n`` is the number of items times the counts' denominator."""
    gold = counts[..., :1, :]
    predicted = counts[..., 1 : 1 + seeds, :]
    tp = counts[..., 1 + seeds :, :]
    return tp.sum(axis=(-2, -1)) / (n * seeds), _macro_f1(tp, predicted, gold).mean(axis=-1)


def score_language(
    gold: np.ndarray,
    pred: np.ndarray,
    num_labels: int,
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> LanguageScores:
    """:func:`score_languages` for one language."""
    return score_languages(
        {"": (gold, pred)}, num_labels, resamples=resamples, seed=seed, confidence=confidence
    )[""]


# two methods on the same items ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PairedResult:
    """Method A against method B on one language's items (paired by item)."""

    test: PairedTestName
    n: int
    accuracy_a: float
    accuracy_b: float
    difference: Estimate
    """``accuracy_a - accuracy_b`` with its paired percentile bootstrap interval (whatever the test)."""
    p_value: float
    a_only: float
    """Items A gets right and B wrong (seed-averaged: the sum of the positive per-item differences)."""
    b_only: float
    discordance: float
    """Mean squared per-item difference: the discordant proportion for one seed per method."""
    mde: float
    """:func:`minimum_detectable_effect` at this language's size and observed discordance."""
    replicates: np.ndarray = field(repr=False, compare=False)
    """``(resamples,)`` paired bootstrap replicates of the difference."""


def mcnemar_exact(a_only: int, b_only: int, *, mid_p: bool = False) -> float:
    """Exact two-sided McNemar test: the discordant pairs are Binomial(a_only + b_only, 1/2) under H0.

    ``p = min(1, 2 P(X <= min(a_only, b_only)))``; the mid-p variant subtracts ``P(X = min)`` once (less
    conservative, no longer guaranteed to hold the level exactly).
    """
    m = a_only + b_only
    if m == 0:
        return 1.0
    k = min(a_only, b_only)
    p = 2.0 * stats.binom.cdf(k, m, 0.5)
    if mid_p:
        p -= stats.binom.pmf(k, m, 0.5)
    return float(min(1.0, p))


def sign_flip_exact(differences: np.ndarray) -> float:
    """Exact two-sided sign-flip permutation p-value of ``sum(differences)`` for integer per-item differences.

    Under H0 the two methods' labels are exchangeable within an item, so each difference keeps or flips its
    sign with probability 1/2. The null distribution of the sum is computed exactly (no Monte Carlo): items
    with equal ``|d|`` contribute a binomial, and the binomials of the distinct values are convolved. For 0/1
    correctness (one seed per method) this *is* the exact McNemar test; with seed-averaged correctness it is
    its natural generalisation.
    """
    d = np.asarray(differences, dtype=np.int64)
    observed = abs(int(d.sum()))
    values, multiplicity = np.unique(np.abs(d[d != 0]), return_counts=True)
    distribution = np.ones(1)
    for value, m in zip(values.tolist(), multiplicity.tolist(), strict=True):
        step = np.zeros(2 * value * m + 1)
        step[:: 2 * value] = stats.binom.pmf(np.arange(m + 1), m, 0.5)
        distribution = np.convolve(distribution, step)
    half = (distribution.size - 1) // 2
    extreme = np.abs(np.arange(-half, half + 1)) >= observed
    return float(min(1.0, distribution[extreme].sum()))


def minimum_detectable_effect(
    n: int, discordance: float, *, alpha: float = ALPHA, power: float = POWER
) -> float:
    """Smallest accuracy difference a paired test on ``n`` items detects with ``power`` at level ``alpha``.

    Normal approximation to McNemar's test: the mean per-item difference has null variance
    ``discordance / n`` (``discordance`` = proportion of discordant items, or the mean squared per-item
    difference with seeds), so ``MDE = (z_{1-alpha/2} + z_power) * sqrt(discordance / n)``. The null
    variance is used for both terms (Connor 1987 uses ``discordance - MDE**2`` under the alternative, which
    gives a slightly smaller MDE); by exact enumeration, the exact McNemar test at n = 204 has about 78%
    power at this difference, because it is discrete and conservative (docs/statistics.md). The
    approximation needs a fair number of discordant items (say 20 or more); below that, read it as an order
    of magnitude. NaN without discordant items.
    """
    if n <= 0 or discordance <= 0:
        return math.nan
    return float((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * math.sqrt(discordance / n))


_MAX_DENOMINATOR = 5040
"""Largest denominator of fractional credit accepted (lcm(1..10): ties among up to ten labels)."""


def _as_fractions(correct: np.ndarray, what: str) -> tuple[np.ndarray, int]:
    """Credit in [0, 1] as integer numerators over their least common denominator (1 for 0/1 correctness).

    Fractional credit (a tie of k labels earns 1/k, :mod:`xpe_bench.metrics`) arrives as floats; it is
    recovered exactly as a fraction so that the tests below keep working in integer arithmetic.
    """
    values = np.asarray(correct, dtype=np.float64)
    if values.size and (values.min() < 0 or values.max() > 1):
        raise ValueError(f"{what}: correctness must lie in [0, 1]")
    denominator = math.lcm(
        1, *(Fraction(v).limit_denominator(_MAX_DENOMINATOR).denominator for v in np.unique(values).tolist())
    )
    numerators = np.rint(values * denominator)
    if not np.allclose(numerators, values * denominator, rtol=0, atol=1e-6):
        raise ValueError(f"{what}: credit must be fractions with denominators up to {_MAX_DENOMINATOR}")
    return numerators.astype(np.int64), denominator


def _integer_differences(a: np.ndarray, b: np.ndarray, a_scale: int, b_scale: int) -> tuple[np.ndarray, int]:
    """Per-item differences of seed-mean credit as integers, and the scale they are multiplied by.

    ``a`` and ``b`` hold integer numerators ``(seeds, n)`` over ``a_scale`` and ``b_scale``.
    """
    a_total, b_total = a.shape[0] * a_scale, b.shape[0] * b_scale
    scale = math.lcm(a_total, b_total)
    return a.sum(axis=0) * (scale // a_total) - b.sum(axis=0) * (scale // b_total), scale


def paired_tests(
    pairs: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    test: PairedTestName = "permutation",
    mid_p: bool = False,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
    alpha: float = ALPHA,
    power: float = POWER,
) -> dict[str, PairedResult]:
    """Paired tests of A against B per language.

    ``pairs`` maps a language to ``(correct_a, correct_b)``: correctness ``(n,)`` or ``(seeds, n)``, columns
    aligned by item: 0/1, or fractional credit (1/k for a tie of k labels). Tests:

    - ``mcnemar``: exact McNemar (one seed per method only; ``mid_p`` for the mid-p variant);
    - ``permutation``: exact sign-flip test of the seed-averaged per-item differences;
    - ``bootstrap``: paired bootstrap, ``p = (1 + #{|D* - D| >= |D|}) / (resamples + 1)`` where ``D*`` are
      the resampled differences (the bootstrap distribution shifted to the null; p >= 1/(resamples + 1)).

    Every result carries the paired percentile bootstrap interval of the difference.
    """
    if test not in PAIRED_TESTS:
        raise ValueError(f"unknown test {test!r}; expected one of {PAIRED_TESTS}")
    prepared: dict[str, tuple[np.ndarray, int, float, float]] = {}
    for lang, (correct_a, correct_b) in pairs.items():
        n = np.shape(correct_a)[-1]
        a, a_scale = _as_fractions(_as_matrix(correct_a, n, f"{lang} correct_a"), f"{lang} correct_a")
        b, b_scale = _as_fractions(_as_matrix(correct_b, n, f"{lang} correct_b"), f"{lang} correct_b")
        if test == "mcnemar" and (a.shape[0] > 1 or b.shape[0] > 1 or a_scale > 1 or b_scale > 1):
            raise ValueError(
                "McNemar's test needs one seed per method and 0/1 correctness; use the permutation test"
            )
        d, scale = _integer_differences(a, b, a_scale, b_scale)
        prepared[lang] = (d, scale, float(a.mean()) / a_scale, float(b.mean()) / b_scale)

    results: dict[str, PairedResult] = {}
    for n, langs in _by_size({lang: value[0].size for lang, value in prepared.items()}).items():
        weights = bootstrap_weights(n, resamples, seed)
        for batch in _batches(langs, 1):
            totals = weights @ np.stack([prepared[lang][0] for lang in batch], axis=1).astype(np.float32)
            totals = totals.astype(np.float64)  # exact integers: resampled sums of integer differences
            scales = np.array([prepared[lang][1] for lang in batch])
            all_replicates = totals / (n * scales)
            intervals = percentile_interval(all_replicates, confidence)
            for column, lang in enumerate(batch):
                d, scale, accuracy_a, accuracy_b = prepared[lang]
                observed = int(d.sum())
                if test == "mcnemar":
                    p_value = mcnemar_exact(int((d > 0).sum()), int((d < 0).sum()), mid_p=mid_p)
                elif test == "permutation":
                    p_value = sign_flip_exact(d)
                else:
                    extreme = np.abs(totals[:, column] - observed) >= abs(observed)
                    p_value = float((1 + extreme.sum()) / (resamples + 1))
                discordance = float(np.sum(d.astype(np.float64) ** 2) / (n * scale**2))
                results[lang] = PairedResult(
                    test=test,
                    n=n,
                    accuracy_a=accuracy_a,
                    accuracy_b=accuracy_b,
                    difference=Estimate(observed / (n * scale), *map(float, intervals[:, column])),
                    p_value=p_value,
                    a_only=float(d[d > 0].sum() / scale),
                    b_only=float(-d[d < 0].sum() / scale),
                    discordance=discordance,
                    mde=minimum_detectable_effect(n, discordance, alpha=alpha, power=power),
                    replicates=all_replicates[:, column],
                )
    return {lang: results[lang] for lang in pairs}


def paired_test(
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    *,
    test: PairedTestName = "permutation",
    mid_p: bool = False,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> PairedResult:
    """:func:`paired_tests` for one language."""
    return paired_tests(
        {"": (correct_a, correct_b)},
        test=test,
        mid_p=mid_p,
        resamples=resamples,
        seed=seed,
        confidence=confidence,
    )[""]


# across languages -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SignedRankResult:
    statistic: float
    p_value: float
    n: int
    """Languages with a non-zero difference (zero differences are dropped, Wilcoxon's convention)."""


def wilcoxon_signed_rank(differences: Sequence[float] | np.ndarray) -> SignedRankResult:
    """Two-sided Wilcoxon signed-rank test of per-language differences (scipy; p = 1 when all are zero)."""
    d = np.asarray(differences, dtype=np.float64)
    nonzero = int(np.count_nonzero(d))
    if nonzero == 0:
        return SignedRankResult(statistic=0.0, p_value=1.0, n=0)
    result = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
    return SignedRankResult(statistic=float(result.statistic), p_value=float(result.pvalue), n=nonzero)


def _check_pvalues(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("p-values must be a vector of numbers in [0, 1]")
    return p


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (controls the family-wise error rate)."""
    p = _check_pvalues(p_values)
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted


def benjamini_hochberg(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg step-up adjusted p-values (controls the false discovery rate)."""
    p = _check_pvalues(p_values)
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = m / np.arange(1, m + 1) * p[order]
    stepped = np.minimum.accumulate(scaled[::-1])[::-1]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted


def adjust_pvalues(p_values: Sequence[float] | np.ndarray, correction: Correction) -> np.ndarray:
    if correction == "holm":
        return holm(p_values)
    if correction == "bh":
        return benjamini_hochberg(p_values)
    if correction == "none":
        return _check_pvalues(p_values).copy()
    raise ValueError(f"unknown correction {correction!r}; expected one of {CORRECTIONS}")


def verdict(difference: float, adjusted_p: float, alpha: float = ALPHA) -> Verdict:
    """``win``/``loss``: significant after correction, for A/for B; ``tie``: no significant difference."""
    if adjusted_p < alpha and difference != 0:
        return "win" if difference > 0 else "loss"
    return "tie"


@dataclass(frozen=True)
class WinTieLoss:
    wins: int
    ties: int
    losses: int

    @classmethod
    def count(cls, verdicts: Sequence[Verdict]) -> WinTieLoss:
        return cls(verdicts.count("win"), verdicts.count("tie"), verdicts.count("loss"))

    def __str__(self) -> str:
        return f"{self.wins}/{self.ties}/{self.losses}"

    def to_dict(self) -> dict[str, int]:
        return {"wins": self.wins, "ties": self.ties, "losses": self.losses}


def two_stage_interval(
    values: np.ndarray,
    replicates: np.ndarray,
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> Estimate:
    """Mean over languages with a two-stage (languages, then items) percentile bootstrap interval.

    ``values`` holds each language's estimate ``(L,)`` and ``replicates`` its item-level bootstrap replicates
    ``(L, B)``. One resample draws ``L`` languages with replacement and, for each drawn language, one of its
    item-level replicates at random; the interval therefore covers both which languages happen to be in the
    group and which test items happen to be in each language's test set.
    """
    values = np.asarray(values, dtype=np.float64)
    replicates = np.asarray(replicates, dtype=np.float64)
    if values.ndim != 1 or values.size == 0 or replicates.shape[0] != values.size:
        raise ValueError(
            f"need L >= 1 values and (L, B) replicates, got {values.shape} and {replicates.shape}"
        )
    rng = np.random.default_rng(seed)
    languages = rng.integers(0, values.size, size=(resamples, values.size))
    draws = rng.integers(0, replicates.shape[1], size=(resamples, values.size))
    means = replicates[languages, draws].mean(axis=1)
    return Estimate(float(values.mean()), *map(float, percentile_interval(means, confidence)))


# seeds ------------------------------------------------------------------------------------------------------
def seed_spread(per_seed: np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation over seeds (NaN sd for one seed).

    ``per_seed`` is ``(S,)`` (one language) or ``(S, L)``: then each seed's mean over the ``L`` languages is
    taken first, so the sd says how much a group's mean moves when the whole experiment is re-run.
    """
    values = np.asarray(per_seed, dtype=np.float64)
    if values.ndim == 2:
        values = values.mean(axis=1)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"expected (seeds,) or (seeds, languages), got shape {np.shape(per_seed)}")
    sd = float(values.std(ddof=1)) if values.size > 1 else math.nan
    return float(values.mean()), sd
