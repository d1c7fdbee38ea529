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
    decay = train_config.final_learning_rate_fraction ** (1.0 / max(train_config.steps - 1, 1))
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=decay)
    report_every = max(1, train_config.steps // 200)

    start = time.perf_counter()
    loss_value = float("nan")
    for step in range(train_config.steps):
        if should_abort is not None and should_abort():
            raise TrainingAborted(f"training aborted at step {step} of {train_config.steps}")
        index = torch.randint(targets.numel(), (train_config.batch_size,), generator=generator, device=device)
        loss = torch.nn.functional.mse_loss(model(voxel_positions(index, shape)), targets[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step % report_every == 0 or step == train_config.steps - 1:
            loss_value = float(loss.detach())
            if progress is not None:
                progress((step + 1) / train_config.steps, f"step {step + 1}/{train_config.steps} loss {loss_value:.3g}")
    model.eval()
    return TrainResult(model, value_range, time.perf_counter() - start, loss_value, train_config.steps)
