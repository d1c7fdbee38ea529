"""Fitting a network to a volume: random voxel batches, MSE, Adam with exponential learning-rate decay."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .config import FVSRNConfig, TrainConfig
from .devices import resolve_device, set_threads
from .errors import TrainingAborted
from .models import FVSRN, build_model
from .sampling import voxel_positions
from .volume import Volume, validate_for_training

ProgressCallback = Callable[[float, str], None]
AbortCallback = Callable[[], bool]


@dataclass
class TrainResult:
    model: FVSRN
    value_range: tuple[float, float]
    seconds: float
    final_loss: float
    steps: int


def normalized_values(volume: Volume, value_range: tuple[float, float]) -> torch.Tensor:
    """Flat float32 tensor of the values mapped to [0, 1]."""
    vmin, vmax = value_range
    flat = torch.from_numpy(np.ascontiguousarray(volume.values).reshape(-1))
    return (flat.to(torch.float32) - vmin) / (vmax - vmin)


def train(
    volume: Volume,
    model_config: FVSRNConfig,
    train_config: TrainConfig,
    progress: ProgressCallback | None = None,
    should_abort: AbortCallback | None = None,
) -> TrainResult:
    """Fit a new network to the volume; deterministic for a given seed on the CPU."""
    value_range = validate_for_training(volume)
    set_threads(train_config.threads)
    device = resolve_device(train_config.device)
    torch.manual_seed(train_config.seed)
    model = build_model(model_config, volume.geometry).to(device)
    targets = normalized_values(volume, value_range).to(device)
    shape = volume.geometry.shape_zyx
    generator = torch.Generator(device=device).manual_seed(train_config.seed)

    optimizer = torch.optim.Adam(model.parameters(), lr=train_config.learning_rate)
    steps, limit = train_config.steps, train_config.time_limit
    report_every = max(1, steps // 200)

    start = time.perf_counter()
    loss_value = float("nan")
    step = 0
    fraction = 0.0
    while fraction < 1.0:
        if should_abort is not None and should_abort():
            raise TrainingAborted(f"training aborted at step {step} of {steps}")
        # Exponential decay from the initial rate to final_learning_rate_fraction of it, over steps or
        # over the time limit, whichever runs out first.
        for group in optimizer.param_groups:
            group["lr"] = train_config.learning_rate * train_config.final_learning_rate_fraction**fraction
        index = torch.randint(targets.numel(), (train_config.batch_size,), generator=generator, device=device)
        loss = torch.nn.functional.mse_loss(model(voxel_positions(index, shape)), targets[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        fraction = step / steps
        if limit > 0:
            fraction = max(fraction, (time.perf_counter() - start) / limit)
        if step % report_every == 0 or fraction >= 1.0:
            loss_value = float(loss.detach())
            if progress is not None:
                progress(min(fraction, 1.0), f"step {step}/{steps} loss {loss_value:.3g}")
    model.eval()
    return TrainResult(model, value_range, time.perf_counter() - start, loss_value, step)
