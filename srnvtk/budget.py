"""Fit a trained model's file into a byte budget by dropping its least important latent entries.

gzip shrinks the latent codes by an amount only the trained values decide, so no size estimate made before
training can fill a budget closely. Rate control therefore trains a latent tensor somewhat larger than the
budget allows and, once the values are known, keeps the largest set of entries whose file fits: the entries
(grid positions, or wavelet coefficient positions, with all their channels; single entries where the model
was pruned per entry) ranked by their squared magnitude summed over the channels, the count found by
bisection on the real file's bytes (srnvtk.fileformat.srn_file_bytes). For wavelet coefficients this is the
classic wavelet thresholding; for a plain grid it zeroes the entries that move the features least.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .config import ModelConfig, PruningConfig
from .errors import SettingsError
from .fileformat import SourceInfo, srn_file_bytes
from .quantize import storage_tensors

# Stop the bisection once the kept count is known to within this fraction of the entries (or one entry):
# the bytes it leaves unused are a small fraction of the budget.
COUNT_TOLERANCE = 1e-4

Measure = Callable[[torch.Tensor | None], int]  # file bytes with this keep mask (None: the model's own)


def file_size_probe(model: nn.Module, model_config: ModelConfig, source: SourceInfo,
                    pruning: PruningConfig | None) -> Measure:
    """A function giving the bytes of the model's file if it kept only the given latent entries."""
    return lambda keep: srn_file_bytes(model_config, storage_tensors(model, keep), source, pruning)


def ranked_entries(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(order, current keep mask): the currently kept entries' flat indices into the keep mask's shape, most
    important first, and that mask (all true where nothing is pruned yet)."""
    latent = model.latent.detach()
    keep = model.grid_keep
    if keep is None:
        keep = torch.ones((1, *latent.shape[1:]), dtype=torch.bool, device=latent.device)
    squares = latent.double().square()
    importance = squares.sum(dim=0, keepdim=True) if keep.shape[0] == 1 else squares
    importance = importance.masked_fill(~keep, -1.0).reshape(-1)
    order = torch.argsort(importance, descending=True, stable=True)
    return order[: int(keep.sum())], keep


def keep_top(order: torch.Tensor, count: int, like: torch.Tensor) -> torch.Tensor:
    """A keep mask of like's shape holding the first count entries of order."""
    keep = torch.zeros(like.numel(), dtype=torch.bool, device=like.device)
    keep[order[:count]] = True
    return keep.reshape(like.shape)


def fit_latent_to_budget(model: nn.Module, budget: int, measure: Measure) -> int:
    """Drop the least important latent entries until the file fits the budget; returns how many were dropped.

    Does nothing to a model whose file already fits, or that has no latent tensor (Neurcomp: its file size
    does not depend on the values, and is sized exactly before training). SettingsError when even dropping
    every entry leaves the file over the budget.
    """
    if getattr(model, "latent_name", None) is None or measure(None) <= budget:
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
    return kept - fits


def budget_fit(budget: int, model_config: ModelConfig, source: SourceInfo,
               pruning: PruningConfig | None) -> Callable[[nn.Module], None]:
    """The trainer's fit callback (srnvtk.train) for this budget."""

    def fit(model: nn.Module) -> None:
        fit_latent_to_budget(model, budget, file_size_probe(model, model_config, source, pruning))

    return fit
