"""Scene representation networks srnvtk can train and store: fV-SRN (plain or wavelet grid) and Neurcomp.

All map positions in [-1, 1]^3 (N, 3) to normalised values (N,) and implement the same interface,
srnvtk.models.protocol.SRNModel, which training, pruning, storage, rate control and decoding use.
"""

from __future__ import annotations

import math

from ..config import (
    ARCHITECTURES,
    DEFAULT_LEARNING_RATES,
    NEURCOMP_REFERENCE_WIDTH,
    FVSRNConfig,
    ModelConfig,
    NeurcompConfig,
)
from ..errors import SettingsError
from ..volume import Geometry
from .fvsrn import FVSRN, aspect_of, grid_shape_for
from .neurcomp import Neurcomp, full_widths, parameter_shapes
from .protocol import SRNModel
from .wavelet_fvsrn import WaveletFVSRN


def _fvsrn(config: FVSRNConfig, grid_shape: tuple[int, int, int], geometry: Geometry) -> FVSRN:
    """A plain fV-SRN, or one whose grid is parameterised by wavelet coefficients when config.wavelet is set."""
    cls = FVSRN if config.wavelet is None else WaveletFVSRN
    return cls(config, grid_shape, aspect_of(geometry))


def build_model(config: ModelConfig, geometry: Geometry) -> SRNModel:
    """A freshly initialised network sized for a volume with this geometry."""
    if isinstance(config, FVSRNConfig):
        return _fvsrn(config, grid_shape_for(config, geometry), geometry)
    if isinstance(config, NeurcompConfig):
        return Neurcomp(config, aspect_of(geometry))
    raise SettingsError(f"unknown model settings {type(config).__name__}; architectures: {', '.join(ARCHITECTURES)}")


def model_from_structure(config: ModelConfig, geometry: Geometry, structure: dict) -> SRNModel:
    """An (untrained) network with the stored shapes: fV-SRN's grid shape (and wavelet levels), Neurcomp's
    pruned widths.

    ValueError, KeyError or TypeError when the structure does not fit the settings.
    """
    if isinstance(config, FVSRNConfig):
        grid_shape = tuple(int(s) for s in structure["grid_shape"])
        if len(grid_shape) != 3 or min(grid_shape) < 1:
            raise ValueError(f"grid shape {grid_shape} is not three positive sizes")
        model = _fvsrn(config, grid_shape, geometry)
        if isinstance(model, WaveletFVSRN):
            stored = tuple(int(n) for n in structure["wavelet_levels"])
            if stored != model.transform.levels:
                raise ValueError(f"wavelet levels {stored} were stored, the settings give {model.transform.levels}")
        return model
    if isinstance(config, NeurcompConfig):
        model = Neurcomp(config, aspect_of(geometry), structure["widths"])
        clustered = [int(k) for k in structure.get("clustered_layers", [])]
        if clustered and (config.weight_clusters == 0 or not set(clustered) <= set(range(1, len(model.layers)))):
            raise ValueError(f"clustered layers {clustered} do not fit the settings")
        model.use_clustered_layers(clustered, config.weight_clusters)
        return model
    raise SettingsError(f"unknown model settings {type(config).__name__}")


def parameter_count(config: ModelConfig, geometry: Geometry) -> int:
    """Trainable values of a freshly built model for this geometry, computed without building it."""
    if isinstance(config, NeurcompConfig):
        return sum(math.prod(shape) for shape in parameter_shapes(config, full_widths(config)).values())
    in_features = 3 + 6 * config.fourier_features + config.grid_channels
    w = config.mlp_width
    mlp = in_features * w + w + (config.mlp_layers - 1) * (w * w + w) + config.outputs * (w + 1)
    return config.grid_channels * math.prod(grid_shape_for(config, geometry)) + mlp


def default_learning_rate(config: ModelConfig) -> float:
    """Adam's initial rate when none is given: per architecture; for Neurcomp lower when plain (not residual)
    and in inverse proportion to widths above NEURCOMP_REFERENCE_WIDTH."""
    if not isinstance(config, NeurcompConfig):
        return DEFAULT_LEARNING_RATES[config.architecture]
    rate = DEFAULT_LEARNING_RATES["neurcomp" if config.residual else "neurcomp-plain"]
    return rate * NEURCOMP_REFERENCE_WIDTH / max(config.width, NEURCOMP_REFERENCE_WIDTH)


__all__ = [
    "ARCHITECTURES", "DEFAULT_LEARNING_RATES", "FVSRN", "Neurcomp", "WaveletFVSRN", "build_model",
    "SRNModel", "default_learning_rate", "model_from_structure", "parameter_count",
]
