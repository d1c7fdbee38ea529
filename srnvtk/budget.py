"""Fit a trained model's file into a byte budget: grow its latent grid if the file falls short, then drop its
least important latent entries until the file fits.

gzip shrinks the latent codes by an amount only the trained values decide, so no size estimate made before
training can fill a budget closely. Rate control therefore trains a latent tensor somewhat larger than the
budget allows and, once the values are known, keeps the largest set of entries whose file fits: the entries
(single values, one channel at one grid or wavelet coefficient position; whole positions where pruning kept or
dropped positions) ranked by their squared magnitude (summed over the channels for positions), the count found
by bisection on the real file's bytes (srnvtk.fileformat.srn_file_bytes). For wavelet coefficients this is the
classic wavelet thresholding; for a plain grid it zeroes the values that move the features least.

A single-network file may instead store its codes with fewer bits (down to FEWEST_FIT_BITS): for each bit
count the fit finds the entries that then fit and keeps the choice whose stored latent tensor is closest to the
trained one (rounding of the kept entries plus the squares of the dropped ones). One bit fewer saves about as
much as dropping a quarter of the entries, and rounds far less away.

Where the trained codes compress so well that even the whole grid leaves much of the budget unused, an
unpruned grid is first resampled to a finer resolution (trilinearly, so the function hardly changes): the finest
whose whole file, measured, still fits GROWTH_FILL of the budget, so growth does not force a trim; the
fine-tuning that follows the fit puts the new entries to work.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from .config import PruningConfig
from .errors import SettingsError
from .fileformat import SourceInfo, srn_file_bytes
from .models.fvsrn import grid_shape_for
from .quantize import fake_quantize, storage_tensors
from .volume import Geometry

if TYPE_CHECKING:
    from .models.protocol import SRNModel

# Stop the bisection once the kept count is known to within this fraction of the entries (or one entry):
# the bytes it leaves unused are a small fraction of the budget.
COUNT_TOLERANCE = 1e-4
GROWTH_TRIGGER = 0.97  # a whole-grid file below this share of the budget grows the grid first
GROWTH_MARGIN = 1.15  # the estimate of the grid the budget pays for, times this: the largest resolution measured
# Grow only to a grid whose file takes at most this share of the budget: the new entries' codes compress less once
# the fine-tune has trained them, and the fit after it must not trim a resampled grid (benchmarks/README.md: a
# grid grown to fill its budget ended 13% over it after the fine-tune, -2.75 dB).
GROWTH_FILL = 0.9
GROWTH_ROUNDS = 3
# A single-network file over its budget may store its latent codes with as few as this many bits instead of
# dropping entries (fit_latent_to_budget). Central 128^3 of the shared volume, ratio 200, 2,000 steps: 7-bit
# codes of the whole grid cost 0.04 dB at the fit where a trim of 26% cost 0.7 dB (equal after the fine-tune).
FEWEST_FIT_BITS = 4

Measure = Callable[[torch.Tensor | None], int]  # file bytes with this keep mask (None: the model's own)


def file_size_probe(model: SRNModel, source: SourceInfo, pruning: PruningConfig | None) -> Measure:
    """A function giving the bytes of the model's file (with its current settings, `model.config`) if it kept
    only the given latent entries."""
    return lambda keep: srn_file_bytes(model.config, storage_tensors(model, keep), source, pruning)


def ranked_entries(model: SRNModel) -> tuple[torch.Tensor, torch.Tensor]:
    """(order, current keep mask): the currently kept entries' flat indices into the keep mask's shape, most
    important first, and that mask (all true where nothing is pruned yet).

    The ranking: the learned masks' unit importance where pruning left one (`unit_importance`, see
    FVSRN.bake_masks), else the entries' squared magnitude (summed over the channels where the mask keeps whole
    positions).
    """
    latent = model.latent.detach()
    keep = model.grid_keep
    learned = model.unit_importance
    if keep is None:
        # Unpruned: single entries (one channel at one position). On the shared volume's central 128^3 this
        # beat dropping whole positions by 1.2 dB at ratio 100 and 0.3 dB at ratio 500 (benchmarks/README.md):
        # the keep mask costs more bits, but fewer important values go.
        units = learned.shape if learned is not None else tuple(latent.shape)
        keep = torch.ones(units, dtype=torch.bool, device=latent.device)
    if learned is not None:
        importance = learned.to(device=latent.device, dtype=torch.float64)
    else:
        squares = latent.double().square()
        importance = squares.sum(dim=0, keepdim=True) if keep.shape[0] == 1 else squares
    # Below every real score (learned ones can be negative), so no dropped entry comes back.
    importance = importance.masked_fill(~keep, -torch.inf).reshape(-1)
    order = torch.argsort(importance, descending=True, stable=True)
    return order[: int(keep.sum())], keep


def keep_top(order: torch.Tensor, count: int, like: torch.Tensor) -> torch.Tensor:
    """A keep mask of like's shape holding the first count entries of order."""
    keep = torch.zeros(like.numel(), dtype=torch.bool, device=like.device)
    keep[order[:count]] = True
    return keep.reshape(like.shape)


def fit_latent_to_budget(model: SRNModel, budget: int, measure: Measure, fewest_bits: int | None = None) -> int:
    """Drop the least important latent entries until the file fits the budget; returns how many were dropped.

    fewest_bits: also try codes of fewer bits, down to this many (None: the model's own bits only; so too after
    learned pruning), each with the entries that then fit; the model keeps the choice whose stored latent tensor
    is closest to the trained one (latent_error). Does nothing to a model whose file already fits, or that has no
    latent tensor (Neurcomp: its file size does not depend on the values, and is sized exactly before training).
    SettingsError when even dropping every entry leaves the file over the budget.
    """
    if model.latent_name is None:
        return 0
    if measure(None) <= budget:
        model.unit_importance = None  # the budget pays for every unit the masks ranked
        return 0
    order, keep = ranked_entries(model)
    kept = order.numel()
    if measure(keep_top(order, 0, keep)) > budget:
        raise SettingsError(f"a budget of {budget} bytes is too small even for the network without its grid")
    trained_bits = model.config.grid_bits
    if model.unit_importance is not None:
        fewest_bits = None  # learned pruning ranked the units: its masks, not the rounding, choose what stays
    best: tuple[float, int, torch.Tensor | None] | None = None  # (latent error, bits, keep mask or None: all)
    for bits in range(trained_bits, min(fewest_bits or trained_bits, trained_bits) - 1, -1):
        _set_code_bits(model, bits)
        chosen = None if bits != trained_bits and measure(None) <= budget else \
            keep_top(order, _largest_fitting_count(order, keep, budget, measure), keep)
        error = latent_error(model, chosen)
        if best is not None and error >= best[0]:
            break  # fewer bits round every entry coarser: past the best, they only lose
        best = (error, bits, chosen)
        if chosen is None:
            break  # the whole tensor fits: fewer bits would only round it coarser
    _, bits, chosen = best
    _set_code_bits(model, bits)
    model.unit_importance = None
    if chosen is None:
        return 0
    model.set_grid_keep(chosen)
    return kept - int(chosen.sum())


def _largest_fitting_count(order: torch.Tensor, keep: torch.Tensor, budget: int, measure: Measure) -> int:
    """The most entries of order (first first) whose file fits; the caller knows that all of them do not."""
    return largest_count(order.numel(), lambda count: measure(keep_top(order, count, keep)) <= budget)


def largest_count(total: int, fits: Callable[[int], bool], tolerance: float = COUNT_TOLERANCE) -> int:
    """The largest count in [0, total) for which fits(count) holds, by bisection to within this fraction of total
    (or one), given that fits(0) holds and fits(total) does not (the caller has measured both ends)."""
    fitting, over = 0, total  # bisection invariant: `fitting` fits, `over` does not
    tolerance = max(1, int(tolerance * total))
    while over - fitting > tolerance:
        middle = (fitting + over) // 2
        if fits(middle):
            fitting = middle
        else:
            over = middle
    return fitting


def _set_code_bits(model: SRNModel, bits: int) -> None:
    if model.config.grid_bits != bits:
        model.config = dataclasses.replace(model.config, grid_bits=bits)


def latent_error(model: SRNModel, keep: torch.Tensor | None) -> float:
    """Summed squared difference between the latent tensor and what a file keeping these entries (None: the
    model's own) at the model's code bits gives back: the kept entries' rounding plus the dropped entries'
    squares, the measure the trim ranks entries by."""
    latent = model.latent.detach()
    keep = model.grid_keep if keep is None else keep
    stored = fake_quantize(latent, model.config.grid_bits, keep, model.quantization_groups())
    return float((stored - latent).double().square().sum())


def grow_latent_for_budget(model: SRNModel, budget: int, measure_of: Callable[[SRNModel], Measure],
                           geometry: Geometry) -> int:
    """Resample an unpruned fV-SRN's latent grid to the finest resolution whose whole file still fits GROWTH_FILL of
    the budget, when its file leaves more than 1 - GROWTH_TRIGGER of the budget unused (see the module); returns
    the resolution steps added. Candidate resolutions are measured on a copy, so growth does not make the fit trim: on
    the shared volume a grid grown past its budget lost 15 dB to the trim that followed (benchmarks/README.md)."""
    if model.latent_name is None or model.grid_keep is not None or model.unit_importance is not None:
        return 0
    start = model.config.grid_resolution
    for _round in range(GROWTH_ROUNDS):
        measure = measure_of(model)
        full = measure(None)
        if full >= GROWTH_TRIGGER * budget:
            break
        order, keep = ranked_entries(model)
        empty = measure(keep_top(order, 0, keep))
        per_entry = max(full - empty, 1) / keep.numel()
        resolution = model.config.grid_resolution
        scale = (GROWTH_MARGIN * (budget - empty) / per_entry / keep.numel()) ** (1 / 3)
        fits, over = resolution, max(resolution + 1, math.ceil(resolution * scale)) + 1  # `over` assumed not to fit
        while over - fits > 1:
            middle = (fits + over) // 2
            trial = copy.deepcopy(model)
            _resample(trial, middle, geometry)
            if measure_of(trial)(None) <= GROWTH_FILL * budget:
                fits = middle
            else:
                over = middle
        if fits == resolution:
            break
        _resample(model, fits, geometry)
    return model.config.grid_resolution - start


def _resample(model: SRNModel, resolution: int, geometry: Geometry) -> None:
    config = dataclasses.replace(model.config, grid_resolution=resolution, grid_shape=None)
    model.resize_latent(config, grid_shape_for(config, geometry))


def fit_measured(budget: int, measure_of: Callable[[SRNModel], Measure], geometry: Geometry,
                 grow: bool = True, fewest_bits: int | None = None) -> Callable[[SRNModel], None]:
    """The trainer's fit callback (srnvtk.train) for this budget, the bytes counted by measure_of(model) (a whole
    file's, or a brick's share of one): grow (unpruned fV-SRN only, when asked), then trim, trying codes of as few
    as fewest_bits bits where the file can store them (fit_latent_to_budget)."""

    def fit(model: SRNModel) -> None:
        if model.latent_name is None:
            return  # Neurcomp: sized exactly before training
        if grow:
            grow_latent_for_budget(model, budget, measure_of, geometry)
        fit_latent_to_budget(model, budget, measure_of(model), fewest_bits)

    return fit


def budget_fit(budget: int, source: SourceInfo, pruning: PruningConfig | None, grow: bool = True,
               fewest_bits: int | None = None) -> Callable[[SRNModel], None]:
    """fit_measured for a single-network file of this source."""
    return fit_measured(budget, lambda model: file_size_probe(model, source, pruning), source.geometry, grow,
                        fewest_bits)
