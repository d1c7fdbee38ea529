"""Fitting a network to a volume: random voxel batches, Adam with exponential learning-rate decay.

Without pruning: one phase of MSE, the rate decaying exponentially from learning_rate to
final_learning_rate_fraction of it. With a rate fit (`fit`, srnvtk.budget: drop latent entries until
the file fits a byte budget): the phase ends at FIT_AT of the budget with the rate at finetune_lr_factor of
learning_rate, the fit runs, and the survivors are fine-tuned like pruned ones. A Neurcomp network with
weight_clusters is split the same way: its hidden matrices are clustered (srnvtk.kmeans) at FIT_AT and the
shared values fine-tuned, so the stored model is the one optimised; so is an fV-SRN whose latent codes have
fewer than 8 bits (FVSRNConfig.grid_bits): the fine-tune reads the latent tensor rounded to its codes
(quantisation-aware, srnvtk.quantize.fake_quantize).
With pruning (srnvtk.pruning): a mask phase with the method's
objective for `mask_phase_fraction` of the budget, its rate decaying from learning_rate to
finetune_lr_factor of it; then the masks are baked in and the survivors fine-tuned with plain MSE by a
fresh Adam that starts at that lower rate and decays to the same final rate. The budget is the step count
or the time limit, whichever runs out first; progress is one fraction across both phases, and the abort
callback is asked before every step of either.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .config import ModelConfig, PruningConfig, TrainConfig
from .devices import resolve_device, torch_threads
from .errors import SettingsError, TrainingAborted
from .gpu.graphed_step import GraphedStep, eager_adam, graphs_enabled
from .importance import ErrorSampler
from .kmeans import ClusteredLinear
from .models import SRNModel, build_model, default_learning_rate, parameter_count
from .pruning import MaskObjective, attach_masks, kept_unit_fraction, pruned_fraction
from .sampling import voxel_positions
from .volume import Volume, validate_for_training

ProgressCallback = Callable[[float, str], None]
AbortCallback = Callable[[], bool]
FitCallback = Callable[[SRNModel], None]  # changes what the model keeps (see srnvtk.ratecontrol)
# A loss in place of plain MSE outside pruning's mask phase: (prediction, target) -> scalar, both normalised to
# [0, 1] (srnvtk.errorbound trains for what its residual coder needs).
LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Without pruning, a rate fit comes after this share of the training budget; the rest fine-tunes what it kept.
FIT_AT = 0.85
# Error-driven batches (srnvtk.importance) until this share of the budget, uniform ones after. The last part
# trains at a low rate on what rate control kept; error-driven batches there cost 0.99 dB on the sharp-feature
# volume at ratio 1000 (benchmarks/README.md, issue 17, stop 25).
ERROR_SAMPLING_UNTIL = FIT_AT


@dataclass
class TrainResult:
    model: SRNModel
    value_range: tuple[float, float]
    seconds: float
    final_loss: float  # MSE of the last reported batch
    steps: int


@dataclass
class _Phase:
    name: str  # empty for a run without pruning
    start: float  # fractions of the whole budget
    end: float
    learning_rate: float  # at the phase's start
    final_learning_rate: float  # at its end
    objective: MaskObjective | None = None  # None: plain MSE
    fit_first: bool = False  # run the rate fit (when there is one) before the phase


# What TrainConfig.time_limit counts: wall-clock seconds, or CPU seconds of this process (all its threads).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


class _Budget:
    """Steps taken and the fraction of the budget used: steps, or the clock when it runs out first."""

    def __init__(self, steps: int, time_limit: float, clock: str = "wall") -> None:
        self.steps, self.time_limit = steps, time_limit
        self.clock = CLOCKS[clock]
        self.start = time.perf_counter()
        self.clock_start = self.clock()
        self.step = 0
        self.fraction = 0.0

    def tick(self) -> None:
        self.step += 1
        self.fraction = self.step / self.steps
        if self.time_limit > 0:
            self.fraction = max(self.fraction, (self.clock() - self.clock_start) / self.time_limit)

    @property
    def seconds(self) -> float:
        """Wall-clock seconds since training started (whichever clock the limit counts)."""
        return time.perf_counter() - self.start


def normalized_values(volume: Volume, value_range: tuple[float, float]) -> torch.Tensor:
    """Flat float32 tensor of the values mapped to [0, 1]: (points,) for a scalar, (points, 3) for a vector (whose
    components the caller has brought to one range)."""
    vmin, vmax = value_range
    flat = np.ascontiguousarray(volume.values).reshape(volume.geometry.num_points, -1)
    flat = torch.from_numpy(flat[:, 0] if flat.shape[1] == 1 else flat)
    return (flat.to(torch.float32) - vmin) / (vmax - vmin)


def train(
    volume: Volume,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    progress: ProgressCallback | None = None,
    should_abort: AbortCallback | None = None,
    pruning: PruningConfig | None = None,
    fit: FitCallback | None = None,
    loss: LossFunction | None = None,
    value_range: tuple[float, float] | None = None,
    initial_model: SRNModel | None = None,
    frozen: tuple[str, ...] = (),
) -> TrainResult:
    """Fit a new network to the volume (pruning it when asked, then fitting it to a byte budget when `fit` is
    given); deterministic for a given seed on the CPU. train_config.threads applies while it runs.
    loss: minimised instead of MSE outside the mask phase (None: MSE); the reported loss stays the MSE.
    value_range: normalise by this range instead of the volume's own (a brick or step of a larger array).

    initial_model: start from a copy of its weights instead of a fresh initialisation (warm start from the
    previous time step's model); it must have the architecture and shapes model_config gives for this volume
    (SettingsError otherwise) and is left unchanged. Its pruning is not carried over. frozen: parameter name
    prefixes (say "mlp.") whose parameters keep their initial values."""
    with torch_threads(train_config.threads):
        return _train(volume, model_config, train_config, progress, should_abort, pruning or PruningConfig(), fit,
                      loss, value_range, initial_model, (frozen,) if isinstance(frozen, str) else tuple(frozen))


def _train(
    volume: Volume,
    model_config: ModelConfig,
    train_config: TrainConfig,
    progress: ProgressCallback | None,
    should_abort: AbortCallback | None,
    pruning: PruningConfig,
    fit: FitCallback | None,
    loss: LossFunction | None,
    value_range: tuple[float, float] | None,
    initial_model: SRNModel | None = None,
    frozen: tuple[str, ...] = (),
) -> TrainResult:
    value_range = validate_for_training(volume, value_range)
    device = resolve_device(train_config.device)
    check_memory(model_config, volume, device)
    torch.manual_seed(train_config.seed)
    model = build_model(model_config, volume.geometry)
    if initial_model is not None:
        _load_initial(model, initial_model)
    model = model.to(device)
    _freeze(model, frozen)
    targets = normalized_values(volume, value_range).to(device)
    generator = torch.Generator(device=device).manual_seed(train_config.seed)
    learning_rate = train_config.learning_rate or default_learning_rate(model_config)
    final_rate = learning_rate * train_config.final_learning_rate_fraction

    finetune_rate = learning_rate * pruning.finetune_lr_factor
    finetune = [_Phase("fine-tune", 0.0, 1.0, finetune_rate, min(final_rate, finetune_rate), fit_first=True)]
    if pruning.enabled:
        attach_masks(model, pruning)
        split = pruning.mask_phase_fraction
        phases = [_Phase("masks", 0.0, split, learning_rate, finetune_rate, MaskObjective(pruning, model))]
    elif fit is not None or model.shares_weights or rounds_latent(model):
        split = FIT_AT
        phases = [_Phase("", 0.0, split, learning_rate, finetune_rate)]
    else:
        split, finetune = 1.0, []
        phases = [_Phase("", 0.0, 1.0, learning_rate, final_rate)]
    phases += [dataclasses.replace(phase, start=split) for phase in finetune]

    budget = _Budget(train_config.steps, train_config.time_limit, train_config.time_clock)
    sampler = ErrorSampler(volume.geometry.shape_zyx, device, generator) if error_sampling(train_config, device) \
        else None
    loss_value = float("nan")
    for phase in phases:
        if phase.fit_first:
            if fit is not None:
                fit(model)
            model.share_weights()
            model.quantization_aware(True)
        loss_value = _run_phase(model, phase, budget, targets, volume, train_config, generator, progress,
                                should_abort, loss_value, loss, sampler)
        if phase.objective is not None:
            # Under a byte budget the fit, not the method's threshold, chooses the survivors (by the masks'
            # ranking) where the architecture supports it (fV-SRN).
            if fit is not None and model.latent_name is not None:
                model.bake_masks(rank_only=True)
            else:
                model.bake_masks()
    model.quantization_aware(False)
    model.eval()
    return TrainResult(model, value_range, budget.seconds, loss_value, budget.step)


def error_sampling(config: TrainConfig, device: torch.device) -> bool:
    """Whether batches are drawn by the network's error (srnvtk.importance) rather than uniformly."""
    return config.sampling == "error" or (config.sampling == "auto" and device.type == "cpu")


def rounds_latent(model: SRNModel) -> bool:
    """Whether the model's latent codes have fewer than 8 bits, so training ends quantisation-aware."""
    return model.latent_name is not None and model.config.grid_bits < 8


# Bytes per trainable value while training: the value, its gradient and Adam's two moments (float32 each).
TRAINING_BYTES_PER_VALUE = 16


def check_memory(model_config: ModelConfig, volume: Volume, device: torch.device) -> None:
    """SettingsError, before anything is allocated, when the model cannot be trained in this machine's memory
    (a model larger than the machine gets a clear message, not the allocator's)."""
    needed = parameter_count(model_config, volume.geometry) * TRAINING_BYTES_PER_VALUE + 4 * volume.values.size
    available = available_memory(device)
    if available is not None and needed > available:
        raise SettingsError(f"the model needs about {needed / 2**30:.1f} GiB to train ({needed:,} bytes), more "
                            f"than the {available / 2**30:.1f} GiB of memory on the {device.type.upper()}; choose a "
                            "smaller grid, fewer channels or a narrower network")


def available_memory(device: torch.device) -> int | None:
    """Total memory of the device (CUDA) or of the machine (CPU); None where it cannot be told."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _load_initial(model: SRNModel, initial: SRNModel) -> None:
    """Copy initial's weights into the freshly built model (warm start)."""
    config = getattr(initial, "config", None)
    if type(initial) is not type(model) or type(config) is not type(model.config):
        raise SettingsError(f"the initial model is a {type(initial).__name__}, the settings give a "
                            f"{type(model).__name__}")
    if config != model.config:
        ours, theirs = dataclasses.asdict(model.config), dataclasses.asdict(config)
        differ = ", ".join(f"{k} {theirs[k]} (not {ours[k]})" for k in ours if ours[k] != theirs[k])
        raise SettingsError(f"the initial model has other settings than the ones to train: {differ}")
    state = {k: v.detach().cpu() for k, v in initial.state_dict().items()
             if not k.endswith((".codebook", ".indices"))}
    for name, module in initial.named_modules():
        if isinstance(module, ClusteredLinear):  # shared values expanded: this step clusters its own again
            state[f"{name}.weight"] = module.weight.detach().cpu()
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise SettingsError(f"the initial model's shapes do not fit this volume: {str(exc).splitlines()[-1].strip()}"
                            ) from None


def _freeze(model: SRNModel, prefixes: tuple[str, ...]) -> None:
    """Keep the parameters whose names start with a prefix at their values (Adam skips them: no gradients)."""
    for prefix in prefixes:
        matched = [p for name, p in model.named_parameters() if name.startswith(prefix)]
        if not matched:
            names = ", ".join(name for name, _ in model.named_parameters())
            raise SettingsError(f"no parameter to freeze starts with '{prefix}'; the model has: {names}")
        for parameter in matched:
            parameter.requires_grad_(False)


def _run_phase(
    model: SRNModel,
    phase: _Phase,
    budget: _Budget,
    targets: torch.Tensor,
    volume: Volume,
    config: TrainConfig,
    generator: torch.Generator,
    progress: ProgressCallback | None,
    should_abort: AbortCallback | None,
    loss_value: float,
    loss_function: LossFunction | None = None,
    sampler: ErrorSampler | None = None,
) -> float:
    """Steps until the budget reaches the phase's end; returns the last reported MSE. The sampler draws the
    batches of plain-MSE phases until ERROR_SAMPLING_UNTIL of the budget (None, and elsewhere: uniform batches)."""
    objective = phase.objective
    if objective is not None or loss_function is not None or phase.start >= ERROR_SAMPLING_UNTIL:
        sampler = None  # so that a phase with no error-driven batch may take CUDA's captured step
    if objective is None:
        groups = [{"params": list(model.parameters()), "base_lr": phase.learning_rate}]
    else:
        groups = objective.parameter_groups(phase.learning_rate)
    shape = volume.geometry.shape_zyx
    graphed = None  # on CUDA, plain MSE: the whole step captured once and replayed (srnvtk.gpu.graphed_step)
    if objective is None and loss_function is None and sampler is None and graphs_enabled(targets.device):
        graphed = GraphedStep(model, groups, phase.learning_rate, targets, shape, config.batch_size, generator)
    optimizer = graphed.optimizer if graphed is not None else eager_adam(groups, phase.learning_rate, targets.device)
    steps = config.steps
    report_every = max(1, steps // 200)
    where = f" ({phase.name} phase)" if phase.name else ""
    while budget.fraction < phase.end:
        if should_abort is not None and should_abort():
            raise TrainingAborted(f"training aborted at step {budget.step} of {steps}{where}")
        # Exponential decay from the phase's initial to its final rate, over the phase's share of the
        # steps or of the time limit, whichever runs out first.
        local = min(1.0, max(0.0, (budget.fraction - phase.start) / (phase.end - phase.start)))
        decay = (phase.final_learning_rate / phase.learning_rate) ** local
        if graphed is not None:
            mse = graphed(decay)
        else:
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * decay
            by_error = sampler is not None and budget.fraction < ERROR_SAMPLING_UNTIL
            if by_error:
                index, weights = sampler.sample(config.batch_size)
            else:
                index = torch.randint(targets.shape[0], (config.batch_size,), generator=generator,
                                      device=targets.device)
            positions = voxel_positions(index, shape)
            prediction = model(positions)
            if by_error:
                squared = (prediction - targets[index]).square()
                squared = squared if squared.dim() == 1 else squared.mean(dim=1)  # a vector: its components' mean
                sampler.record(squared.detach())
                mse, loss = squared.mean(), (squared * weights).mean()
            elif objective is None:
                loss = mse = F.mse_loss(prediction, targets[index])
                if loss_function is not None:
                    loss = loss_function(prediction, targets[index])
            else:
                loss, mse = objective(prediction, targets[index], positions, local)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if objective is not None:
                objective.after_step()
        budget.tick()
        if budget.step % report_every == 0 or budget.fraction >= phase.end:
            loss_value = float(mse.detach())
            if progress is not None:
                progress(min(budget.fraction, 1.0), _message(model, phase, budget, loss_value))
    return loss_value


def _message(model: SRNModel, phase: _Phase, budget: _Budget, loss: float) -> str:
    text = f"step {budget.step}/{budget.steps} loss {loss:.3g}"
    if not phase.name:
        return text
    if phase.objective is not None:
        return f"{phase.name}: {text}, {kept_unit_fraction(model):.0%} of units kept"
    return f"{phase.name}: {text}, {pruned_fraction(model):.0%} pruned"
