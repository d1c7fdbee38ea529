"""Rate control: a file that fills a size budget (`compress_to_ratio`) or the smallest that reaches a quality
(`compress_to_psnr`). The ratio always counts the whole file: float32 bytes of the volume / file bytes.

A ratio target sizes the model, trains it and fits it: an fV-SRN's latent tensor is sized for LATENT_HEADROOM
times the bytes its uncompressed codes may take (gzip shrinks trained codes to about 0.6-0.9 of that), and
after training srnvtk.budget drops the least important entries until the measured file fits, before the
survivors are fine-tuned. With learned pruning the grid is planned PRUNED_HEADROOM times larger again, and
the masks' ranking (not the method's threshold) picks the survivors that fit. Neurcomp's file does not
depend on its weights' values (fp16 or k-means indices, not compressed), so its width is found exactly, by
measuring the files of untrained networks; pruned Neurcomp neurons shrink its file below the budget.

A quality target searches over ratios (each trial a full training) for the largest ratio whose decoded
file reaches the PSNR.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Generic, TypeVar

from . import presets
from .budget import file_size_probe
from .config import EncodeConfig, EncoderSettings, FVSRNConfig, ModelConfig, NeurcompConfig, PruningConfig, TrainConfig
from .encoder import (
    CompressResult,
    budget_for_ratio,
    compress,
    config_for_ratio,
    estimated_file_bytes,
    source_info,
)
from .errors import SettingsError
from .models import build_model
from .train import AbortCallback, ProgressCallback
from .volume import Geometry, Volume

# A quality search's model and pruning settings for a trial's target ratio.
Chooser = Callable[[float], tuple[ModelConfig | None, PruningConfig | None]]
Made = TypeVar("Made")  # what a quality search's trial makes
# How many times their share of the budget an fV-SRN's uncompressed latent codes may take before the fit.
LATENT_HEADROOM = 1.4
# With learned pruning, this much more again: the masks rank the units and the fit keeps the best that fit
# (the pruning ablation found pruned larger grids beat unpruned smaller ones at equal bytes).
PRUNED_HEADROOM = 2.0
# With a ratio target an fV-SRN's MLP (stored in fp16) may take at most this share of the budget; a larger one steps
# down MLP_LADDER, (hidden layers, width, grid channels, Fourier octaves), largest first, never above the settings
# given (benchmarks/README.md, bricks: the MLP at small budgets).
MLP_SHARE = 0.2
MLP_LADDER = ((4, 32, 16, 4), (2, 32, 16, 4), (2, 16, 16, 4), (2, 16, 8, 2), (1, 16, 8, 2), (1, 8, 4, 0))
PSNR_START_RATIO = 100.0  # the first trial of a quality search (lowered where the volume is too small)
PSNR_RATIO_PRECISION = 1.15  # stop searching once the passing and failing ratios are this close


def mlp_bytes(config: FVSRNConfig) -> int:
    """Bytes of an fV-SRN's fp16 MLP weights (everything but the latent grid)."""
    from .filechecks import fvsrn_parameter_shapes

    return 2 * sum(math.prod(s) for s in fvsrn_parameter_shapes(config).values())


def shrink_mlp(config: FVSRNConfig, budget: int, share: float = MLP_SHARE) -> FVSRNConfig:
    """config with its MLP, grid channels and Fourier octaves stepped down MLP_LADDER (never above the settings
    given) until the MLP takes at most `share` of the budget; unchanged when it does already."""
    if mlp_bytes(config) <= share * budget:
        return config
    candidate = config
    for layers, width, channels, octaves in MLP_LADDER:
        candidate = dataclasses.replace(config, mlp_layers=min(layers, config.mlp_layers),
                                        mlp_width=min(width, config.mlp_width),
                                        grid_channels=min(channels, config.grid_channels),
                                        fourier_features=min(octaves, config.fourier_features))
        if mlp_bytes(candidate) <= share * budget:
            return candidate
    return candidate


def plan_for_ratio(
    ratio: float, volume: Volume, base: ModelConfig | None = None, pruning: PruningConfig | None = None
) -> tuple[ModelConfig, int]:
    """(model settings, byte budget) for a ratio target: see the module's notes."""
    base = base or FVSRNConfig()
    geometry = volume.geometry
    budget = budget_for_ratio(ratio, geometry)
    if isinstance(base, NeurcompConfig):
        return _widest_neurcomp(ratio, volume, base, pruning, budget), budget
    headroom = LATENT_HEADROOM * (PRUNED_HEADROOM if pruning is not None and pruning.enabled else 1.0)
    headroom *= 8 / base.grid_bits  # codes of fewer bits code smaller, by about the bits saved
    base = shrink_mlp(base, budget)
    config = config_for_ratio(ratio, geometry, base, pruning, latent_headroom=headroom)
    if config.grid_shape is None:  # one resolution step beyond: the fit trims instead of a step leaving bytes unused
        config = dataclasses.replace(config, grid_resolution=config.grid_resolution + 1)
    return config, budget


def _widest_neurcomp(ratio: float, volume: Volume, base: NeurcompConfig, pruning: PruningConfig | None,
                     budget: int) -> NeurcompConfig:
    """The widest network whose (unpruned) file fits: from the estimate's bound, widened while it fits."""
    config = config_for_ratio(ratio, volume.geometry, base, pruning)
    source = source_info(volume)

    def file_bytes(candidate: NeurcompConfig) -> int:
        model = build_model(candidate, volume.geometry)
        model.share_weights()  # a no-op unless the settings cluster the weights
        return file_size_probe(model, source, pruning)(None)

    while file_bytes(wider := dataclasses.replace(config, width=config.width + 1)) <= budget:
        config = wider
    return config


def compress_to_ratio(
    volume: Volume,
    ratio: float,
    *,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    pruning: PruningConfig | None = None,
    path: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    should_abort: AbortCallback | None = None,
) -> CompressResult:
    """Compress into at most float32 bytes / ratio, as close to it as the model allows (see the module);
    model_config gives the architecture and every setting but the size."""
    planned, budget = plan_for_ratio(ratio, volume, model_config, pruning)
    return compress(volume, model_config=planned, train_config=train_config, pruning=pruning, path=path,
                    progress=progress, should_abort=should_abort, target_bytes=budget)


@dataclasses.dataclass
class PSNRSearch:
    """What a quality search found: the chosen trial's result and every trial as (ratio, PSNR or None)."""

    result: CompressResult
    ratio: float  # the chosen trial's target ratio
    reached: bool  # False: no trial reached the target; the result is the best PSNR seen
    trials: list[tuple[float, float | None]]  # PSNR None: that ratio leaves too few bytes for any model


def compress_to_psnr(
    volume: Volume,
    target_psnr: float,
    *,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    pruning: PruningConfig | None = None,
    path: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    should_abort: AbortCallback | None = None,
    trials: int = EncodeConfig().psnr_trials,
    choose: Chooser | None = None,
) -> PSNRSearch:
    """The smallest file that reaches target_psnr dB, searched over ratios with up to `trials` trainings.

    The first trial compresses PSNR_START_RATIO-fold; passing trials multiply the ratio by 4, failing ones
    divide it by 4, until one of each is known, then the search bisects between them in log ratio. Each trial
    writes beside the target; the chosen one is renamed onto it. When no trial reaches the target, the file
    of the best PSNR seen is kept and `reached` is False. choose: the model and pruning settings for each trial's
    ratio, in place of model_config and pruning (srnvtk.presets.choose).
    """
    if not math.isfinite(target_psnr) or target_psnr <= 0:
        raise SettingsError(f"target PSNR must be a positive number of dB, got {target_psnr}")
    if trials < 1:
        raise SettingsError(f"a quality search needs at least one trial, got {trials}")
    folder = Path(path).parent if path is not None else None
    if folder is not None and not folder.is_dir():
        raise SettingsError(f"cannot write '{path}': folder '{folder}' does not exist")
    with tempfile.TemporaryDirectory(prefix=".srnvtk-psnr-", dir=folder) as scratch:
        chooser = choose or (lambda _ratio: (model_config, pruning))
        search = _search(volume, target_psnr, train_config or TrainConfig(), chooser, Path(scratch), progress,
                         should_abort, trials)
        if path is not None:
            os.replace(Path(scratch) / _trial_name(search.ratio), path)
    return search


def _trial_name(ratio: float) -> str:
    return f"ratio_{ratio:.6g}.srn"


def _search(volume: Volume, target_psnr: float, train_config: TrainConfig, chooser: Chooser, scratch: Path,
            progress: ProgressCallback | None, should_abort: AbortCallback | None, trials: int) -> PSNRSearch:
    def trial(index: int, ratio: float) -> tuple[float, CompressResult]:
        def trial_progress(fraction: float, message: str) -> None:
            if progress is not None:
                progress((index + fraction) / trials, f"trial {index + 1}/{trials} (ratio {ratio:.4g}): {message}")

        base, pruning = chooser(ratio)
        result = compress_to_ratio(volume, ratio, model_config=base, train_config=train_config, pruning=pruning,
                                   path=scratch / _trial_name(ratio), progress=trial_progress,
                                   should_abort=should_abort)
        return result.stats["psnr"], result

    start = min(PSNR_START_RATIO, _largest_ratio(volume.geometry, *chooser(PSNR_START_RATIO)) / 2)
    found = search_ratio(trial, target_psnr, start, trials, "this volume")
    return PSNRSearch(found.made, found.ratio, found.reached, found.history)


@dataclass
class RatioSearch(Generic[Made]):
    """The ratio a quality search chose, what its trial made, whether it reached the target, and every trial as
    (ratio, PSNR or None when no model fitted)."""

    ratio: float
    made: Made
    reached: bool
    history: list[tuple[float, float | None]]


def search_ratio(trial: Callable[[int, float], tuple[float, Made]], target_psnr: float, start_ratio: float,
                 trials: int, what: str) -> RatioSearch[Made]:
    """The largest ratio whose trial reaches the target PSNR, within `trials` trials: trial(index, ratio) gives
    (PSNR, what it made) or raises SettingsError when no model fits that ratio. Passing trials multiply the ratio
    by 4, failing ones divide it by 4, then the search bisects in log ratio until the passing and failing ratios
    are PSNR_RATIO_PRECISION apart. Without a passing trial: the best PSNR's. SettingsError when nothing fitted."""
    passing: tuple[float, Made] | None = None  # the largest ratio that reached the target
    best: tuple[float, float, Made] | None = None  # the best PSNR, in case none does
    failing: float | None = None  # the smallest ratio that did not
    history: list[tuple[float, float | None]] = []
    ratio = start_ratio
    for index in range(trials):
        if ratio <= 1.0:
            break
        try:
            quality, made = trial(index, ratio)
        except SettingsError:  # too few bytes for any model: this ratio fails
            history.append((ratio, None))
            failing = ratio if failing is None else min(failing, ratio)
        else:
            history.append((ratio, quality))
            if best is None or quality > best[1]:
                best = (ratio, quality, made)
            if quality >= target_psnr:
                passing = (ratio, made) if passing is None or ratio > passing[0] else passing
            else:
                failing = ratio if failing is None else min(failing, ratio)
        if passing is not None and failing is not None:
            if failing / passing[0] <= PSNR_RATIO_PRECISION:
                break
            ratio = math.sqrt(failing * passing[0])
        else:
            ratio = ratio * 4 if passing is not None else ratio / 4
    if passing is not None:
        return RatioSearch(passing[0], passing[1], True, history)
    if best is None:
        tried = ", ".join(f"{r:.3g}" for r, _ in history)
        raise SettingsError(f"no model fits {what} at any ratio tried ({tried})")
    return RatioSearch(best[0], best[2], False, history)


def _largest_ratio(geometry: Geometry, base: ModelConfig | None, pruning: PruningConfig | None) -> float:
    """The ratio of the smallest model's file: no ratio above it can be met."""
    base = base or FVSRNConfig()
    smallest = (dataclasses.replace(base, width=1) if isinstance(base, NeurcompConfig)
                else dataclasses.replace(base, grid_resolution=2, grid_shape=None))
    try:
        return 4.0 * geometry.num_points / estimated_file_bytes(smallest, geometry, pruning)
    except SettingsError:  # wavelet levels too many for the smallest grid: no better bound at hand
        return 4.0 * geometry.num_points / 1024


@dataclasses.dataclass
class Encoded:
    """What `encode` made: the result, the pruning it trained with, the quality search behind it when a PSNR was
    the target, and the bricked run (srnvtk.distributed.BrickedResult) when the volume was cut into bricks."""

    result: CompressResult
    pruning: PruningConfig
    search: PSNRSearch | None = None
    bricks: Any = None


def encode(
    volume: Volume,
    settings: EncoderSettings,
    *,
    path: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    should_abort: AbortCallback | None = None,
) -> Encoded:
    """Compress as the encoder's settings say: to a PSNR target, into a ratio target, or with the model's
    settings as given; under an error bound, the smallest file keeping it (srnvtk.bounded); in bricks
    (srnvtk.distributed) where the brick settings say so. What the command line and the SRN Encoder both run. With
    the architecture 'auto', each target ratio trains the preset measured best there (presets.choose)."""
    size = settings.bricks.size_for(volume.geometry.dimensions)
    if size:
        from .distributed import compress_bricks
        from .sources import VolumeSource

        run = compress_bricks(VolumeSource(volume), settings, brick_size=size, halo=settings.bricks.halo, path=path,
                              progress=progress, should_abort=should_abort, keep_reconstruction=True)
        first = run.configs[run.bricks[0]]
        return Encoded(CompressResult(first, run.reconstruction, run.stats, run.file_bytes), settings.pruning,
                       bricks=run)
    target = settings.encode
    if target.max_error is not None or target.max_rel_error is not None:
        from .bounded import compress_bounded

        return Encoded(compress_bounded(volume, settings, path=path, progress=progress, should_abort=should_abort),
                       settings.pruning)
    common = {"train_config": settings.train, "path": path, "progress": progress, "should_abort": should_abort}
    if target.psnr is not None:
        search = compress_to_psnr(volume, target.psnr, trials=target.psnr_trials,
                                  choose=partial(presets.choose, settings), **common)
        return Encoded(search.result, presets.choose(settings, search.ratio)[1], search)
    if target.ratio is not None:
        model_config, pruning = presets.choose(settings, target.ratio)
        return Encoded(compress_to_ratio(volume, target.ratio, model_config=model_config, pruning=pruning, **common),
                       pruning)
    return Encoded(compress(volume, model_config=settings.model_config, pruning=settings.pruning, **common),
                   settings.pruning)
