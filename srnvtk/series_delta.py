"""Turn a warm-trained time step into a delta part (srnvtk.delta, format 11) that fits its share of the budget.

The trained grid's differences to the previous step's rebuilt grid are rounded to a step, a multiple
(UNIT_SCALES) of the key frame's quantization scale; the largest ones are kept, as many as fit the share: the count
is found by bisection on the part's measured bytes (its section through the container's coder plus its
bookkeeping), as srnvtk.budget fits a full part. Where not every difference fits at the finest step, coarser steps
trade the precision of every kept difference for keeping more of them (a dead zone with a wider step); the part
keeps the step whose grid decodes best. The network then reads exactly the grid a reader rebuilds, and its MLP is
fine-tuned briefly on that frozen grid; the fine-tuned MLP is kept only where it decodes better (the probe,
benchmarks/series_delta_probe.py, measured it worse where most differences are kept).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch

from .budget import largest_count
from .config import TrainConfig
from .container import encode_section
from .delta import DeltaGrid, delta_blob, delta_codes, keep_largest, largest_first, reconstruct
from .errors import SettingsError
from .filechecks import WEIGHTS
from .models import SRNModel, default_learning_rate
from .multipart import DELTA_BOOKKEEPING_BYTES
from .quantize import StoredModel, storage_tensors, stored_state

# The steps a delta part may round its differences to, in units of the key frame's quantization scale: where a
# share keeps a third of the differences at the finest step, a two- to four-times coarser one keeps most of them.
UNIT_SCALES = (1.0, 2.0, 3.0, 4.0)
COUNT_TOLERANCE = 1e-3  # of the differences: where the bisection stops (a few bytes of the share left unused)
TUNE_FRACTION = 0.1  # of the cold training steps: the MLP's fine-tune on the frozen grid
TUNE_RATE = 0.1  # of the learning rate: a fine-tune, not a new fit


def delta_bytes(weights: bytes, delta: DeltaGrid) -> int:
    """What a delta part adds to a format-11 or 12 file, at most: its coded section and its bookkeeping."""
    return len(encode_section(delta_blob(weights, delta)).data) + DELTA_BOOKKEEPING_BYTES


def fit_codes(codes: np.ndarray, unit: np.ndarray, weights: bytes, share: int | None) -> DeltaGrid:
    """The codes with as many of their largest differences kept as fit share bytes (all of them when share is
    None or they all fit); SettingsError when even none fit (the share does not hold the MLP)."""
    order = largest_first(codes)

    def kept(count: int) -> DeltaGrid:
        return DeltaGrid(keep_largest(codes, count, order), unit)

    if share is None or delta_bytes(weights, kept(len(order))) <= share:
        return kept(len(order))
    if delta_bytes(weights, kept(0)) > share:
        raise SettingsError(f"a share of {share} bytes does not hold even a delta part's MLP")
    return kept(largest_count(len(order), lambda count: delta_bytes(weights, kept(count)) <= share, COUNT_TOLERANCE))


def store_weights(model: SRNModel, grid: np.ndarray) -> StoredModel:
    """Round the model's MLP to the file's float16 and set its grid to grid (what a reader rebuilds); returns its
    weights as a delta part stores them (a StoredModel without a grid, for the dense grid's structure)."""
    stored = storage_tensors(model)
    state, _keep = stored_state(stored, model)
    state[model.latent_name] = torch.from_numpy(grid)
    device = next(model.parameters()).device
    model.load_state_dict({k: v.to(device) for k, v in state.items()})
    return StoredModel({WEIGHTS: stored.arrays[WEIGHTS]}, stored.layout, model.structure())


def delta_candidates(latent: np.ndarray, reference: np.ndarray, unit: np.ndarray, weights: bytes,
                     share: int | None) -> list[DeltaGrid]:
    """The delta grids worth decoding: at the finest step, the largest differences that fit share bytes; and
    only where those are not all of them, the same at each coarser step of UNIT_SCALES."""
    finest = delta_codes(latent, reference, unit)
    candidates = [fit_codes(finest, unit, weights, share)]
    if np.count_nonzero(candidates[0].codes) == np.count_nonzero(finest):  # every difference fits
        return candidates
    for scale in UNIT_SCALES[1:]:
        step = (unit * scale).astype(np.float32)
        candidates.append(fit_codes(delta_codes(latent, reference, step), step, weights, share))
    return candidates


@dataclasses.dataclass
class Reference:
    """What a delta part differs from: the referenced part's index in the file, the grid a reader rebuilds for it,
    and the unit (per channel) the differences are counted in."""

    index: int
    grid: np.ndarray
    unit: np.ndarray


@dataclasses.dataclass
class DeltaStep:
    """A delta part's model (its grid the rebuilt one), stored weights, grid and how many differences it kept."""

    model: SRNModel
    stored: StoredModel
    delta: DeltaGrid
    kept_fraction: float


def delta_step(model: SRNModel, reference: np.ndarray, unit: np.ndarray, share: int | None,
               weights_of: Callable[[StoredModel], bytes], tune: Callable[[SRNModel], SRNModel],
               quality: Callable[[SRNModel], float]) -> DeltaStep:
    """The trained model as a delta part of reference fitting share bytes, its differences counted in multiples of
    unit (see the module). weights_of: a stored model's weights as its section holds them; tune: the model's MLP
    fine-tuned on its frozen grid (a new model); quality: the PSNR a model decodes to."""
    latent = model.latent.detach()
    if model.grid_keep is not None:  # a pruned grid's dropped entries read as zero
        latent = latent * model.grid_keep
        model.grid_keep = None
    latent = latent.cpu().numpy().copy()  # not a view: store_weights overwrites the model's grid
    stored = store_weights(model, reference)  # the MLP's float16 weights (the grid is set below)
    candidates = delta_candidates(latent, reference, unit, weights_of(stored), share)
    grids = [reconstruct(reference, candidate) for candidate in candidates]
    scores = []
    for grid in grids:
        store_weights(model, grid)
        scores.append(quality(model))
    best = int(np.argmax(scores))
    delta, grid = candidates[best], grids[best]
    stored = store_weights(model, grid)
    tuned = tune(model)
    tuned_stored = store_weights(tuned, grid)
    if quality(tuned) > scores[best]:
        model, stored = tuned, tuned_stored
        if share is not None and delta_bytes(weights_of(stored), delta) > share:  # the new weights code larger
            delta = fit_codes(delta.codes, delta.unit, weights_of(stored), share)
            stored = store_weights(model, reconstruct(reference, delta))
    kept = np.count_nonzero(delta.codes) / max(delta.codes.size, 1)
    return DeltaStep(model, stored, delta, float(kept))


def tune_config(train_config: TrainConfig, model_config) -> TrainConfig:
    """The MLP fine-tune's training settings: TUNE_FRACTION of the steps and time, at TUNE_RATE of the rate."""
    rate = (train_config.learning_rate or default_learning_rate(model_config)) * TUNE_RATE
    return dataclasses.replace(train_config, steps=max(1, round(TUNE_FRACTION * train_config.steps)),
                               time_limit=train_config.time_limit * TUNE_FRACTION, learning_rate=rate)
