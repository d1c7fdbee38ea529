"""Networks with 3 outputs (a vector field's): shapes, parameter counts, the settings as stored (scalar networks'
unchanged) and what the settings refuse."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from srnvtk.config import FVSRNConfig, NeurcompConfig, from_json, stored_model_config
from srnvtk.datasets import default_geometry
from srnvtk.errors import SettingsError
from srnvtk.filechecks import tensor_specs
from srnvtk.models import build_model, parameter_count
from srnvtk.quantize import storage_tensors

GEOMETRY = default_geometry((12, 10, 8))
CONFIGS = [FVSRNConfig(grid_channels=4, grid_resolution=6, mlp_width=12, mlp_layers=2, fourier_features=2),
           NeurcompConfig(width=10, blocks=2)]


@pytest.mark.parametrize("config", CONFIGS, ids=["fvsrn", "neurcomp"])
@pytest.mark.parametrize("outputs", [1, 3])
def test_outputs_shape_the_network_and_its_count(config, outputs) -> None:
    config = dataclasses.replace(config, outputs=outputs)
    model = build_model(config, GEOMETRY)
    values = model(torch.rand(5, 3) * 2 - 1)
    assert values.shape == ((5,) if outputs == 1 else (5, 3))
    assert parameter_count(config, GEOMETRY) == sum(p.numel() for p in model.parameters())
    stored = storage_tensors(model)
    plan = tensor_specs(config, model.structure(), GEOMETRY)  # what a reader expects of the stored tensors
    assert {name: tuple(array.shape) for name, array in stored.arrays.items()} == {
        name: spec.shape for name, spec in plan.specs.items() if spec.shape != (None,)}


@pytest.mark.parametrize("config", CONFIGS, ids=["fvsrn", "neurcomp"])
def test_a_scalar_networks_settings_are_stored_as_before(config) -> None:
    assert "outputs" not in stored_model_config(config)
    vector = dataclasses.replace(config, outputs=3)
    stored = stored_model_config(vector)
    assert stored["outputs"] == 3 and from_json(type(config), json.dumps(stored)) == vector
    assert from_json(type(config), json.dumps(stored_model_config(config))) == config
    with pytest.raises(SettingsError, match="1 output .* or 3"):
        dataclasses.replace(config, outputs=2)
