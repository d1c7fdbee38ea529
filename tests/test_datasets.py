"""The built-in procedural volume."""

from __future__ import annotations

import numpy as np
import pytest

from srnvtk.datasets import ARRAY_NAME, default_volume_values
from srnvtk.errors import SettingsError


def test_values_are_deterministic_uint8_zyx() -> None:
    values = default_volume_values((16, 14, 12), seed=3)
    assert values.dtype == np.uint8
    assert values.shape == (12, 14, 16)  # [z, y, x]
    assert np.array_equal(values, default_volume_values((16, 14, 12), seed=3))


def test_values_are_structured() -> None:
    values = default_volume_values((32, 32, 32))
    assert values.min() == 0 and values.max() == 255  # the full uint8 range
    assert np.unique(values).size > 100
    # The heavy fluid sits below the interface: the bottom slab is denser than the top one.
    assert values[:4].mean() > values[-4:].mean() + 50


def test_seed_changes_the_field() -> None:
    assert not np.array_equal(default_volume_values((16, 16, 16), 0), default_volume_values((16, 16, 16), 1))


@pytest.mark.parametrize("shape", [(0, 4, 4), (4, 4), (4, -1, 4), ("a", 4, 4)])
def test_bad_shapes_are_rejected(shape) -> None:
    with pytest.raises(SettingsError, match="shape"):
        default_volume_values(shape)


def test_default_volume_image(tiny_image) -> None:
    assert tiny_image.GetDimensions() == (16, 14, 12)
    assert tiny_image.GetOrigin() == (0.0, 0.0, 0.0)
    spacing = tiny_image.GetSpacing()
    assert spacing[0] == spacing[1] == spacing[2] == pytest.approx(1 / 15)  # longest axis spans [0, 1]
    scalars = tiny_image.GetPointData().GetScalars()
    assert scalars.GetName() == ARRAY_NAME
    assert scalars.GetDataTypeAsString() == "unsigned char"
    from vtkmodules.util.numpy_support import vtk_to_numpy

    assert np.array_equal(vtk_to_numpy(scalars).reshape(12, 14, 16), default_volume_values((16, 14, 12)))
