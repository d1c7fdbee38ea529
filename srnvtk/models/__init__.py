"""Scene representation networks srnvtk can train and store."""

from __future__ import annotations

from ..config import FVSRNConfig
from ..volume import Geometry
from .fvsrn import FVSRN, aspect_of, grid_shape_for

ARCHITECTURES = ("fvsrn",)


def build_model(config: FVSRNConfig, geometry: Geometry) -> FVSRN:
    """A freshly initialised network sized for a volume with this geometry."""
    return FVSRN(config, grid_shape_for(config, geometry), aspect_of(geometry))


__all__ = ["ARCHITECTURES", "FVSRN", "build_model"]
