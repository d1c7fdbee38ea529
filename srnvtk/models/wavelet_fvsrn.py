"""fV-SRN whose latent grid is parameterised by its 3D wavelet coefficients (the thesis's wavelet variant).

The coefficients are the trainable parameters. Every training forward pass applies the pruning mask to them,
runs the inverse DWT (srnvtk.wavelet) and samples the resulting grid. The transform is non-expansive (one
coefficient per grid value), so masks, the keep mask and storage treat the coefficients exactly as a plain
fV-SRN's treat its grid; only the uint8 codes get a scale and offset per level (srnvtk.quantize).

Without gradients (decoding, evaluation) the model reads `grid`: the inverse DWT of the coefficients, computed
once in float64, rounded to float32 and kept until the coefficients change (they are updated in place by the
optimiser, by baking and by loading a state dict, and each of those bumps the tensor's version). The lattice
decoder and point-wise evaluation therefore pay for the inverse DWT once per model, not per sample.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import SettingsError
from ..wavelet import WaveletTransform3D, level_groups
from .fvsrn import FVSRN


class WaveletFVSRN(FVSRN):
    """An fV-SRN (see `FVSRN`) whose latent grid is the inverse DWT of its `coefficients`.

    The coefficients start as the DWT of the plain model's initial grid, so both start from the same function.
    """

    latent_name = "coefficients"

    def _init_latent(self, grid: torch.Tensor) -> None:
        if self.config.wavelet is None:
            raise SettingsError("a wavelet grid needs a wavelet name (FVSRNConfig.wavelet)")
        self.transform = WaveletTransform3D(grid.shape[1:], self.config.wavelet, self.config.wavelet_levels)
        with torch.no_grad():
            self.coefficients = nn.Parameter(self.transform(grid.double()).float())
        self._grid_cache: tuple[tuple, torch.Tensor] | None = None

    @property
    def latent(self) -> nn.Parameter:
        return self.coefficients

    @property
    def grid(self) -> torch.Tensor:
        """The latent grid the coefficients describe (no gradient); recomputed only after they change."""
        coefficients = self.coefficients
        key = (coefficients.device, coefficients.dtype, coefficients.data_ptr(), coefficients._version)
        if self._grid_cache is None or self._grid_cache[0] != key:
            # Outside any inference mode: the cached grid may later be read where autograd is on.
            with torch.inference_mode(False), torch.no_grad():
                grid = self.transform.inverse(coefficients.detach().double()).to(coefficients.dtype)
            self._grid_cache = (key, grid)
        return self._grid_cache[1]

    def latent_grid(self) -> torch.Tensor:
        if self.grid_mask is None and not torch.is_grad_enabled():
            return self.grid
        coefficients = self.coefficients if self.grid_mask is None else self.grid_mask(self.coefficients)
        return self.transform.inverse(self.as_stored(coefficients))

    def quantization_groups(self) -> list[list[tuple[slice, slice, slice]]]:
        """The approximation, and each level's details: in smooth grids their magnitudes differ by orders.

        Not one group per subband: a trained latent grid's subbands hardly differ in magnitude, and float32
        scales and offsets for each of up to 7 * levels + 1 subbands and every channel cost kilobytes.
        """
        return [[band.slices for band in group] for group in level_groups(self.transform.subbands())]

    def structure(self) -> dict:
        """The plain model's shapes plus the per-axis levels (z, y, x) the automatic choice resolved to."""
        return {**super().structure(), "wavelet_levels": list(self.transform.levels)}

    def extra_repr(self) -> str:
        return f"wavelet={self.transform.wavelet!r}, levels={self.transform.levels}"
