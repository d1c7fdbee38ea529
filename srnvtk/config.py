"""Settings as frozen dataclasses, validated once, stored in every .srn file as JSON."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import SettingsError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "fp16")  # decoding on CUDA (srnvtk.decode)
PRUNING_METHODS = ("none", "smallify", "variational", "binary")
GRANULARITIES = ("position", "position_channel")
SIGMA_MODES = ("static", "dynamic")


@dataclass(frozen=True)
class FVSRNConfig:
    """fV-SRN: a latent grid (channels x grid resolution, longest axis) read trilinearly, plus an MLP."""

    architecture: ClassVar[str] = "fvsrn"
    grid_channels: int = 16
    grid_resolution: int = 32
    grid_shape: tuple[int, int, int] | None = None  # (z, y, x); derived from the volume when None
    mlp_width: int = 32
    mlp_layers: int = 4
    fourier_features: int = 4  # sin/cos octaves per axis
    # The latent grid parameterised by its 3D wavelet coefficients (srnvtk.wavelet): a PyWavelets discrete
    # wavelet name, or None ('none') for a plain grid. Pruning masks then sit on the coefficients.
    wavelet: str | None = None
    wavelet_levels: int | None = None  # levels on every axis; None: automatic per axis; unused by a plain grid

    def __post_init__(self) -> None:
        _check_range("grid_channels", self.grid_channels, 1, 256)
        _check_range("grid_resolution", self.grid_resolution, 2, 1024)
        _check_range("mlp_width", self.mlp_width, 1, 1024)
        _check_range("mlp_layers", self.mlp_layers, 1, 32)
        _check_range("fourier_features", self.fourier_features, 0, 16)
        if self.grid_shape is not None:
            if len(self.grid_shape) != 3 or min(self.grid_shape) < 2:
                raise SettingsError(f"grid_shape must be three sizes >= 2, got {self.grid_shape}")
            object.__setattr__(self, "grid_shape", tuple(int(s) for s in self.grid_shape))
        object.__setattr__(self, "wavelet", _wavelet_name(self.wavelet))
        levels = self.wavelet_levels
        if levels is not None and (isinstance(levels, bool) or not isinstance(levels, int)
                                   or not 1 <= levels <= MAX_WAVELET_LEVELS):
            raise SettingsError(f"wavelet_levels must be None (automatic) or an integer in [1, "
                                f"{MAX_WAVELET_LEVELS}], got {levels!r}")


MAX_WAVELET_LEVELS = 16  # each level halves the axes: more than enough for any grid resolution allowed


def _wavelet_name(name: Any) -> str | None:
    """None for a plain grid (None, '' or 'none'); else the supported wavelet's canonical name."""
    if name is None or (isinstance(name, str) and name.strip().lower() in ("", "none")):
        return None
    if not isinstance(name, str):
        raise SettingsError(f"wavelet must be a wavelet name or none, got {name!r}")
    from .wavelet import check_wavelet  # imports torch and PyWavelets: only when a wavelet is asked for

    return check_wavelet(name).name


@dataclass(frozen=True)
class NeurcompConfig:
    """Neurcomp: a SIREN (sine activations, omega_0) of equal-width layers: one sine layer, then blocks of
    two sine layers (residual: with a skip connection around each block), then a linear output."""

    architecture: ClassVar[str] = "neurcomp"

    width: int = 64
    blocks: int = 7  # the paper's default of 8 layers: the first sine layer and 7 blocks
    residual: bool = True
    omega_0: float = 30.0
    # 0: the hidden (width x width) matrices are stored in fp16. 2..256: they are clustered by k-means into this
    # many shared values each (uint8 indices), as Neurcomp's paper did, near the end of training; the rest of
    # training fine-tunes the shared values (srnvtk.kmeans).
    weight_clusters: int = 0

    def __post_init__(self) -> None:
        _check_range("width", self.width, 1, 4096)
        _check_range("blocks", self.blocks, 1, 64)
        if not isinstance(self.residual, bool):
            raise SettingsError(f"residual must be true or false, got {self.residual!r}")
        _check_float("omega_0", self.omega_0, 0.0, 1000.0, low_open=True)
        if self.weight_clusters != 0:
            _check_range("weight_clusters", self.weight_clusters, 2, 256)


ModelConfig = FVSRNConfig | NeurcompConfig
MODEL_CONFIGS: dict[str, type] = {"fvsrn": FVSRNConfig, "neurcomp": NeurcompConfig}
ARCHITECTURES = tuple(MODEL_CONFIGS)
# Adam's initial rate when TrainConfig.learning_rate is None. fV-SRN: the H200 sweep's best
# (benchmarks/results/hparam_sweep*.jsonl). Neurcomp: SIREN weights need far smaller rates, for networks up
# to NEURCOMP_REFERENCE_WIDTH wide; a wider one gets rate * reference / width (each neuron sums `width`
# weights that Adam all moves by about the rate). On a 64^3 Richtmyer-Meshkov region, 600 steps, 7 blocks:
# residual width 48 gave 37.9 dB at 1e-3 and diverged at 2e-3; width 96 (300 steps) 34.9 dB at 5e-4, 32.7
# at 1e-3; plain width 48 gave 33.0 dB at 5e-4 and 24.9 at 1e-3.
DEFAULT_LEARNING_RATES = {"fvsrn": 2e-2, "neurcomp": 1e-3, "neurcomp-plain": 5e-4}
NEURCOMP_REFERENCE_WIDTH = 48


@dataclass(frozen=True)
class PruningConfig:
    """Pruning while training: learn masks, bake them in, fine-tune the survivors (see srnvtk.pruning).

    Masks sit on fV-SRN's latent grid, or on its wavelet coefficients with a wavelet grid (granularity
    'position': one per grid point or coefficient position, shared by the channels; 'position_channel': one per
    value), and on Neurcomp's hidden neurons.
    """

    method: str = "none"  # none, smallify, variational or binary
    granularity: str = "position"  # fV-SRN only
    mask_phase_fraction: float = 2.0 / 3.0  # of the training budget spent with masks; the rest fine-tunes
    finetune_lr_factor: float = 0.1  # the mask phase decays to learning_rate * this; fine-tuning restarts there
    # Adam's initial rate for the masks' own parameters (decayed like the network's): masks must travel
    # from "keep" to "prune" within the mask phase whatever rate the network itself needs
    mask_learning_rate: float = 0.05
    # smallify and binary: weight of the L1 penalty (mean over the units of |beta| or of sigmoid(logit));
    # 2e-3 pruned about 60% of a 16 x 24^3 fV-SRN grid and 20-50% of a Neurcomp of width 48 (64^3 region)
    l1_weight: float = 2e-3
    l2_weight: float = 1e-3  # smallify: L2 on the values the factors multiply, so they cannot grow instead
    # variational: weight of the mean KL divergence per unit beside the mean negative log-likelihood,
    # ramped up linearly over the first kl_ramp_fraction of the mask phase; with static_sigma 0.05, 0.3
    # pruned about 50% of a 16 x 24^3 fV-SRN grid and 25% of a Neurcomp of width 48 (64^3 region)
    kl_weight: float = 0.3
    kl_ramp_fraction: float = 0.5
    sigma: str = "static"  # variational likelihood: a fixed sigma, or one predicted per position ("dynamic")
    static_sigma: float = 0.05  # in units of the value range; larger prunes more
    sign_momentum: float = 0.025  # smallify: EMA momentum of the sign statistics
    sign_variance_threshold: float = 0.75  # smallify: prune when the EMA sign variance exceeds this
    dropout_threshold: float = 0.9  # variational: prune where alpha / (1 + alpha) >= this
    binary_threshold: float = 0.5  # binary: keep where sigmoid(logit) >= this

    def __post_init__(self) -> None:
        _check_choice("method", self.method, PRUNING_METHODS)
        _check_choice("granularity", self.granularity, GRANULARITIES)
        _check_choice("sigma", self.sigma, SIGMA_MODES)
        _check_float("mask_phase_fraction", self.mask_phase_fraction, 0.0, 1.0, low_open=True, high_open=True)
        _check_float("finetune_lr_factor", self.finetune_lr_factor, 0.0, 1.0, low_open=True)
        _check_float("mask_learning_rate", self.mask_learning_rate, 0.0, 1.0, low_open=True, high_open=True)
        for name in ("l1_weight", "l2_weight", "kl_weight"):
            _check_float(name, getattr(self, name), 0.0, 1e6)
        _check_float("kl_ramp_fraction", self.kl_ramp_fraction, 0.0, 1.0)
        _check_float("static_sigma", self.static_sigma, 0.0, 10.0, low_open=True)
        _check_float("sign_momentum", self.sign_momentum, 0.0, 1.0, low_open=True)
        _check_float("sign_variance_threshold", self.sign_variance_threshold, 0.0, 1.0, low_open=True)
        # A factor whose sign flips every step drives the moving variance to ((2 - 2m) / (2 - m))^2, no higher.
        reachable = ((2 - 2 * self.sign_momentum) / (2 - self.sign_momentum)) ** 2
        if self.sign_variance_threshold >= reachable:
            raise SettingsError(
                f"sign_variance_threshold {self.sign_variance_threshold:g} is never reached with sign_momentum "
                f"{self.sign_momentum:g} (at most {reachable:.3f}); lower one of them"
            )
        _check_float("dropout_threshold", self.dropout_threshold, 0.0, 1.0, low_open=True, high_open=True)
        _check_float("binary_threshold", self.binary_threshold, 0.0, 1.0, low_open=True, high_open=True)

    @property
    def enabled(self) -> bool:
        return self.method != "none"


PSNR_TRIALS = 5  # trainings a quality target (srnvtk.ratecontrol.compress_to_psnr) runs at most by default


@dataclass(frozen=True)
class TrainConfig:
    """How long and how the network is fitted."""

    # Small batches and many steps at a high rate won on the shared 256^3 volume at equal samples
    # (benchmarks/results/hparam_sweep*.jsonl): 16k x 12k steps at 2e-2 gave 42.6 dB, 65k x 4k at 1e-2 36.1.
    steps: int = 10000
    batch_size: int = 16384
    learning_rate: float | None = None  # None: the architecture's default (DEFAULT_LEARNING_RATES)
    final_learning_rate_fraction: float = 0.02
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # 0: torch's default
    time_limit: float = 0.0  # seconds of training at most (the schedule follows the clock); 0: no limit

    def __post_init__(self) -> None:
        _check_range("steps", self.steps, 1, 10_000_000)
        _check_range("batch_size", self.batch_size, 1, 1 << 26)
        if self.learning_rate is not None and not (0.0 < self.learning_rate < 1.0):
            raise SettingsError(f"learning_rate must lie in (0, 1), got {self.learning_rate}")
        if not (0.0 < self.final_learning_rate_fraction <= 1.0):
            raise SettingsError("final_learning_rate_fraction must lie in (0, 1]")
        check_device(self.device)
        _check_range("threads", self.threads, 0, 1024)
        if not (self.time_limit >= 0.0):
            raise SettingsError(f"time_limit must be >= 0 seconds, got {self.time_limit}")


def check_device(device: str) -> str:
    if device not in DEVICES:
        raise SettingsError(f"device must be one of {', '.join(DEVICES)}, got '{device}'")
    return device


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def _check_float(
    name: str, value: Any, lo: float, hi: float, low_open: bool = False, high_open: bool = False
) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > lo if low_open else value >= lo) and (value < hi if high_open else value <= hi)
    if not ok:
        interval = f"{'(' if low_open else '['}{lo:g}, {hi:g}{')' if high_open else ']'}"
        raise SettingsError(f"{name} must be a number in {interval}, got {value!r}")


def model_config_class(architecture: str) -> type:
    """The settings class of an architecture name; SettingsError for an unknown one."""
    _check_choice("architecture", architecture, ARCHITECTURES)
    return MODEL_CONFIGS[architecture]


def _check_range(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not (lo <= value <= hi):
        raise SettingsError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")


def to_json(config: Any) -> str:
    return json.dumps(dataclasses.asdict(config), sort_keys=True)


def from_json(cls: type, text: str) -> Any:
    """Rebuild a config, rejecting unknown keys so a foreign file fails loudly."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"stored settings are not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError("stored settings are not a JSON object")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise SettingsError(f"unknown {cls.__name__} settings: {', '.join(sorted(unknown))}")
    if data.get("grid_shape") is not None:
        data["grid_shape"] = tuple(data["grid_shape"])
    try:
        return cls(**data)
    except TypeError as exc:
        raise SettingsError(str(exc)) from None
