"""fV-SRN: a trainable latent feature grid read trilinearly, followed by a small MLP."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import FVSRNConfig
from ..masks import UnitMask
from ..native.trilinear import trilinear_features
from ..quantize import fake_quantize
from ..volume import Geometry
from .layers import FourierFeatures, aspect_of, mlp, physical_lengths

__all__ = ["FVSRN", "aspect_of", "grid_shape_for", "physical_lengths"]


def grid_shape_for(config: FVSRNConfig, geometry: Geometry) -> tuple[int, int, int]:
    """Latent grid (z, y, x) sizes: the longest physical axis gets grid_resolution, others in proportion."""
    if config.grid_shape is not None:
        return config.grid_shape
    lengths = physical_lengths(geometry)
    longest = max(lengths)
    shape_xyz = [max(2, round(config.grid_resolution * length / longest)) for length in lengths]
    return (shape_xyz[2], shape_xyz[1], shape_xyz[0])


class FVSRN(nn.Module):
    """Maps positions in [-1, 1]^3 (x, y, z order) to a normalised value. Implements
    srnvtk.models.protocol.SRNModel.

    Pruning: a mask on the latent grid (one unit per grid position, or per position and channel) while
    training; baking multiplies the mask into the grid and keeps `grid_keep`, the surviving entries.
    Pruned entries are exactly zero and get no gradient afterwards, so the forward pass needs no mask.

    The trainable tensor that masks prune and the file stores as uint8 codes is `latent` (named
    `latent_name` in the state dict): here the grid itself; `WaveletFVSRN` trains its wavelet coefficients.
    """

    architecture = "fvsrn"
    latent_name = "grid"
    shares_weights = False  # every weight is stored as fp16 (srnvtk.quantize)

    def __init__(self, config: FVSRNConfig, grid_shape: tuple[int, int, int], aspect: torch.Tensor) -> None:
        super().__init__()
        self.config = config
        generator = torch.Generator().manual_seed(0)
        self._init_latent((torch.rand((config.grid_channels, *grid_shape), generator=generator) * 2 - 1) * 0.01)
        self.fourier = FourierFeatures(config.fourier_features, aspect)
        in_features = 3 + self.fourier.out_features + config.grid_channels
        self.mlp = mlp(in_features, config.mlp_width, config.mlp_layers, config.outputs)
        self.grid_mask: UnitMask | None = None
        # bool, broadcastable to the latent tensor; None: nothing pruned. A buffer, so .to() moves it, but not
        # stored with the parameters: the file keeps it as a packed bit mask.
        self.register_buffer("grid_keep", None, persistent=False)
        # Set by bake_masks(rank_only=True): the baked masks' unit importance, for rate control to choose the
        # surviving units by (srnvtk.budget); None otherwise.
        self.unit_importance: torch.Tensor | None = None
        self._quantization_aware = False  # see quantization_aware()

    def _init_latent(self, grid: torch.Tensor) -> None:
        """Make the trainable latent tensor from the initial (C, z, y, x) grid."""
        self.grid = nn.Parameter(grid)

    @property
    def latent(self) -> nn.Parameter:
        """The trainable tensor that the masks prune and the file stores as codes (`latent_name`)."""
        return self.grid

    def latent_grid(self) -> torch.Tensor:
        """The (C, z, y, x) grid the lookup reads, the mask applied while one is attached (rounded to its codes
        while quantisation-aware)."""
        return self.as_stored(self.grid if self.grid_mask is None else self.grid_mask(self.grid))

    def quantization_aware(self, on: bool) -> None:
        """While on, and the codes have fewer than 8 bits (config.grid_bits), the forward pass reads the latent
        tensor as its stored codes will give it back, with straight-through gradients (srnvtk.quantize), so
        training adapts the network to the rounding. At 8 bits the rounding costs ~0.01 dB: not worth a step."""
        self._quantization_aware = on and self.config.grid_bits < 8

    def as_stored(self, latent: torch.Tensor) -> torch.Tensor:
        """The latent tensor as the forward pass should read it: rounded to its codes while quantisation-aware."""
        if not self._quantization_aware:
            return latent
        return fake_quantize(latent, self.config.grid_bits, self.grid_keep, self.quantization_groups())

    def quantization_groups(self) -> list[list[tuple[slice, slice, slice]]] | None:
        """Groups of (z, y, x) regions of the latent tensor with their own uint8 scale and offset per channel;
        None: one per channel for the whole grid (see srnvtk.quantize)."""
        return None

    def grid_features(self, positions: torch.Tensor) -> torch.Tensor:
        """Trilinear lookup of every channel at each position: (N, 3) -> (N, C). On the CPU a C kernel does it
        where one can be built (srnvtk.native.trilinear: the same values, several times faster to train)."""
        grid = self.latent_grid()
        fused = trilinear_features(grid, positions)
        if fused is not None:
            return fused
        sample_at = positions.view(1, -1, 1, 1, 3)
        feats = F.grid_sample(grid.unsqueeze(0), sample_at, mode="bilinear", padding_mode="border", align_corners=True)
        return feats.view(grid.shape[0], -1).t()

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        # The first layer reads [positions, Fourier features, grid features]; it is applied in two parts so that
        # backpropagation computes the gradient of the grid features only, not of inputs that have none (a
        # third of a CPU training step's matrix products went there). Same function as mlp(cat(...)).
        first, rest = self.mlp[0], self.mlp[1:]
        channels = self.config.grid_channels
        fixed = torch.cat([positions, self.fourier(positions)], dim=1)
        hidden = F.linear(fixed, first.weight[:, :-channels]) + F.linear(
            self.grid_features(positions), first.weight[:, -channels:], first.bias)
        return rest(hidden).squeeze(1)  # (N,) for a scalar, (N, 3) for a vector

    @torch.no_grad()
    def resize_latent(self, config: FVSRNConfig, grid_shape: tuple[int, int, int]) -> None:
        """Resample the latent grid to a new (z, y, x) shape, trilinearly with the corners aligned as the lookup
        is, so the function hardly changes; config (with the matching resolution) replaces the model's. For
        rate control's growth step (srnvtk.budget); a pruned model cannot be resized."""
        if self.grid_keep is not None or self.grid_mask is not None:
            raise ValueError("a pruned or masked latent grid cannot be resized")
        grid = self.latent_grid().detach()
        resized = F.interpolate(grid.unsqueeze(0), size=tuple(grid_shape), mode="trilinear", align_corners=True)[0]
        self.config = config
        self._init_latent(resized.cpu().contiguous())  # a wavelet model's new transform starts on the CPU
        self.to(grid.device)

    def share_weights(self) -> None:
        """Nothing to share (see shares_weights)."""

    # -- pruning (see srnvtk.pruning) -----------------------------------------------------------------
    def structure(self) -> dict:
        """The shapes a reader needs beside the settings: the latent grid's (z, y, x) and the keep mask's."""
        keep = None if self.grid_keep is None else list(self.grid_keep.shape)
        return {"grid_shape": list(self.latent.shape[1:]), "keep_shape": keep}

    def mask_shapes(self, granularity: str) -> list[tuple[int, ...]]:
        channels, *zyx = self.latent.shape
        return [(1, *zyx) if granularity == "position" else (channels, *zyx)]

    def attach_masks(self, masks: list[UnitMask]) -> None:
        (self.grid_mask,) = masks

    def masks(self) -> list[UnitMask]:
        return [] if self.grid_mask is None else [self.grid_mask]

    def masked_values(self) -> list[torch.Tensor]:
        """What the masks' factors multiply (Smallify's L2 keeps these from growing to compensate)."""
        return [self.latent]

    @torch.no_grad()
    def bake_masks(self, rank_only: bool = False) -> None:
        """Multiply the latent tensor by the masks' final factors (zero where pruned); drop the masks.

        rank_only: fold in the factors before any threshold and prune nothing; keep the units' importance in
        `unit_importance` so that rate control decides which survive (srnvtk.budget).
        """
        if self.grid_mask is None:
            return
        mask, self.grid_mask = self.grid_mask, None
        if rank_only:
            self.latent.mul_(mask.soft_scale().detach())
            self.unit_importance = mask.importance()
            return
        self.latent.mul_(mask.scale().detach())
        self.set_grid_keep(mask.keep())

    def set_grid_keep(self, keep: torch.Tensor) -> None:
        """Mark the surviving latent entries; the others stay zero (their gradient is masked)."""
        latent = self.latent
        if keep.dim() != 4 or keep.shape[1:] != latent.shape[1:] or keep.shape[0] not in (1, latent.shape[0]):
            raise ValueError(f"keep mask of shape {tuple(keep.shape)} does not fit the {self.latent_name} "
                             f"{tuple(latent.shape)}")
        with torch.no_grad():
            latent.mul_(keep.to(latent.device))
        first = self.grid_keep is None
        self.grid_keep = keep.to(device=latent.device, dtype=torch.bool)
        if first:
            latent.register_hook(lambda grad: grad * self.grid_keep)

    def entry_counts(self) -> dict[str, tuple[int, int]]:
        """Per parameter: (entries kept, entries of the unpruned model)."""
        parameters = self.named_parameters()
        counts = {name: (p.numel(), p.numel()) for name, p in parameters if not name.startswith("grid_mask")}
        if self.grid_keep is not None:
            per_unit = self.latent.shape[0] // self.grid_keep.shape[0]
            counts[self.latent_name] = (int(self.grid_keep.sum()) * per_unit, self.latent.numel())
        return counts
