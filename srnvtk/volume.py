"""A scalar volume on a uniform grid: the unit of data srnvtk compresses.

Values are stored as a numpy array indexed [z, y, x] (VTK's point order), with the
geometry needed to rebuild a vtkImageData: extent, origin and spacing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError

SUPPORTED_DTYPES = (
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64",
)


@dataclass(frozen=True)
class Geometry:
    """Where the grid's points sit: extent (i0, i1, j0, j1, k0, k1), origin, spacing."""

    extent: tuple[int, int, int, int, int, int]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @property
    def dimensions(self) -> tuple[int, int, int]:
        """Point counts along x, y, z."""
        e = self.extent
        return (e[1] - e[0] + 1, e[3] - e[2] + 1, e[5] - e[4] + 1)

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        nx, ny, nz = self.dimensions
        return (nz, ny, nx)

    @property
    def num_points(self) -> int:
        nx, ny, nz = self.dimensions
        return nx * ny * nz

    def bounds(self) -> tuple[tuple[float, float], ...]:
        """World-space (min, max) per axis x, y, z."""
        e = self.extent
        return tuple(
            (self.origin[a] + e[2 * a] * self.spacing[a], self.origin[a] + e[2 * a + 1] * self.spacing[a])
            for a in range(3)
        )


@dataclass(frozen=True)
class Volume:
    """One point-data array of an image, as values[z, y, x] plus its geometry."""

    values: np.ndarray
    geometry: Geometry
    name: str = "scalars"

    def __post_init__(self) -> None:
        vector = self.values.ndim == 4 and self.values.shape[3] == 3  # (z, y, x, 3): a vector field's components
        if self.values.shape[:3] != self.geometry.shape_zyx or not (self.values.ndim == 3 or vector):
            raise InputError(
                f"array '{self.name}' has shape {self.values.shape}, expected (z, y, x) = "
                f"{self.geometry.shape_zyx} from the extent {self.geometry.extent}"
            )

    @property
    def components(self) -> int:
        return 1 if self.values.ndim == 3 else self.values.shape[3]

    @property
    def dtype(self) -> str:
        return str(self.values.dtype)


def validate_for_training(volume: Volume, value_range: tuple[float, float] | None = None) -> tuple[float, float]:
    """Check that the volume can be learned; return its (min, max) value range, or the given one: a part of a
    larger array (a brick, a time step) is normalised by the whole array's range, and may then be constant."""
    dims = volume.geometry.dimensions
    if volume.values.size == 0:
        raise InputError(f"array '{volume.name}' is empty")
    if min(dims) < 2:
        raise InputError(
            f"array '{volume.name}' lives on a {dims[0]}x{dims[1]}x{dims[2]} grid; srnvtk compresses 3D "
            "volumes with at least 2 points along every axis (this looks like a 2D image or a line)"
        )
    if volume.dtype not in SUPPORTED_DTYPES:
        raise InputError(
            f"array '{volume.name}' has type {volume.dtype}; supported types: {', '.join(SUPPORTED_DTYPES)}"
        )
    finite = np.isfinite(volume.values)
    if not finite.all():
        bad = int(volume.values.size - np.count_nonzero(finite))
        raise InputError(f"array '{volume.name}' holds {bad} NaN or infinite values; clean them first")
    if value_range is not None:
        vmin, vmax = (float(v) for v in value_range)
        if not (np.isfinite(vmin) and np.isfinite(vmax) and vmax > vmin):
            raise InputError(f"the value range {value_range} given for '{volume.name}' is empty or not finite")
        return vmin, vmax
    vmin, vmax = float(volume.values.min()), float(volume.values.max())
    if vmax <= vmin:
        raise InputError(
            f"array '{volume.name}' is constant ({vmin:g}); there is nothing to learn, store the value instead"
        )
    return vmin, vmax
