"""Warm start (train(initial_model=...)) and frozen parameters (train(frozen=...)): the default path is unchanged,
a warm start begins at the given weights and helps on the next time step, frozen parameters do not move."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from srnvtk.config import NeurcompConfig
from srnvtk.datasets import default_geometry
from srnvtk.errors import SettingsError
from srnvtk.series_data import generate_series
from srnvtk.train import train
from srnvtk.volume import Volume

SHAPE = (14, 12, 10)


@pytest.fixture(scope="module")
def volumes() -> list[Volume]:
    geometry = default_geometry(SHAPE)
    return [Volume(arrays["density"], geometry, "density") for _, arrays in generate_series(SHAPE, 2, seed=0)]


@pytest.fixture
def fast_train_config(fast_train_config):
    """Fewer voxels per step than the shared settings: these tests only compare starting points."""
    return dataclasses.replace(fast_train_config, batch_size=1024, steps=20)


def parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def first_loss(volume, config, train_config, **kwargs) -> float:
    losses: list[float] = []
    train(volume, config, train_config, progress=lambda _f, m: losses.append(float(m.split()[-1])), **kwargs)
    return losses[0]


def test_default_path_is_unchanged(volumes, tiny_model_config, fast_train_config) -> None:
    plain = train(volumes[0], tiny_model_config, fast_train_config)
    explicit = train(volumes[0], tiny_model_config, fast_train_config, initial_model=None, frozen=())
    for name, value in parameters(plain.model).items():
        assert torch.equal(value, parameters(explicit.model)[name]), name


def test_warm_start_begins_at_the_given_weights(volumes, tiny_model_config, fast_train_config) -> None:
    previous = train(volumes[0], tiny_model_config, fast_train_config).model
    before = parameters(previous)
    # One step at a negligible rate: the result is the starting point.
    config = dataclasses.replace(fast_train_config, steps=1, learning_rate=1e-9)
    warm = train(volumes[1], tiny_model_config, config, initial_model=previous).model
    cold = train(volumes[1], tiny_model_config, config).model
    for name, value in parameters(warm).items():
        assert torch.allclose(value, before[name], atol=1e-6), name
    assert not torch.allclose(parameters(cold)["grid"], before["grid"], atol=1e-3)
    assert warm is not previous
    for name, value in parameters(previous).items():  # the initial model is left as it was
        assert torch.equal(value, before[name]), name


def test_warm_start_helps_on_the_next_step(volumes, tiny_model_config, fast_train_config) -> None:
    config = dataclasses.replace(fast_train_config, steps=120)
    previous = train(volumes[0], tiny_model_config, config).model
    warm = first_loss(volumes[1], tiny_model_config, config, initial_model=previous)
    cold = first_loss(volumes[1], tiny_model_config, config)
    assert warm < 0.5 * cold


def test_frozen_parameters_keep_their_values(volumes, tiny_model_config, fast_train_config) -> None:
    previous = train(volumes[0], tiny_model_config, fast_train_config).model
    before = parameters(previous)
    for frozen in (("mlp.",), "mlp."):
        result = train(volumes[1], tiny_model_config, fast_train_config, initial_model=previous, frozen=frozen)
        after = parameters(result.model)
        assert all(torch.equal(after[name], before[name]) for name in after if name.startswith("mlp."))
        assert not torch.allclose(after["grid"], before["grid"])
    one_line = "no parameter to freeze starts with 'decoder.'"
    with pytest.raises(SettingsError, match=one_line):
        train(volumes[1], tiny_model_config, fast_train_config, frozen=("decoder.",))


def test_initial_model_must_match(volumes, tiny_model_config, fast_train_config) -> None:
    previous = train(volumes[0], tiny_model_config, fast_train_config).model
    wider = dataclasses.replace(tiny_model_config, mlp_width=8)
    with pytest.raises(SettingsError, match=r"other settings than the ones to train: mlp_width 16 \(not 8\)"):
        train(volumes[1], wider, fast_train_config, initial_model=previous)
    neurcomp = NeurcompConfig(width=8, blocks=1)
    with pytest.raises(SettingsError, match="initial model is a FVSRN, the settings give a Neurcomp"):
        train(volumes[1], neurcomp, fast_train_config, initial_model=previous)
    # Same settings, but a volume of another shape gets another latent grid shape.
    other = Volume(volumes[1].values[:, :, :7].copy(), default_geometry((7, 12, 10)), "density")
    with pytest.raises(SettingsError, match="shapes do not fit this volume"):
        train(other, tiny_model_config, fast_train_config, initial_model=previous)


def test_a_pruned_initial_model_starts_unpruned(volumes, tiny_model_config, fast_train_config) -> None:
    config = tiny_model_config
    previous = train(volumes[0], config, fast_train_config).model
    pruned = copy.deepcopy(previous)
    keep = torch.zeros((1, *pruned.grid.shape[1:]), dtype=torch.bool)
    keep[..., :2] = True
    pruned.set_grid_keep(keep)
    result = train(volumes[1], config, fast_train_config, initial_model=pruned)
    assert result.model.grid_keep is None
    assert result.model.grid.detach()[..., 2:].abs().sum() > 0  # the zeroed entries train again


def test_a_clustered_neurcomp_starts_the_next_step_from_its_shared_values(volumes, fast_train_config) -> None:
    """k-means shared weights (Neurcomp weight_clusters): the next step starts from the expanded values (and
    clusters its own again at the end of its training), computing what the clustered network computes."""
    config = NeurcompConfig(width=10, blocks=1, weight_clusters=8)
    first = train(volumes[0], config, dataclasses.replace(fast_train_config, learning_rate=None)).model
    assert first.clustered_layers()  # the trained network holds shared values
    second = train(volumes[1], config, dataclasses.replace(fast_train_config, learning_rate=1e-12, steps=1),
                   initial_model=first).model  # a rate too small to move anything
    positions = torch.rand(64, 3) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(second(positions), first(positions), atol=1e-4)
