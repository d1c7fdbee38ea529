"""Finding a codec parameter whose compressed size just fits a byte budget.

The size is taken as monotone in the parameter (an error bound: larger gives smaller output; a rate: larger
gives larger output). The search brackets the budget between a parameter that fits (size <= budget) and one
that does not, and shrinks the bracket in log-parameter space, alternating plain bisection with a step
interpolated on log size (sizes follow roughly a power law of the parameter, so that step lands close);
bisection every other step keeps the bracket halving whatever the interpolation does. It stops once the
best fitting size is within rel_tol of the budget, i.e. the achieved ratio is at most (1 + rel_tol) times the
target and never below it. The bracket is kept explicitly (each new trial replaces the end it falls on), so a
size that jumps or is not quite monotone still ends the search: at the best fitting size seen, within
max_trials or once the bracket is narrower than min_log_gap. Trials are kept in a list that later searches
(other budgets) start from.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Trial:
    parameter: float
    nbytes: int


@dataclass(frozen=True)
class SearchResult:
    best: Trial | None  # the fitting trial with the largest size; None when nothing fits
    smallest: Trial  # the smallest size seen (for a report of what could be reached)
    trials: int  # evaluations this search made (not counting those reused)


def fits(trial: Trial, budget: int) -> bool:
    return trial.nbytes <= budget


def best_fitting(trials: list[Trial], budget: int) -> Trial | None:
    fitting = [t for t in trials if fits(t, budget)]
    return max(fitting, key=lambda t: (t.nbytes, -t.parameter)) if fitting else None


def close_enough(trial: Trial | None, budget: int, rel_tol: float) -> bool:
    return trial is not None and trial.nbytes >= budget / (1.0 + rel_tol)


def position(parameter: float, small_end: float, large_end: float) -> float:
    """Where a parameter lies between the ends, in log space: 0 at small_end, 1 at large_end."""
    return (math.log(parameter) - math.log(small_end)) / (math.log(large_end) - math.log(small_end))


def nearest_beyond(trials: list[Trial], good: Trial, budget: int, small_end: float, large_end: float) -> Trial | None:
    """The too-big trial closest to good on the large-output side: the other end of the bracket."""
    at = position(good.parameter, small_end, large_end)
    beyond = [t for t in trials if not fits(t, budget) and position(t.parameter, small_end, large_end) > at]
    return min(beyond, key=lambda t: position(t.parameter, small_end, large_end)) if beyond else None


def next_parameter(good: Trial, bad: Trial, budget: int, interpolate: bool) -> float:
    """A parameter strictly between good's and bad's (log space): the midpoint or a log-log interpolation."""
    lg, lb = math.log(good.parameter), math.log(bad.parameter)
    fraction = 0.5
    if interpolate and good.nbytes > 0 and bad.nbytes > good.nbytes:
        span = math.log(bad.nbytes) - math.log(good.nbytes)
        fraction = (math.log(budget) - math.log(good.nbytes)) / span
        fraction = min(max(fraction, 0.05), 0.95)
    return math.exp(lg + fraction * (lb - lg))


def find_parameter(
    evaluate: Callable[[float], int],
    budget: int,
    small_end: float,
    large_end: float,
    trials: list[Trial],
    rel_tol: float = 0.005,
    max_trials: int = 40,
    min_log_gap: float = 1e-7,
) -> SearchResult:
    """Search [small_end, large_end] (parameters giving the smallest / the largest output) for the
    parameter whose size is the largest not above budget. evaluate(parameter) returns compressed bytes;
    trials (shared between searches on the same data) gains every new evaluation."""
    made = 0

    def run(parameter: float) -> Trial:
        nonlocal made
        cached = [t for t in trials if t.parameter == parameter]
        if cached:
            return cached[0]
        made += 1
        trials.append(Trial(parameter, int(evaluate(parameter))))
        return trials[-1]

    good = best_fitting(trials, budget) or run(small_end)
    bad = nearest_beyond(trials, good, budget, small_end, large_end) if fits(good, budget) else None
    if fits(good, budget) and bad is None and good.parameter != large_end:
        bad = run(large_end)
        good, bad = (bad, None) if fits(bad, budget) else (good, bad)
    for step in range(max_trials):
        if bad is None or close_enough(good, budget, rel_tol):
            break
        if abs(math.log(good.parameter) - math.log(bad.parameter)) < min_log_gap:
            break
        trial = run(next_parameter(good, bad, budget, interpolate=step % 2 == 0))
        good, bad = (trial, bad) if fits(trial, budget) else (good, trial)
    return SearchResult(best_fitting(trials, budget), min(trials, key=lambda t: t.nbytes), made)
