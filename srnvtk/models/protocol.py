"""What training, pruning, storage, rate control and decoding call on a model: the `SRNModel` protocol.

Every architecture (srnvtk.models.FVSRN, WaveletFVSRN, Neurcomp) implements all of it with the same
signatures, so callers never probe a model for what it can do. Where an operation has no meaning for an
architecture the model says so through a property (`latent_name` is None: no latent tensor to trim or resize;
`shares_weights` is False: nothing to cluster) and the operation raises ValueError if called anyway.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from ..masks import UnitMask

# Regions of a latent tensor that share a uint8 scale and offset per channel (srnvtk.quantize).
QuantizationGroups = list[list[tuple[slice, slice, slice]]]


@runtime_checkable
class SRNModel(Protocol):
    architecture: str  # "fvsrn" or "neurcomp": the key of the settings class (srnvtk.config.MODEL_CONFIGS)
    config: Any  # the model's settings (FVSRNConfig or NeurcompConfig); rate control may replace them
    # The state-dict name of the trainable tensor stored as uint8 codes, pruned per entry and fitted to a byte
    # budget (an fV-SRN's grid or wavelet coefficients); None for an architecture without one (Neurcomp).
    latent_name: str | None

    def __call__(self, positions: torch.Tensor) -> torch.Tensor:
        """Positions (N, 3) in [-1, 1], x y z -> normalised values (N,)."""

    # -- what a file stores beside the settings -----------------------------------------------------------
    def structure(self) -> dict:
        """The shapes a reader needs beside the settings (grid shape, pruned widths, ...), JSON-ready."""

    def quantization_groups(self) -> QuantizationGroups | None:
        """The latent tensor's regions with their own uint8 scale and offset; None: one per channel."""

    def quantization_aware(self, on: bool) -> None:
        """Train on the latent tensor as its stored codes give it back (no-op without one, or at 8-bit codes)."""

    # -- pruning (srnvtk.pruning) --------------------------------------------------------------------------
    def mask_shapes(self, granularity: str) -> list[tuple[int, ...]]:
        """The shape of each mask pruning attaches (one unit per entry)."""

    def attach_masks(self, masks: list[UnitMask]) -> None: ...

    def masks(self) -> list[UnitMask]:
        """The attached masks (empty when none are)."""

    def masked_values(self) -> list[torch.Tensor]:
        """What the masks' factors multiply (Smallify's L2 keeps these from growing to compensate)."""

    def bake_masks(self, rank_only: bool = False) -> None:
        """Fold the masks into the model and drop them. rank_only (only where latent_name is set): prune
        nothing, keep the units' importance for rate control (srnvtk.budget) to choose the survivors."""

    def entry_counts(self) -> dict[str, tuple[int, int]]:
        """Per parameter: (entries kept, entries of the unpruned model)."""

    # -- weight sharing at the end of training (srnvtk.kmeans) --------------------------------------------
    @property
    def shares_weights(self) -> bool:
        """Whether training ends by replacing weights with shared values (then fine-tunes them)."""

    def share_weights(self) -> None:
        """Replace the weights by shared values (no-op when done already)."""

    # -- the latent tensor, where latent_name is set (rate control, srnvtk.budget) -----------------------
    @property
    def latent(self) -> torch.nn.Parameter | None: ...

    grid_keep: torch.Tensor | None  # the surviving latent entries; None: nothing pruned
    unit_importance: torch.Tensor | None  # set by bake_masks(rank_only=True)

    def set_grid_keep(self, keep: torch.Tensor) -> None: ...

    def resize_latent(self, config: Any, grid_shape: tuple[int, int, int]) -> None: ...
