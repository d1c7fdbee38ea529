"""Compress a time series of several point arrays into one .srn file (format 9 to 12, srnvtk.multipart).

One network per field and time step (a *part*). Steps are trained in time order: step 0 of each field cold,
with the full training budget; every later step warm, starting from a copy of the same field's previous trained
network (srnvtk.train's initial_model) and training `TrainConfig.warm_start_fraction` of the steps (and of the
time limit). Consecutive steps are similar, so a warm network starts close to its target: the warm-start
benchmark (benchmarks/series_warmstart.py) measured 0.34-0.50 of the cold steps to reach the cold PSNR.

Time scheme "delta" (EncodeConfig.time_scheme, the default; plain fV-SRN parts, others are stored whole as under
"warm"): a later step is trained warm as above, then stored as a delta part (srnvtk.series_delta, formats 11-12):
its grid as the largest differences to the previous step's rebuilt grid that fit its share, rounded to a multiple
of the key frame's quantization scale. A key frame (a full part) is step 0
and every key_interval-th step (0: step 0 only), so a reader decodes at most that many parts for one step.

Every part of a field is normalised by the field's value range over all steps (the file stores one range per
field, per component for a vector), so the series' arrays are read twice: once for the ranges, once to train;
one step is in memory at a time. A vector (3 components) is one network with 3 outputs: its components are each
mapped to [0, 1] by their own range and trained together (the file is then format 10, srnvtk.multipart); its
part stats add the PSNR of each component and of the magnitude (by the magnitude's range at that step), and its
"psnr" is that of the three together (their mean squared error in units of each component's range).

Rate control shares the byte budget between the parts (fields x steps), **equally** but for delta parts (a
vector's part gets one share, like a scalar's):
  ratio  the whole file gets float32 bytes of every selected array at every step / ratio; the file's own
         container and header take SERIES_FILE_OVERHEAD_BYTES of it and every part fits into an equal share
         of the rest (the model sized for it and trimmed after training, as for one volume: srnvtk.ratecontrol).
         A part is fitted as if it were a file of its own, whose header is larger than a part's entry, so the
         file lands at or somewhat under the budget. Under the delta time scheme a delta part's share is
         DELTA_SHARE of a key frame's, so the key frames, and with them every step's grid, are planned larger.
  psnr   searches the ratio (up to psnr_trials trials, as srnvtk.ratecontrol does for one volume) on the first
         step of every field, for the largest ratio whose mean PSNR over the fields reaches the target, then
         compresses the whole series at that ratio (the chosen trial's step-0 networks are kept). Later steps
         may land a little above or below the target: their PSNR is recorded per part.
  none   every part uses the model settings as given.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .budget import budget_fit
from .config import EncoderSettings, ModelConfig, NeurcompConfig, TrainConfig
from .decode import decode, to_dtype
from .delta import can_be_delta
from .encoder import FILE_OVERHEAD_BYTES, estimated_file_bytes
from .errors import InputError, SettingsError, TrainingAborted
from .fileformat import SourceInfo, SRNFile, write_parts
from .metrics import chunked_mse, psnr, psnr_from_mse
from .models import SRNModel
from .multipart import raw_tensors
from .parts import FieldInfo, PartData
from .presets import choose
from .pruning import pruned_fraction
from .quantize import GRID_QUANT, apply_storage_precision
from .ratecontrol import PSNR_START_RATIO, plan_for_ratio, search_ratio
from .series import Series
from .series_delta import Reference, delta_step, tune_config
from .train import ProgressCallback, train
from .volume import Volume

AbortCallback = Callable[[], bool]

# The format-6 container and its header's fixed part (grid, times, fields, settings): about 500 bytes measured.
SERIES_FILE_OVERHEAD_BYTES = 1_024
# A part is fitted as a single-network file (srnvtk.budget measures format-5 files), whose container and header
# take 600-670 bytes beyond the tensors (measured for fV-SRN and Neurcomp), while a part's own entries in a
# format-6 file take about 40: so a part whose single-network file fits its share plus this many bytes fits its
# share in the series file. tests/test_series_encode.py checks every part of a real file.
PART_FIT_ALLOWANCE = 480
# Under the delta time scheme with a ratio target, a delta part's share of the budget as a fraction of a key
# frame's: the key frames (and so every step's grid) get the bytes the deltas leave. The probe
# (benchmarks/results/series_delta_probe_64.json) kept the largest half of a step's grid differences for
# 0.59-0.65x the grid's bytes at a cost of 0.2 dB.
DELTA_SHARE = 0.6
LOWEST_RATIO = 1.0 + 1e-9  # the planner's ratios must exceed 1
RANGE_SHARE = 0.02  # of the progress bar: the pass that finds the fields' value ranges


@dataclass
class PartResult:
    """One trained part: which field and step, how it trained, what it decodes to."""

    field: str
    step: int
    time: float
    warm: bool
    stats: dict[str, float]
    delta: bool = False  # its grid stored as differences to the previous step's (format 11)


@dataclass
class SeriesResult:
    """What encode_series made: the file's size, its fields and per-part results (in training order)."""

    path: str | None
    file_bytes: int | None
    float32_bytes: int  # of the selected arrays at every step: what the ratio is measured against
    fields: tuple[FieldInfo, ...]
    times: tuple[float, ...]
    parts: list[PartResult]
    ratio_searched: float | None = None  # a PSNR target: the series ratio chosen
    trials: list[tuple[float, float | None]] = dataclasses.field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        return None if not self.file_bytes else self.float32_bytes / self.file_bytes

    @property
    def mean_psnr(self) -> float:
        return float(np.mean([p.stats["psnr"] for p in self.parts]))


def select_fields(series: Series, arrays: Sequence[str] | None) -> tuple[FieldInfo, ...]:
    """The series' fields to compress: the named ones in that order, or all; InputError for a name the series
    lacks."""
    names = series.names if arrays is None else tuple(dict.fromkeys(arrays))
    if not names:
        raise InputError("no arrays chosen")
    return tuple(series.field(name) for name in names)


def value_ranges(series: Series, fields: Sequence[FieldInfo],
                 progress: Callable[[float], None] | None = None) -> tuple[FieldInfo, ...]:
    """The fields with their value range over every step, per component (one step read at a time); InputError
    for a field (or a vector's component) that is constant over the whole series (nothing to normalise by)."""
    low = {f.name: np.full(f.components, math.inf) for f in fields}
    high = {f.name: np.full(f.components, -math.inf) for f in fields}
    for step in range(series.num_steps):
        arrays = series.arrays(step, [f.name for f in fields])
        for name, values in arrays.items():
            flat = values.reshape(series.geometry.num_points, -1)
            low[name] = np.minimum(low[name], flat.min(axis=0))
            high[name] = np.maximum(high[name], flat.max(axis=0))
        if progress is not None:
            progress((step + 1) / series.num_steps)
    for name in low:
        for c, (lo, hi) in enumerate(zip(low[name], high[name], strict=True)):
            if not hi > lo:
                which = f"component {c} of array '{name}'" if len(low[name]) > 1 else f"array '{name}'"
                raise InputError(f"{which} is constant ({lo:g}) at every step; nothing to compress")
    return tuple(dataclasses.replace(f, value_ranges=tuple((float(lo), float(hi)) for lo, hi in
                                                           zip(low[f.name], high[f.name], strict=True)))
                 for f in fields)


def normalized_components(values: np.ndarray, info: FieldInfo) -> np.ndarray:
    """A vector's [z, y, x, 3] values with each component mapped to [0, 1] by its range over the series."""
    ranges = np.array(info.value_ranges, dtype=np.float64)
    return ((values - ranges[:, 0]) / (ranges[:, 1] - ranges[:, 0])).astype(np.float32)


def denormalized_components(normalized: np.ndarray, info: FieldInfo) -> np.ndarray:
    """The inverse of normalized_components, cast to the field's type as a reader gives it."""
    ranges = np.array(info.value_ranges, dtype=np.float64)
    values = normalized * (ranges[:, 1] - ranges[:, 0]) + ranges[:, 0]
    return to_dtype(values, info.dtype)


def vector_stats(original: np.ndarray, decoded: np.ndarray, info: FieldInfo) -> dict[str, float]:
    """PSNR of each component (by its range over the series), of the three together (their mean squared error in
    units of each range) and of the magnitude (by its range at this step)."""
    stats = {}
    relative = []
    for c, axis in enumerate("xyz"):
        lo, hi = info.value_ranges[c]
        mse = chunked_mse(original[..., c].astype(np.float64), decoded[..., c].astype(np.float64))
        stats[f"psnr_{axis}"] = psnr_from_mse(mse, hi - lo)
        relative.append(mse / (hi - lo) ** 2)
    mean = float(np.mean(relative))
    stats["psnr"] = psnr_from_mse(mean, 1.0)
    magnitude = np.linalg.norm(original.astype(np.float64), axis=-1)
    span = float(magnitude.max() - magnitude.min()) or 1.0
    stats["psnr_magnitude"] = psnr(magnitude, np.linalg.norm(decoded.astype(np.float64), axis=-1), span)
    return stats


def part_budget(float32_bytes: int, ratio: float, parts: float) -> int:
    """Each part's equal share of the whole file's budget at this ratio (see the module); parts may count delta
    parts as DELTA_SHARE of one (delta_weighted_parts)."""
    if not ratio > 1.0:
        raise SettingsError(f"target ratio must be > 1, got {ratio}")
    share = (float32_bytes / ratio - SERIES_FILE_OVERHEAD_BYTES) / parts
    if share < 1:
        raise SettingsError(f"ratio {ratio:g} leaves {float32_bytes / ratio:.0f} bytes for {parts:g} networks, "
                            "too few")
    return int(share)


def delta_weighted_parts(fields: int, steps: int, key_interval: int) -> float:
    """How many full parts' shares a delta-scheme series takes: a key frame one, a delta part DELTA_SHARE."""
    keys = sum(is_key_frame(step, key_interval) for step in range(steps))
    return fields * (keys + DELTA_SHARE * (steps - keys))


def warm_config(train_config: TrainConfig) -> TrainConfig:
    """The training settings of a warm step: warm_start_fraction of the steps and of the time limit."""
    fraction = train_config.warm_start_fraction
    return dataclasses.replace(train_config, steps=max(1, round(fraction * train_config.steps)),
                               time_limit=train_config.time_limit * fraction)


class _Trainer:
    """Trains parts one at a time and reports progress as one fraction over the whole series."""

    def __init__(self, series: Series, fields: tuple[FieldInfo, ...], settings: EncoderSettings,
                 progress: ProgressCallback | None, should_abort: AbortCallback | None) -> None:
        self.series, self.fields, self.settings = series, fields, settings
        self.progress, self.should_abort = progress, should_abort
        warm = settings.train.warm_start_fraction
        self.total = len(fields) * (1 + warm * (series.num_steps - 1))  # in cold-step units
        self.done = 0.0
        self.start, self.span = RANGE_SHARE, 1.0 - RANGE_SHARE

    def report(self, fraction: float, message: str) -> None:
        if self.progress is not None:
            self.progress(self.start + self.span * min(1.0, fraction), message)

    def part(self, values: np.ndarray, field_index: int, step: int, model_config: ModelConfig,
             initial: SRNModel | None, budget: int | None,
             reference: Reference | None = None) -> tuple[PartData, SRNModel]:
        """Train one part: cold (initial None) or warm from initial; fitted to budget bytes when given; a delta
        part of reference when given (srnvtk.series_delta)."""
        if self.should_abort is not None and self.should_abort():
            raise TrainingAborted(f"aborted before step {step} of '{self.fields[field_index].name}'")
        info = self.fields[field_index]
        value_range = info.value_ranges[0]
        original = values
        if info.is_vector:  # one network, 3 outputs: each component brought to [0, 1] by its own range
            values, value_range = normalized_components(values, info), (0.0, 1.0)
            model_config = dataclasses.replace(model_config, outputs=3)
        volume = Volume(values, self.series.geometry, info.name)
        source = SourceInfo(info.name, "float32" if info.is_vector else info.dtype, self.series.geometry,
                            value_range)
        pruning = self.settings.pruning
        train_config = self.settings.train if initial is None else warm_config(self.settings.train)
        weight = 1.0 if initial is None else self.settings.train.warm_start_fraction
        label = (f"step {step + 1}/{self.series.num_steps} '{info.name}' "
                 f"({'cold' if initial is None else 'warm' if reference is None else 'delta'})")

        def train_progress(fraction: float, message: str) -> None:
            self.report((self.done + weight * fraction) / self.total, f"{label}: {message}")

        fit = None
        if budget is not None:
            # a delta part is fitted after training (srnvtk.series_delta), but trains on the same schedule
            fit = (budget_fit(budget + PART_FIT_ALLOWANCE, source, pruning, grow=initial is None)
                   if reference is None else _no_fit)
        result = train(volume, model_config, train_config, progress=train_progress, should_abort=self.should_abort,
                       pruning=pruning, fit=fit, value_range=value_range, initial_model=initial)
        model, seconds, delta = result.model, result.seconds, None

        def quality(candidate: SRNModel) -> dict[str, float]:
            return self._quality(candidate, info, original, values, value_range, train_config.device)

        if reference is not None:
            tuned: list[float] = []

            def tune(candidate: SRNModel) -> SRNModel:
                run = train(volume, candidate.config, tune_config(self.settings.train, candidate.config),
                            should_abort=self.should_abort, value_range=value_range, initial_model=candidate,
                            frozen=("grid",))
                tuned.append(run.seconds)
                return run.model

            made = delta_step(model, reference.grid, reference.unit, budget,
                              lambda stored: raw_tensors(model_config, stored, self.series.geometry), tune,
                              lambda candidate: quality(candidate)["psnr"])
            model, stored, delta, dropped = made.model, made.stored, made.delta, 1.0 - made.kept_fraction
            seconds += sum(tuned)
        else:
            if budget is not None:
                # fine-tuning changed the codes (as in srnvtk.encoder.compress)
                budget_fit(budget + PART_FIT_ALLOWANCE, source, pruning, grow=False)(model)
            stored, dropped = apply_storage_precision(model), pruned_fraction(model)
        stats = quality(model) | {"train_seconds": seconds, "steps": result.steps, "final_loss": result.final_loss,
                                  "pruned_fraction": dropped}
        self.done += weight
        self.report(self.done / self.total, f"{label}: {stats['psnr']:.2f} dB")
        return PartData(field_index, step, None, model.config, pruning, stored, stats,
                        None if reference is None else reference.index, delta), model

    def _quality(self, model: SRNModel, info: FieldInfo, original: np.ndarray, values: np.ndarray,
                 value_range: tuple[float, float], device: str) -> dict[str, float]:
        """The PSNR a part decodes to (a vector's: per component and of the magnitude too)."""
        if info.is_vector:
            decoded = decode(SRNFile.of_model(model, self.series.geometry, value_range, "float64", info.name),
                             device=device)
            return vector_stats(original, denormalized_components(decoded, info), info)
        decoded = decode(SRNFile.of_model(model, self.series.geometry, value_range, info.dtype, info.name),
                         device=device)
        return {"psnr": psnr(values, decoded, value_range[1] - value_range[0])}


def encode_series(
    series: Series,
    settings: EncoderSettings | None = None,
    *,
    arrays: Sequence[str] | None = None,
    path: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    should_abort: AbortCallback | None = None,
) -> SeriesResult:
    """Compress the series' arrays (the named ones, or all) into one file at path (format 6; nothing is
    written when path is None): see the module for the time scheme and how the byte budget is shared.
    TrainingAborted when should_abort says so (between parts and within a part's training); nothing is written
    then."""
    settings = settings or EncoderSettings()
    if settings.encode.max_error is not None or settings.encode.max_rel_error is not None:
        raise SettingsError("an error bound (max error) is for a single volume; a series file does not keep one")
    fields = select_fields(series, arrays)
    if progress is not None:
        progress(0.0, "reading the value ranges")
    fields = value_ranges(series, fields, None if progress is None else
                          (lambda f: progress(RANGE_SHARE * f, "reading the value ranges")))
    float32_bytes = 4 * series.geometry.num_points * series.num_steps * sum(f.components for f in fields)
    trainer = _Trainer(series, fields, settings, progress, should_abort)
    target = settings.encode
    budget, first, trials, chosen_ratio = None, None, [], None
    delta_budget: int | None = None  # a delta part's share where it differs from a full part's
    if target.psnr is not None:
        searching = target.psnr_trials * len(fields)  # at most this many cold trainings before the series
        trainer.total += searching
        chosen_ratio, first, trials = _search_ratio(series, fields, settings, trainer, float32_bytes)
        trainer.done = searching + len(fields)  # the chosen trial's networks are step 0
        budget = part_budget(float32_bytes, chosen_ratio, len(fields) * series.num_steps)
        settings = trainer.settings = with_preset(settings, chosen_ratio)
    elif target.ratio is not None:
        settings = trainer.settings = with_preset(settings, target.ratio)
        weighted = settings.encode.time_scheme == "delta" and can_be_delta(settings.model_config)
        parts_counted = (delta_weighted_parts(len(fields), series.num_steps, settings.encode.key_interval)
                         if weighted else len(fields) * series.num_steps)
        budget = part_budget(float32_bytes, target.ratio, parts_counted)
        delta_budget = int(DELTA_SHARE * budget) if weighted else None
    parts, results = [], []
    previous: dict[int, SRNModel] = {}
    references: dict[int, Reference] = {}  # per field: what its next step's delta part differs from
    deltas = settings.encode.time_scheme == "delta"
    for step in range(series.num_steps):
        arrays_now = series.arrays(step, [f.name for f in fields])
        for index, info in enumerate(fields):
            values = arrays_now[info.name]
            if step == 0 and first is not None:
                part, model = first[index]
            elif step == 0:
                config = settings.model_config
                if budget is not None:
                    config = _plan(Volume(values, series.geometry, info.name), settings, budget)
                part, model = trainer.part(values, index, 0, config, None, budget)
            else:
                reference = None if is_key_frame(step, settings.encode.key_interval) else references.get(index)
                share = delta_budget if reference is not None and delta_budget is not None else budget
                part, model = trainer.part(values, index, step, previous[index].config, previous[index], share,
                                           reference)
            previous[index] = model
            if deltas and can_be_delta(model.config):
                references[index] = reference_of(len(parts), part, model, references.get(index))
            parts.append(part)
            results.append(PartResult(info.name, step, series.times[step], step > 0, dict(part.stats),
                                      part.reference is not None))
    file_bytes = None
    if path is not None:
        file_bytes = write_parts(path, series.geometry, series.times, fields, parts)
    if progress is not None:
        progress(1.0, "written" if path is not None else "done")
    return SeriesResult(None if path is None else str(path), file_bytes, float32_bytes, fields, series.times,
                        results, chosen_ratio, trials)


def _no_fit(_model: SRNModel) -> None:
    """A fit that changes nothing: training keeps the phases (and learning rates) of a fitted part."""


def is_key_frame(step: int, interval: int) -> bool:
    """Whether a step is stored whole under the delta scheme: the first, and every interval-th (0: only the
    first)."""
    return step == 0 or (interval > 0 and step % interval == 0)


def reference_of(index: int, part: PartData, model: SRNModel, previous: Reference | None) -> Reference:
    """What the next step's delta part of this field differs from: this part (at index in the file), the grid a
    reader rebuilds for it, and the unit its differences are counted in: the key frame's quantization scale,
    which a delta part passes on from its own reference (previous), whatever step its differences were rounded
    to."""
    unit = previous.unit if part.delta is not None else part.stored.arrays[GRID_QUANT][0]
    return Reference(index, model.latent.detach().cpu().numpy().copy(), np.asarray(unit, dtype=np.float32))


def with_preset(settings: EncoderSettings, ratio: float) -> EncoderSettings:
    """The settings a target ratio trains with: under architecture 'auto', srnvtk.presets' choice for the
    series' ratio (the settings as given otherwise)."""
    model, pruning = choose(settings, ratio)
    which = {"neurcomp": model} if model.architecture == "neurcomp" else {"fvsrn": model}
    return dataclasses.replace(settings, encode=dataclasses.replace(settings.encode, architecture=model.architecture),
                               pruning=pruning, **which)


def _plan(volume: Volume, settings: EncoderSettings, budget: int) -> ModelConfig:
    """The model sized for one part's budget, as srnvtk.ratecontrol sizes a single volume's file of that many
    bytes (a vector's network with its 3 outputs)."""
    budget += PART_FIT_ALLOWANCE
    # so that budget_for_ratio(ratio) == budget; a share above the part's own float32 bytes plans at ratio ~1
    ratio = max(4 * volume.geometry.num_points / (budget + 0.5), LOWEST_RATIO)
    base = dataclasses.replace(settings.model_config, outputs=volume.components)
    try:
        config, _ = plan_for_ratio(ratio, volume, base, settings.pruning)
    except SettingsError:
        if isinstance(base, NeurcompConfig):  # sized exactly: no room to spare
            raise
        # The planner's estimate counts a whole file's overhead (FILE_OVERHEAD_BYTES, an upper bound), which a
        # small part cannot afford; an fV-SRN planned without it is trimmed to the budget after training.
        ratio = max(4 * volume.geometry.num_points / (budget + FILE_OVERHEAD_BYTES + 0.5), LOWEST_RATIO)
        config, _ = plan_for_ratio(ratio, volume, base, settings.pruning)
    return config


def _largest_ratio(series: Series, fields: tuple[FieldInfo, ...], settings: EncoderSettings,
                   float32_bytes: int) -> float:
    """The series ratio at which every part holds the smallest model: no ratio above it can be met."""
    config = settings.model_config
    smallest = (dataclasses.replace(config, width=1) if isinstance(config, NeurcompConfig)
                else dataclasses.replace(config, grid_resolution=2, grid_shape=None))
    try:
        part = estimated_file_bytes(smallest, series.geometry, settings.pruning) - FILE_OVERHEAD_BYTES
    except SettingsError:  # wavelet levels too many for the smallest grid: no better bound at hand
        part = 1024
    parts = len(fields) * series.num_steps
    return float32_bytes / (SERIES_FILE_OVERHEAD_BYTES + parts * (part + PART_FIT_ALLOWANCE))


def _search_ratio(series: Series, fields: tuple[FieldInfo, ...], settings: EncoderSettings, trainer: _Trainer,
                  float32_bytes: int) -> tuple[float, list, list[tuple[float, float | None]]]:
    """(series ratio, the chosen trial's step-0 parts and networks, every trial as (ratio, mean PSNR or None)):
    the largest ratio whose step-0 networks reach the target PSNR on average over the fields; passing trials
    multiply the ratio by 4, failing ones divide it by 4, then the search bisects in log ratio."""
    count = len(fields) * series.num_steps
    values = series.arrays(0, [f.name for f in fields])

    def trial(_index: int, ratio: float) -> tuple[float, list]:
        budget = part_budget(float32_bytes, ratio, count)
        trainer.settings = chosen = with_preset(settings, ratio)  # each trial its ratio's preset
        first = []
        for index, info in enumerate(fields):
            volume = Volume(values[info.name], series.geometry, info.name)
            first.append(trainer.part(values[info.name], index, 0, _plan(volume, chosen, budget), None, budget))
        return float(np.mean([part.stats["psnr"] for part, _ in first])), first

    start = min(PSNR_START_RATIO, _largest_ratio(series, fields, settings, float32_bytes) / 2)
    found = search_ratio(trial, settings.encode.psnr, start, settings.encode.psnr_trials, "this series")
    return found.ratio, found.made, found.history
