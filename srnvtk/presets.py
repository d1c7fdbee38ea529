"""What a target ratio or PSNR trains when the architecture is 'auto' (the default): the preset that the
rate-distortion benchmark measured best at that ratio within its time budget (benchmarks/README.md, "The default
chosen by measurement", and benchmarks/results/rd_*.md).

A preset names an architecture, a pruning method and, for fV-SRN, a wavelet grid. Settings the user gave win:
an explicit architecture turns the choice off altogether, and under 'auto' an explicit pruning method (anything
but none) or wavelet is kept; everything else the preset does not name (grid channels, MLP, training, ...)
comes from the settings as given. A quality target (--psnr) tries several ratios, and each trial gets the
preset of its own ratio.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .config import EncoderSettings, ModelConfig, PruningConfig


@dataclass(frozen=True)
class Preset:
    name: str  # as the RD benchmark names it (benchmarks/rd/srn.py)
    architecture: str
    pruning: str = "none"
    wavelet: str | None = None


PRESETS = {preset.name: preset for preset in (
    Preset("fvsrn", "fvsrn"),
    Preset("fvsrn-variational", "fvsrn", "variational"),
    Preset("fvsrn-haar-variational", "fvsrn", "variational", "haar"),
)}

# (largest target ratio, preset): the first row whose ratio reaches the target applies. Measured at 600 s of CPU
# time on one thread each (benchmarks/results/rd_*.md, benchmarks/README.md "Every preset"): the plain grid beat
# the haar grid with variational dropout at 500 and 1000 on the shared Richtmyer-Meshkov volume (40.44 / 37.38 dB
# against 39.36 / 37.11), on the turbulence field (34.07 / 32.69 against 32.40 / 31.36) and on the sharp-feature
# field (40.13 / 38.57 against 37.64 / 36.30), so it is the default at every ratio. At 200 (shared volume only)
# the haar grid was ahead at 600 s (40.22 against 38.84, the plain grid's rate control trimming deeply) but behind
# the plain grid at 300 s (41.09): see benchmarks/README.md before changing this.
BY_RATIO: tuple[tuple[float, str], ...] = (
    (math.inf, "fvsrn"),
)


def preset_for_ratio(ratio: float) -> Preset:
    """The measured best preset for a target ratio."""
    return PRESETS[next(name for bound, name in BY_RATIO if ratio <= bound)]


def choose(settings: EncoderSettings, ratio: float) -> tuple[ModelConfig, PruningConfig]:
    """(model settings, pruning settings) to compress at this target ratio: the settings as given with an
    explicit architecture, else the ratio's preset with the user's explicit choices kept (see the module)."""
    if settings.encode.architecture != "auto":
        return settings.model_config, settings.pruning
    preset = preset_for_ratio(ratio)
    pruning = settings.pruning
    if not pruning.enabled:
        pruning = dataclasses.replace(pruning, method=preset.pruning)
    model: ModelConfig = settings.neurcomp if preset.architecture == "neurcomp" else settings.fvsrn
    if preset.architecture == "fvsrn" and settings.fvsrn.wavelet is None and preset.wavelet is not None:
        model = dataclasses.replace(settings.fvsrn, wavelet=preset.wavelet)
    return model, pruning
