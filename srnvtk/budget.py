"""Fit a trained model's file into a byte budget: grow its latent grid if the file falls short, then drop its
least important latent entries until the file fits.

gzip shrinks the latent codes by an amount only the trained values decide, so no size estimate made before
training can fill a budget closely. Rate control therefore trains a latent tensor somewhat larger than the
budget allows and, once the values are known, keeps the largest set of entries whose file fits: the entries
(single values, one channel at one grid or wavelet coefficient position; whole positions where pruning kept or
dropped positions) ranked by their squared magnitude (summed over the channels for positions), the count found
by bisection on the real file's bytes (srnvtk.fileformat.srn_file_bytes). For wavelet coefficients this is the
classic wavelet thresholding; for a plain grid it zeroes the values that move the features least.

Where the trained codes compress so well that even the whole grid leaves much of the budget unused, an
unpruned grid is first resampled to a finer resolution (trilinearly, so the function hardly changes) sized
from the measured bytes per entry; the fine-tuning that follows the fit puts the new entries to work.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from .config import PruningConfig
from .errors import SettingsError
from .fileformat import SourceInfo, srn_file_bytes
from .models.fvsrn import grid_shape_for
from .quantize import storage_tensors
from .volume import Geometry

if TYPE_CHECKING:
    from .models.protocol import SRNModel

# Stop the bisection once the kept count is known to within this fraction of the entries (or one entry):
# the bytes it leaves unused are a small fraction of the budget.
COUNT_TOLERANCE = 1e-4
GROWTH_TRIGGER = 0.97  # a whole-grid file below this share of the budget grows the grid first
GROWTH_MARGIN = 1.15  # grow for this many times the entries the budget pays for, so the fit trims
GROWTH_ROUNDS = 3

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


def fit_latent_to_budget(model: SRNModel, budget: int, measure: Measure) -> int:
    """Drop the least important latent entries until the file fits the budget; returns how many were dropped.

    Does nothing to a model whose file already fits, or that has no latent tensor (Neurcomp: its file size
    does not depend on the values, and is sized exactly before training). SettingsError when even dropping
    every entry leaves the file over the budget.
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
    fits, over = 0, kept  # bisection invariant: `fits` entries fit, `over` do not
    tolerance = max(1, int(COUNT_TOLERANCE * kept))
    while over - fits > tolerance:
        middle = (fits + over) // 2
        if measure(keep_top(order, middle, keep)) <= budget:
            fits = middle
        else:
            over = middle
    model.set_grid_keep(keep_top(order, fits, keep))
    model.unit_importance = None
    return kept - fits


def grow_latent_for_budget(model: SRNModel, budget: int, measure: Measure, geometry: Geometry) -> int:
    """Resample an unpruned fV-SRN's latent grid to a finer resolution while its whole file stays well under the
    budget (see the module); returns the resolution steps added (0 when the file already fills it)."""
    if model.latent_name is None or model.grid_keep is not None or model.unit_importance is not None:
        return 0
    start = model.config.grid_resolution
    for _round in range(GROWTH_ROUNDS):
        full = measure(None)
        if full >= GROWTH_TRIGGER * budget:
            break
        order, keep = ranked_entries(model)
        empty = measure(keep_top(order, 0, keep))
        per_entry = max(full - empty, 1) / keep.numel()
        scale = (GROWTH_MARGIN * (budget - empty) / per_entry / keep.numel()) ** (1 / 3)
        resolution = max(model.config.grid_resolution + 1, math.ceil(model.config.grid_resolution * scale))
        config = dataclasses.replace(model.config, grid_resolution=resolution, grid_shape=None)
        model.resize_latent(config, grid_shape_for(config, geometry))
    return model.config.grid_resolution - start


def fit_measured(budget: int, measure_of: Callable[[SRNModel], Measure], geometry: Geometry,
                 grow: bool = True) -> Callable[[SRNModel], None]:
    """The trainer's fit callback (srnvtk.train) for this budget, the bytes counted by measure_of(model) (a whole
    file's, or a brick's share of one): grow (unpruned fV-SRN only, when asked), then trim."""

    def fit(model: SRNModel) -> None:
        measure = measure_of(model)
        if grow:
            grow_latent_for_budget(model, budget, measure, geometry)
        fit_latent_to_budget(model, budget, measure)

    return fit


def budget_fit(budget: int, source: SourceInfo, pruning: PruningConfig | None,
               grow: bool = True) -> Callable[[SRNModel], None]:
    """fit_measured for a single-network file of this source."""
    return fit_measured(budget, lambda model: file_size_probe(model, source, pruning), source.geometry, grow)
