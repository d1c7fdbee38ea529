"""srnvtk.importance: error-driven batches reach every point, follow the error, and keep the loss unbiased; the
trainer uses them where TrainConfig.sampling says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from srnvtk import importance
from srnvtk.config import FVSRNConfig, PruningConfig, TrainConfig
from srnvtk.datasets import default_geometry, default_volume_values
from srnvtk.importance import ErrorSampler
from srnvtk.train import ERROR_SAMPLING_UNTIL, train
from srnvtk.volume import Volume

CPU = torch.device("cpu")


def sampler(shape: tuple[int, int, int], seed: int = 0) -> ErrorSampler:
    return ErrorSampler(shape, CPU, torch.Generator().manual_seed(seed))


def test_before_any_error_is_known_every_point_counts_alike() -> None:
    shape = (5, 7, 19)  # blocks cut short at the far end of every axis
    draws_count = 2_000_000  # ~3,000 per point: a 0.9-1.1 band is more than 5 standard deviations wide
    draws, weights = sampler(shape).sample(draws_count)
    counts = torch.bincount(draws, minlength=int(np.prod(shape)))
    assert counts.numel() == np.prod(shape) and counts.min() > 0  # every point, and none beyond the lattice
    # Drawn as often as uniform sampling would, up to the drawing table's rounding, which the weights undo.
    expected = draws_count / np.prod(shape)
    assert counts.min() > 0.9 * expected and counts.max() < 1.1 * expected
    weighted = torch.bincount(draws, weights=weights.double(), minlength=int(np.prod(shape)))
    assert weighted.min() > 0.9 * expected and weighted.max() < 1.1 * expected
    assert float(weighted.sum()) == pytest.approx(draws_count, rel=0.01)


def squared_error_field(shape: tuple[int, int, int]) -> torch.Tensor:
    """1 in the first 8^3 block, 0.01 elsewhere (flat [z, y, x])."""
    field = torch.full(shape, 0.01)
    field[:8, :8, :8] = 1.0
    return field.flatten()


def test_batches_follow_the_error_and_the_weighted_loss_stays_the_volumes_mse() -> None:
    shape = (16, 16, 16)  # 8 blocks
    field = squared_error_field(shape)
    draws = sampler(shape)
    in_hot_block, estimates = [], []
    for _ in range(20 * importance.REFRESH_STEPS):
        index, weights = draws.sample(4096)
        errors = field[index]
        draws.record(errors)
        estimates.append(float((errors * weights).mean()))
        hot = (index // 256 < 8) & ((index // 16) % 16 < 8) & (index % 16 < 8)
        in_hot_block.append(float(hot.float().mean()))
    # RMS 1 against 7 x 0.1: 0.3 / 8 + 0.7 * 1 / 1.7 = 0.449 of the samples, against 1/8 drawn uniformly
    assert np.mean(in_hot_block[-importance.REFRESH_STEPS:]) == pytest.approx(0.449, abs=0.02)
    assert np.mean(estimates) == pytest.approx(float(field.mean()), rel=0.02)


def test_record_needs_a_batch_first() -> None:
    with pytest.raises(RuntimeError, match="follows sample"):
        sampler((8, 8, 8)).record(torch.zeros(3))


class Spy:
    """Counts the batches ErrorSampler draws."""

    def __init__(self, monkeypatch) -> None:
        self.batches = 0
        real = ErrorSampler.sample

        def sample(this, batch):
            self.batches += 1
            return real(this, batch)

        monkeypatch.setattr(ErrorSampler, "sample", sample)


SHAPE = (12, 10, 8)
MODEL = FVSRNConfig(grid_resolution=4, mlp_width=8, mlp_layers=1)


def scalar_volume() -> Volume:
    return Volume(default_volume_values(SHAPE), default_geometry(SHAPE), "density")


@pytest.mark.parametrize(("sampling", "batches"), [("auto", 6), ("error", 6), ("uniform", 0)])
def test_the_trainer_draws_by_error_where_the_setting_says(monkeypatch, sampling, batches) -> None:
    spy = Spy(monkeypatch)
    train(scalar_volume(), MODEL, TrainConfig(steps=6, batch_size=64, device="cpu", sampling=sampling))
    assert spy.batches == batches


def error_driven_steps(steps: int, first: int = 0) -> int:
    """Steps from `first` on that draw by error: those before ERROR_SAMPLING_UNTIL of a step budget."""
    return sum(1 for step in range(first, steps) if step / steps < ERROR_SAMPLING_UNTIL)


def test_the_last_part_of_training_draws_uniform_batches(monkeypatch) -> None:
    spy = Spy(monkeypatch)
    train(scalar_volume(), MODEL, TrainConfig(steps=40, batch_size=64, device="cpu", sampling="error"))
    assert spy.batches == error_driven_steps(40) == 34  # steps 34-39 (0.85 of 40 on) are uniform


def test_pruning_masks_train_on_uniform_batches_and_the_fine_tune_on_error_driven_ones(monkeypatch) -> None:
    spy = Spy(monkeypatch)
    pruning = PruningConfig(method="smallify", mask_phase_fraction=0.5)
    train(scalar_volume(), MODEL, TrainConfig(steps=10, batch_size=64, device="cpu"), pruning=pruning)
    assert spy.batches == error_driven_steps(10, first=5) == 4  # the fine-tune's steps 5-8


def test_a_vector_field_trains_on_its_components_mean_error() -> None:
    values = np.stack([default_volume_values(SHAPE, seed) for seed in range(3)], axis=-1)
    volume = Volume(values, default_geometry(SHAPE), "velocity")
    result = train(volume, FVSRNConfig(grid_resolution=4, mlp_width=8, mlp_layers=1, outputs=3),
                   TrainConfig(steps=20, batch_size=64, device="cpu", sampling="error"))
    assert np.isfinite(result.final_loss) and result.steps == 20
