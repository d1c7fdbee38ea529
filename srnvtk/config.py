"""Settings as frozen dataclasses, validated once, stored in every .srn file as JSON.

Each user-facing setting is declared once, as a field with `setting(...)` (srnvtk.options): default, range or
choices, help, command-line flag, ParaView property, panel group and when it applies. Validation, the
command line, the VTK setters and the ParaView XML are all derived from these declarations. Checks that
relate two settings stay in the classes' `__post_init__`.

Measured reasons for the defaults are in benchmarks/README.md (hyperparameter sweep, pruning ablation).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import SettingsError
from .options import Condition, check_settings, setting

DEVICES = ("auto", "cpu", "cuda")
TIME_CLOCKS = ("wall", "cpu")  # what TrainConfig.time_limit counts (srnvtk.train)
PRECISIONS = ("auto", "fp32", "fp16")  # decoding on CUDA (srnvtk.decode)
PRUNING_METHODS = ("none", "smallify", "variational", "binary")
GRANULARITIES = ("position", "position_channel")
SIGMA_MODES = ("static", "dynamic")
ARCHITECTURES = ("fvsrn", "neurcomp")
TIME_SCHEMES = ("warm", "delta")  # how a series' later steps are stored (srnvtk.series_encode)
SAMPLINGS = ("auto", "error", "uniform")  # where a training batch's points come from (srnvtk.importance)
MAX_WAVELET_LEVELS = 16  # each level halves the axes: more than enough for any grid resolution allowed
INT32_MAX = 2**31 - 1  # ParaView's integer properties are 32-bit

OUTPUT, MODEL, BRICKS, TRAINING, PRUNING, READING = "Output", "Model", "Bricks", "Training", "Pruning", "Reading"
FVSRN_ONLY = Condition("architecture", ("fvsrn", "auto"))  # 'auto' trains an fV-SRN (srnvtk.presets)
NEURCOMP_ONLY = Condition("architecture", ("neurcomp",))
PRUNING_ON = Condition("method", ("none",), inverse=True)


def _wavelet_choices() -> tuple[str, ...]:
    from .wavelet import wavelet_names  # PyWavelets: only when wavelets are listed or checked

    return ("none", *wavelet_names())


@dataclass(frozen=True)
class EncodeConfig:
    """What to make: the architecture and the file's size or quality target."""

    ratio: float | None = setting(
        None, "Compression ratio to aim for (float32 bytes of the array / file bytes, the whole file counted): the "
        "grid (fvsrn) or the width (neurcomp) is sized for it and an fvsrn grid's least important entries are "
        "dropped after training until the file fits, so the file lands at or just under the budget (with pruning "
        "it may land well under). 0: off, the model's size settings are used as given.",
        OUTPUT, property="TargetRatio", flag="--ratio", metavar="R", low=1.0, low_open=True, none_as=0.0,
        exclusive="size")
    psnr: float | None = setting(
        None, "PSNR in dB to reach with the smallest file: searches target ratios with up to PSNR Trials "
        "trainings (each with the full step and time budget); the best file is kept when none reaches it. 0: off. "
        "Wins over the target ratio.",
        OUTPUT, property="TargetPSNR", label="Target PSNR", flag="--psnr", metavar="P", low=0.0, high=1000.0,
        low_open=True, high_open=True, none_as=0.0, exclusive="size")
    max_error: float | None = setting(
        None, "Guaranteed pointwise error bound, in the array's units: every voxel of the decoded grid (full, "
        "strided, sub-extent or piece) is within it of the original. The encoder picks the split between a "
        "network and a residual coded to the bound that gives the smallest file (a target ratio then only "
        "caps the size). 0: lossless for integer arrays (as is any bound below 0.5); exact values for float "
        "arrays. -1: off.",
        OUTPUT, property="MaxError", flag="--max-error", metavar="E", low=0.0, none_as=-1.0, exclusive="bound")
    max_rel_error: float | None = setting(
        None, "The error bound as a fraction of the array's value range (max - min); see Max Error. -1: off.",
        OUTPUT, property="MaxRelError", label="Max Relative Error", flag="--max-rel-error", metavar="e", low=0.0,
        high=1.0, none_as=-1.0, exclusive="bound")
    bound_networks: int = setting(
        2, "Under an error bound: how many network sizes the split search trains besides none (each a full "
        "training; 0: the residual coder alone).", OUTPUT, property="BoundNetworks", flag="--bound-networks",
        metavar="N", low=0, high=4, advanced=True)
    psnr_trials: int = setting(
        5, "Trainings a PSNR target runs at most.", OUTPUT, property="PSNRTrials", label="PSNR Trials",
        flag="--psnr-trials", metavar="N", low=1, high=100, advanced=True)
    architecture: str = setting(
        "auto", "The network: fvsrn (a latent feature grid read trilinearly, then a small MLP), neurcomp (a SIREN "
        "of sine layers), or auto: with a target ratio or PSNR, the architecture, pruning and grid that measured "
        "best at that ratio (srnvtk.presets; an explicit pruning method or wavelet is kept), else fvsrn. A target "
        "ratio sizes the grid (fvsrn) or the width (neurcomp).",
        MODEL, property="Architecture", flag="--arch", choices=("auto", *ARCHITECTURES))
    # Delta parts (srnvtk.delta, formats 11-12) against warm full parts, generated series at 64^3 (benchmarks/README.md,
    # results/series_file_64_v12.md, series_file_64x20.md): +0.42 / +1.93 / +1.13 dB at ratios 20 / 40 / 80 over 4
    # steps, +0.79 dB at 80 over 20 steps; so delta is the default (a part that cannot be a delta is stored whole).
    time_scheme: str = setting(
        "delta", "Time series: how a step after the first is stored. warm: a whole network, trained from the "
        "previous step's (Warm Start Fraction); delta: the same training, but its latent grid stored as the "
        "differences to the previous step's grid that fit its share of the budget (rounded to a step chosen by "
        "the decoded PSNR), then its MLP fine-tuned on that grid (plain fV-SRN fields, else warm; format 11, 12 "
        "with a vector field).", OUTPUT, property="TimeScheme", flag="--time-scheme",
        choices=TIME_SCHEMES, advanced=True)
    key_interval: int = setting(
        0, "Time series with the delta scheme: a whole network (a key frame) every this many steps, so decoding a "
        "step reads at most this many parts; 0: only the first step.", OUTPUT, property="KeyInterval",
        flag="--key-interval", metavar="K", low=0, high=INT32_MAX, advanced=True)

    def __post_init__(self) -> None:
        check_settings(self)
        if self.max_error is not None and self.max_rel_error is not None:
            raise SettingsError("give max_error or max_rel_error, not both")
        if self.psnr is not None and (self.max_error is not None or self.max_rel_error is not None):
            raise SettingsError("an error bound and a PSNR target cannot be combined; the bound sets the quality")


@dataclass(frozen=True)
class FVSRNConfig:
    """fV-SRN: a latent grid (channels x grid resolution, longest axis) read trilinearly, plus an MLP."""

    architecture: ClassVar[str] = "fvsrn"
    applies: ClassVar[tuple[Condition, ...]] = (FVSRN_ONLY,)

    grid_channels: int = setting(16, "Feature channels of the latent grid.", MODEL, property="GridChannels",
                                 flag="--grid-channels", metavar="C", low=1, high=256, advanced=True)
    grid_resolution: int = setting(
        32, "Latent grid points along the longest axis (other axes follow the aspect ratio). Ignored when a "
        "target ratio or PSNR is set.", MODEL, property="GridResolution", flag="--grid-resolution", metavar="N",
        low=2, high=1024, exclusive="size")
    grid_shape: tuple[int, int, int] | None = None  # (z, y, x); derived from the volume when None
    mlp_width: int = setting(32, "Neurons per hidden layer of the decoder MLP.", MODEL, property="MLPWidth",
                             label="MLP Width", flag="--mlp-width", metavar="W", low=1, high=1024, advanced=True)
    mlp_layers: int = setting(4, "Hidden layers of the decoder MLP.", MODEL, property="MLPLayers",
                              label="MLP Layers", flag="--mlp-layers", metavar="L", low=1, high=32, advanced=True)
    fourier_features: int = setting(
        4, "Sine/cosine octaves per axis added to the MLP's input positions (0: none).", MODEL,
        property="FourierFeatures", flag="--fourier-features", metavar="F", low=0, high=16, advanced=True)
    grid_bits: int = setting(
        8, "Bits per stored latent code (2 to 8): the grid's values are rounded to 2^bits levels per channel before "
        "they are entropy-coded; fewer bits make smaller codes and, under a target ratio, room for a larger grid. "
        "Below 8 the last part of training sees the rounded grid (quantisation-aware), so the network adapts.",
        MODEL, property="GridBits", flag="--grid-bits", metavar="B", low=2, high=8, advanced=True)
    # The latent grid parameterised by its 3D wavelet coefficients (srnvtk.wavelet), or None for a plain grid.
    wavelet: str | None = setting(
        None, "none trains the latent grid directly; a wavelet (PyWavelets' discrete wavelets such as haar, db2, "
        "sym4, coif1, bior2.2; not dmey) trains the grid's 3D wavelet coefficients instead: every step runs the "
        "inverse wavelet transform, and pruning masks sit on the coefficients, where energy is concentrated in "
        "few of them. The file stores the surviving coefficients; the reader runs the inverse transform once.",
        MODEL, property="Wavelet", flag="--wavelet", metavar="NAME", choices=_wavelet_choices, none_as="none")
    wavelet_levels: int | None = setting(
        None, "Wavelet decomposition levels on every axis of the latent grid; 0 chooses them per axis "
        "(PyWavelets' dwt_max_level for the grid size and filter length).", MODEL, property="WaveletLevels",
        flag="--wavelet-levels", metavar="N", low=1, high=MAX_WAVELET_LEVELS, none_as=0,
        applies=(Condition("wavelet", ("none",), inverse=True),))
    outputs: int = 1  # values per point: 1 (a scalar) or 3 (a vector field, one network for its components)

    def __post_init__(self) -> None:
        object.__setattr__(self, "wavelet", _wavelet_name(self.wavelet))
        check_settings(self)
        _check_outputs(self.outputs)
        if self.grid_shape is not None:
            if len(self.grid_shape) != 3 or min(self.grid_shape) < 2:
                raise SettingsError(f"grid_shape must be three sizes >= 2, got {self.grid_shape}")
            object.__setattr__(self, "grid_shape", tuple(int(s) for s in self.grid_shape))


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
    applies: ClassVar[tuple[Condition, ...]] = (NEURCOMP_ONLY,)

    width: int = setting(64, "Neurons per layer of the Neurcomp network. Ignored when a target ratio or PSNR is "
                         "set.", MODEL, property="NeurcompWidth", flag="--neurcomp-width", metavar="N", low=1,
                         high=4096, exclusive="size")
    blocks: int = setting(7, "Blocks of two sine layers after Neurcomp's first layer (the paper's 8 layers: 7 "
                          "blocks).", MODEL, property="NeurcompBlocks", flag="--neurcomp-blocks", metavar="B",
                          low=1, high=64)
    residual: bool = setting(True, "A skip connection around every block. Without it (plain) every layer can be "
                             "pruned; with it only the inner layer of each block.", MODEL, property="Residual",
                             flag="--residual", false_flag="--plain")
    omega_0: float = setting(30.0, "The sine layers compute sin(omega_0 (W x + b)).", MODEL, property="Omega0",
                             label="Omega 0", flag="--omega0", metavar="W", low=0.0, high=1000.0, low_open=True,
                             advanced=True)
    # k-means weight sharing as Neurcomp's paper did, near the end of training; the rest of training fine-tunes
    # the shared values (srnvtk.kmeans).
    weight_clusters: int = setting(
        0, "0 stores the hidden matrices in fp16; 2 to 256 stores each as that many shared values found by k-means "
        "plus one byte per weight, and fine-tunes the shared values at the end of training.", MODEL,
        property="WeightClusters", flag="--weight-clusters", metavar="K", low=0, high=256)
    outputs: int = 1  # values per point: 1 (a scalar) or 3 (a vector field, one network for its components)

    def __post_init__(self) -> None:
        check_settings(self)
        _check_outputs(self.outputs)
        if self.weight_clusters == 1:
            raise SettingsError("weight_clusters must be 0 (fp16 weights) or in [2, 256], got 1")


def _check_outputs(outputs: object) -> None:
    if outputs not in (1, 3) or isinstance(outputs, bool):
        raise SettingsError(f"a network has 1 output (a scalar) or 3 (a vector), got {outputs!r}")


def stored_model_config(config: ModelConfig) -> dict[str, Any]:
    """The model settings as a file stores them: `outputs` only for a vector network, so scalar networks'
    settings read as before (and in srnvtk versions without vectors)."""
    stored = dataclasses.asdict(config)
    if stored.get("outputs") == 1:
        del stored["outputs"]
    return stored


ModelConfig = FVSRNConfig | NeurcompConfig
MODEL_CONFIGS: dict[str, type] = {"fvsrn": FVSRNConfig, "neurcomp": NeurcompConfig}
# Adam's initial rate when TrainConfig.learning_rate is None, per architecture; Neurcomp wider than
# NEURCOMP_REFERENCE_WIDTH gets rate * reference / width (each neuron sums `width` weights that Adam all moves
# by about the rate). Where these come from: benchmarks/README.md (hyperparameter sweep, Neurcomp rates).
DEFAULT_LEARNING_RATES = {"fvsrn": 2e-2, "neurcomp": 1e-3, "neurcomp-plain": 5e-4}
NEURCOMP_REFERENCE_WIDTH = 48


@dataclass(frozen=True)
class PruningConfig:
    """Pruning while training: learn masks, bake them in, fine-tune the survivors (see srnvtk.pruning).

    Masks sit on fV-SRN's latent grid, or on its wavelet coefficients with a wavelet grid (granularity
    'position': one per grid point or coefficient position, shared by the channels; 'position_channel': one per
    value), and on Neurcomp's hidden neurons. Defaults: benchmarks/README.md (pruning ablation).
    """

    method: str = setting(
        "none", "Prune while training: learn masks (Smallify factors, variational dropout or a straight-through "
        "binary mask) for the first part of the steps, bake them in, then fine-tune what is left. Pruned grid "
        "entries (fvsrn) and neurons (neurcomp) are not stored, so the file shrinks.", PRUNING,
        property="Pruning", flag="--prune", choices=PRUNING_METHODS)
    granularity: str = setting(
        "position", "fvsrn: one mask per latent grid position (shared by its channels), or one per position and "
        "channel.", PRUNING, property="PruningGranularity", flag="--prune-granularity", choices=GRANULARITIES,
        applies=(FVSRN_ONLY, PRUNING_ON))
    l1_weight: float = setting(
        2e-3, "smallify and binary: weight of the L1 penalty on the masks (mean over the units). More prunes "
        "more.", PRUNING, property="L1Weight", label="L1 Weight", flag="--prune-l1", metavar="W", low=0.0,
        high=1e6, applies=(Condition("method", ("smallify", "binary")),))
    kl_weight: float = setting(
        0.3, "variational: weight of the KL divergence (mean over the units) beside the likelihood, ramped up "
        "over the first part of the mask phase. More prunes more.", PRUNING, property="KLWeight",
        label="KL Weight", flag="--prune-kl", metavar="W", low=0.0, high=1e6,
        applies=(Condition("method", ("variational",)),))
    sigma: str = setting(
        "static", "variational: the likelihood's sigma is fixed (the static sigma) or predicted per position by a "
        "small network (dynamic).", PRUNING, property="Sigma", flag="--prune-sigma", choices=SIGMA_MODES,
        applies=(Condition("method", ("variational",)),))
    static_sigma: float = setting(
        0.05, "variational: the fixed sigma (and the dynamic one's start), in units of the value range. More "
        "prunes more.", PRUNING, property="StaticSigma", flag="--prune-static-sigma", metavar="S", low=0.0,
        high=10.0, low_open=True, advanced=True, applies=(Condition("method", ("variational",)),))
    mask_phase_fraction: float = setting(
        2.0 / 3.0, "Share of the training budget spent with masks; the rest fine-tunes the survivors with plain "
        "MSE.", PRUNING, property="MaskPhaseFraction", flag="--mask-phase", metavar="F", low=0.0, high=1.0,
        low_open=True, high_open=True, advanced=True, applies=(PRUNING_ON,))
    # Masks must travel from "keep" to "prune" within the mask phase whatever rate the network itself needs.
    mask_learning_rate: float = setting(
        0.05, "Initial Adam learning rate of the masks' own parameters (decayed like the network's).", PRUNING,
        property="MaskLearningRate", flag="--mask-lr", metavar="LR", low=0.0, high=1.0, low_open=True,
        high_open=True, advanced=True, applies=(PRUNING_ON,))
    finetune_lr_factor: float = setting(
        0.1, "The mask phase's learning rate decays to this fraction of the initial one; fine-tuning restarts "
        "Adam there.", PRUNING, property="FinetuneLRFactor", label="Fine-tune LR Factor",
        flag="--finetune-lr-factor", metavar="F", low=0.0, high=1.0, low_open=True, advanced=True,
        applies=(PRUNING_ON,))
    l2_weight: float = setting(
        1e-3, "smallify: weight of the L2 penalty on what the factors multiply, so those values cannot grow "
        "instead.", PRUNING, property="L2Weight", label="L2 Weight", flag="--prune-l2", metavar="W", low=0.0,
        high=1e6, advanced=True, applies=(Condition("method", ("smallify",)),))
    kl_ramp_fraction: float = setting(
        0.5, "variational: the KL weight rises linearly from 0 over this share of the mask phase.", PRUNING,
        property="KLRampFraction", label="KL Ramp Fraction", flag="--prune-kl-ramp", metavar="F", low=0.0,
        high=1.0, advanced=True, applies=(Condition("method", ("variational",)),))
    sign_momentum: float = setting(
        0.025, "smallify: momentum of the moving averages of each factor's sign and its variance.", PRUNING,
        property="SignMomentum", flag="--prune-sign-momentum", metavar="M", low=0.0, high=1.0, low_open=True,
        advanced=True, applies=(Condition("method", ("smallify",)),))
    sign_variance_threshold: float = setting(
        0.75, "smallify: a unit whose sign variance exceeds this is pruned.", PRUNING,
        property="SignVarianceThreshold", flag="--prune-sign-threshold", metavar="T", low=0.0, high=1.0,
        low_open=True, advanced=True, applies=(Condition("method", ("smallify",)),))
    dropout_threshold: float = setting(
        0.9, "variational: a unit whose dropout rate alpha / (1 + alpha) reaches this is pruned.", PRUNING,
        property="DropoutThreshold", flag="--prune-dropout-threshold", metavar="T", low=0.0, high=1.0,
        low_open=True, high_open=True, advanced=True, applies=(Condition("method", ("variational",)),))
    binary_threshold: float = setting(
        0.5, "binary: a unit is kept where sigmoid(logit) reaches this.", PRUNING, property="BinaryThreshold",
        flag="--prune-binary-threshold", metavar="T", low=0.0, high=1.0, low_open=True, high_open=True,
        advanced=True, applies=(Condition("method", ("binary",)),))

    def __post_init__(self) -> None:
        check_settings(self)
        # A factor whose sign flips every step drives the moving variance to ((2 - 2m) / (2 - m))^2, no higher.
        reachable = ((2 - 2 * self.sign_momentum) / (2 - self.sign_momentum)) ** 2
        if self.sign_variance_threshold >= reachable:
            raise SettingsError(
                f"sign_variance_threshold {self.sign_variance_threshold:g} is never reached with sign_momentum "
                f"{self.sign_momentum:g} (at most {reachable:.3f}); lower one of them"
            )

    @property
    def enabled(self) -> bool:
        return self.method != "none"


@dataclass(frozen=True)
class TrainConfig:
    """How long and how the network is fitted. Defaults: benchmarks/README.md (hyperparameter sweep: small
    batches and many steps at a high rate won at equal samples)."""

    steps: int = setting(
        10000, "Training steps (optimizer updates). More steps: better quality, longer runs. The time limit can "
        "end training earlier.", TRAINING, property="Steps", flag="--steps", metavar="S", low=1, high=10_000_000)
    time_limit: float = setting(
        0.0, "Stop training after this many seconds; the learning-rate schedule follows the clock, so it still "
        "anneals. 0: no limit, run all steps.", TRAINING, property="TimeLimit", flag="--time-limit", metavar="SEC",
        low=0.0, high=1e9)
    time_clock: str = setting(
        "wall", "What the time limit counts: wall (seconds on the clock, what you wait) or cpu (CPU seconds this "
        "process spends, summed over its threads: the same budget on a busy shared machine as on a quiet one).",
        TRAINING, property="TimeClock", flag="--time-clock", choices=TIME_CLOCKS, advanced=True)
    batch_size: int = setting(16384, "Sample points per training step.", TRAINING, property="BatchSize",
                              flag="--batch-size", metavar="B", low=1, high=1 << 26, advanced=True)
    # Measured in benchmarks/README.md (issue 17, stops 24 and 25: +0.6 to +1.7 dB on the CPU where the error is
    # concentrated, level on turbulence; uniform batches for the last 0.15 of the budget turned -0.9 dB on the sharp
    # volume at ratio 1000 into +0.1); on CUDA the captured step (srnvtk.gpu.graphed_step) draws its batches
    # uniformly.
    sampling: str = setting(
        "auto", "Where each batch's points come from: error (blocks of 8^3 points drawn more often where the "
        "network is still wrong, by their running RMS error, with loss weights that keep the loss the volume's MSE), "
        "uniform (every point alike), or auto: error on the CPU, uniform on CUDA (error-driven sampling is not "
        "measured there yet). Error-driven batches stop at 0.85 of the training budget; the rest, pruning's "
        "mask phase and an error bound's training sample uniformly.", TRAINING,
        property="Sampling", flag="--sampling", choices=SAMPLINGS, advanced=True)
    learning_rate: float | None = setting(
        None, "Initial Adam learning rate; it decays to the final fraction of this by the last step or the time "
        f"limit. 0 uses the architecture's default: {DEFAULT_LEARNING_RATES['fvsrn']:g} for fvsrn; for neurcomp "
        f"{DEFAULT_LEARNING_RATES['neurcomp']:g} ({DEFAULT_LEARNING_RATES['neurcomp-plain']:g} when plain) up to "
        f"width {NEURCOMP_REFERENCE_WIDTH}, in inverse proportion to wider widths.", TRAINING,
        property="LearningRate", flag="--lr", metavar="LR", low=0.0, high=1.0, low_open=True, high_open=True,
        none_as=0.0, advanced=True)
    final_learning_rate_fraction: float = setting(
        0.02, "The learning rate decays exponentially to this fraction of the initial one.", TRAINING,
        property="FinalLearningRateFraction", flag="--final-lr-fraction", metavar="F", low=0.0, high=1.0,
        low_open=True, advanced=True)
    seed: int = setting(0, "Random seed for initialisation and sampling, for repeatable results.", TRAINING,
                        property="Seed", flag="--seed", metavar="S", low=0, high=INT32_MAX, advanced=True)
    device: str = setting("auto", "Where torch trains: auto (CUDA when available), cpu, or cuda (falls back to the "
                          "CPU with a warning).", TRAINING, property="Device", flag="--device", choices=DEVICES,
                          advanced=True)
    threads: int = setting(0, "CPU threads for torch while training; 0 keeps torch's default.", TRAINING,
                           property="Threads", flag="--threads", metavar="T", low=0, high=1024, advanced=True)
    # Measured (benchmarks/README.md, issue 13): at 128^3 against 4000 cold steps a warm start reached the cold
    # start's PSNR with 0.34-0.50 of its steps on 3 of 5 steps of the generated series, within 0.9 dB with half on
    # the other two; at 64^3 against 600 cold steps of the same bytes, half the steps reached it on all 57 later
    # steps of 3 arrays x 20 steps, a third on 55.
    warm_start_fraction: float = setting(
        0.5, "Time series: every step after the first starts from the previous step's trained network and trains "
        "this fraction of the steps (and of the time limit); 1 trains every step as long as the first.", TRAINING,
        property="WarmStartFraction", flag="--warm-fraction", metavar="F", low=0.0, high=1.0, low_open=True,
        advanced=True)

    def __post_init__(self) -> None:
        check_settings(self)


# Bricks (srnvtk.bricks, srnvtk.distributed); the defaults are measured in benchmarks/README.md (bricks ablation).
# At equal CPU time on the shared 256^3 volume one network beat 8 bricks of 128^3 by 1.0 dB at ratio 100 and
# by 6.4 dB at ratio 500 (every brick pays for its own MLP): so bricks are as large as the ranks allow.
AUTO_BRICK_SIZES = (256, 128, 64, 32, 16)  # the sizes "automatic" picks from, largest first
AUTO_BRICK_POINTS = 256**3  # volumes with more points are cut into bricks automatically
MIN_BRICK_SIZE = 4


@dataclass(frozen=True)
class BrickConfig:
    """Cutting the volume into bricks, each compressed by its own network (srnvtk.bricks): what lets a volume be
    compressed by many MPI ranks, each holding one brick at a time, and read a piece at a time."""

    brick_size: int = setting(
        0, f"Points per side of a brick: the volume is cut into bricks of this size, each compressed by its own "
        f"network trained on the brick and its halo, and blended across brick borders when read. A reader decodes "
        f"only the bricks a piece needs. 0: automatic, one network for the whole volume up to "
        f"{round(AUTO_BRICK_POINTS ** (1 / 3))}^3 points on one rank, else the largest bricks (at most "
        f"{AUTO_BRICK_SIZES[0]}) that give every MPI rank at least one. Training steps are per brick.", BRICKS,
        property="BrickSize", flag="--brick-size", metavar="N", low=0, high=INT32_MAX)
    halo: int = setting(
        4, "Points each brick's network also covers beyond its brick on every side; a reader blends neighbouring "
        "networks across this overlap so values and gradients stay continuous at brick borders. 0: no overlap, "
        "brick borders may show.", BRICKS, property="BrickHalo", flag="--halo", metavar="H", low=0, high=INT32_MAX,
        advanced=True)

    def __post_init__(self) -> None:
        check_settings(self)
        if 0 < self.brick_size < MIN_BRICK_SIZE:
            raise SettingsError(f"brick size must be 0 (automatic) or at least {MIN_BRICK_SIZE}, got "
                                f"{self.brick_size}")

    def size_for(self, dimensions: tuple[int, int, int], ranks: int = 1) -> int:
        """The brick size to use for a volume of these point counts (x, y, z) on this many ranks; 0: no bricks."""
        if self.brick_size:
            return self.brick_size
        if ranks <= 1 and math.prod(dimensions) <= AUTO_BRICK_POINTS:
            return 0
        for size in AUTO_BRICK_SIZES:
            bricks = math.prod(-(-n // size) for n in dimensions)
            if bricks > 1 and bricks >= ranks:
                return size
        return AUTO_BRICK_SIZES[-1]


@dataclass(frozen=True)
class EncoderSettings:
    """Everything the encoder (command line or SRN Encoder) is given: one instance of each settings class."""

    encode: EncodeConfig = EncodeConfig()
    fvsrn: FVSRNConfig = FVSRNConfig()
    neurcomp: NeurcompConfig = NeurcompConfig()
    pruning: PruningConfig = PruningConfig()
    train: TrainConfig = TrainConfig()
    bricks: BrickConfig = BrickConfig()

    @property
    def model_config(self) -> ModelConfig:
        """The chosen architecture's settings."""
        return self.neurcomp if self.encode.architecture == "neurcomp" else self.fvsrn


# the encoder's face
ENCODER_SETTINGS = (EncodeConfig, FVSRNConfig, NeurcompConfig, PruningConfig, TrainConfig, BrickConfig)


def _whole_grid_if_empty(extent: Any) -> Any:
    """A sub-extent with an empty range on any axis (such as ParaView's default 0 -1 0 -1 0 -1) is the whole
    grid."""
    if extent is None or any(extent[2 * a + 1] < extent[2 * a] for a in range(len(extent) // 2)):
        return None
    return extent


def _one_or_three(values: Any) -> Any:
    """One stride for every axis, or one per axis."""
    if len(values) == 1:
        return tuple(values) * 3
    if len(values) != 3:
        raise SettingsError(f"--stride takes one value or three (SX SY SZ), got {len(values)}")
    return tuple(values)


@dataclass(frozen=True)
class DecodeConfig:
    """Which grid a reader reconstructs and how: every stride-th point or resampled dimensions, optionally of a
    sub-extent; on which device and threads."""

    stride: tuple[int, int, int] = setting(
        (1, 1, 1), "Keep every n-th point along x, y, z (one value, or one per axis; 1: full resolution). Used "
        "when the target dimensions are not set.", READING, property="Stride", flag="--stride", metavar="S",
        low=1, high=INT32_MAX, elements=3, nargs="+", normalize=_one_or_three, exclusive="grid")
    dimensions: tuple[int, int, int] | None = setting(
        None, "Resample to this many points along x, y, z (finer or coarser than the original) over the same "
        "bounds. 0 0 0: off, the stride is used instead.", READING, property="TargetDimensions",
        flag="--dimensions", metavar=("NX", "NY", "NZ"), low=1, high=INT32_MAX, elements=3, none_as=(0, 0, 0),
        exclusive="grid")
    extent: tuple[int, int, int, int, int, int] | None = setting(
        None, "Region to reconstruct, as i0 i1 j0 j1 k0 k1 in the original grid's index space. An empty range on "
        "any axis (such as 0 -1 0 -1 0 -1) means the whole grid.", READING, property="SubExtent",
        flag="--extent", metavar=("I0", "I1", "J0", "J1", "K0", "K1"), low=-INT32_MAX, high=INT32_MAX,
        elements=6, none_as=(0, -1, 0, -1, 0, -1), normalize=_whole_grid_if_empty, advanced=True)
    device: str = setting("auto", "Where torch decodes: auto (CUDA when available), cpu, or cuda (falls back to the "
                          "CPU with a warning).", READING, property="Device", flag="--device", choices=DEVICES,
                          advanced=True)
    threads: int = setting(0, "CPU threads for decoding; 0: one per core, shared between the MPI ranks on this "
                           "machine.", READING, property="Threads", flag="--threads", metavar="T", low=0,
                           high=1024, advanced=True)
    precision: str = setting("fp32", "The network's precision on CUDA: fp32, fp16, or auto (fp16 where a probe "
                             "shows it within 1e-3 of the value range of fp32). The CPU always uses fp32.",
                             READING, property="Precision", flag="--precision", choices=("fp32", "fp16", "auto"),
                             advanced=True)

    def __post_init__(self) -> None:
        check_settings(self)


def check_device(device: str) -> str:
    if device not in DEVICES:
        raise SettingsError(f"device must be one of {', '.join(DEVICES)}, got '{device}'")
    return device


def model_config_class(architecture: str) -> type:
    """The settings class of an architecture name; SettingsError for an unknown one."""
    if architecture not in ARCHITECTURES:
        raise SettingsError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}")
    return MODEL_CONFIGS[architecture]


def to_json(config: Any) -> str:
    return json.dumps(dataclasses.asdict(config), sort_keys=True)


def from_json(cls: type, text: str) -> Any:
    """Rebuild a config, rejecting unknown keys so a foreign file fails loudly."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        raise SettingsError(f"stored settings are not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError("stored settings are not a JSON object")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise SettingsError(f"unknown {cls.__name__} settings: {', '.join(sorted(unknown))}")
    for name in ("grid_shape", "stride", "dimensions", "extent"):
        if isinstance(data.get(name), list):
            data[name] = tuple(data[name])
    try:
        return cls(**data)
    except TypeError as exc:
        raise SettingsError(str(exc)) from None
