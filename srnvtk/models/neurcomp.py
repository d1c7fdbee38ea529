"""Neurcomp (Lu et al. 2021): a SIREN of sine layers, residual or plain, mapping a position to a value.

Layers, counted from 0: layer 0 is the sine layer 3 -> width; block b (from 0) holds layers 2b+1 (inner) and
2b+2 (outer); a linear head maps the last layer to one value. A residual block computes
    y = s_out * (x + sin(w0 * L2(sin(w0 * L1(s_in * x)))))
with s_in = 0.5 except for the first block and s_out = 0.5 only for the last (the published code's
scalings); a plain block is the same two sine layers without the skip and the scalings.

Pruning masks neurons. In a residual network every block's outer layer adds to the same stream, so only
the inner layers can be pruned; in a plain network every sine layer can. Baking removes pruned neurons:
their rows leave the layer that makes them and their columns the layer that reads them, which also takes
the kept neurons' factors. `widths` (one per sine layer) describes the shrunk network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..config import NeurcompConfig
from ..kmeans import ClusteredLinear
from ..masks import UnitMask


class SineLayer(nn.Module):
    """sin(omega_0 * (W x + b)) with SIREN's initialisation."""

    def __init__(self, in_features: int, out_features: int, omega_0: float, first: bool) -> None:
        super().__init__()
        self.omega_0 = omega_0
        self.linear = _linear(torch.empty(out_features, in_features), torch.empty(out_features))
        bound = 1.0 / in_features if first else math.sqrt(6.0 / max(in_features, 1)) / omega_0
        bias_bound = 1.0 / math.sqrt(in_features) if in_features else 0.0  # nn.Linear's default
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound)
            self.linear.bias.uniform_(-bias_bound, bias_bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.omega_0 * self.linear(x))


def full_widths(config: NeurcompConfig) -> list[int]:
    """The width of every sine layer before pruning."""
    return [config.width] * (1 + 2 * config.blocks)


def hidden_layers(config: NeurcompConfig) -> list[int]:
    """Indices of the sine layers with width x width matrices: the ones weight clustering shares."""
    return list(range(1, 1 + 2 * config.blocks))


def prunable_layers(config: NeurcompConfig) -> list[int]:
    """Indices of the sine layers whose neurons can be pruned (see the module docstring)."""
    layers = range(1 + 2 * config.blocks)
    return [k for k in layers if k % 2 == 1] if config.residual else list(layers)


def parameter_shapes(config: NeurcompConfig, widths: Sequence[int]) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every parameter of a network with these sine-layer widths."""
    shapes: dict[str, tuple[int, ...]] = {}
    previous = 3
    for k, width in enumerate(widths):
        shapes[f"layers.{k}.linear.weight"] = (width, previous)
        shapes[f"layers.{k}.linear.bias"] = (width,)
        previous = width
    shapes["output.weight"] = (config.outputs, previous)
    shapes["output.bias"] = (config.outputs,)
    return shapes


def check_widths(config: NeurcompConfig, widths: Sequence[int]) -> list[int]:
    """Validated widths; ValueError when they cannot belong to a (pruned) network of this config."""
    widths = [int(w) for w in widths]
    if len(widths) != 1 + 2 * config.blocks:
        raise ValueError(f"{len(widths)} layer widths for {config.blocks} blocks (expected {1 + 2 * config.blocks})")
    prunable = set(prunable_layers(config))
    for k, width in enumerate(widths):
        if k in prunable and not 0 <= width <= config.width:
            raise ValueError(f"layer {k} has width {width}, outside [0, {config.width}]")
        if k not in prunable and width != config.width:
            raise ValueError(f"layer {k} carries the residual stream and must have width {config.width}, not {width}")
    return widths


class Neurcomp(nn.Module):
    """Maps positions in [-1, 1]^3 (x, y, z order; scaled by the aspect ratio) to a normalised value.

    Implements srnvtk.models.protocol.SRNModel. It has no latent tensor: its file size does not depend on its
    weights' values, so rate control sizes its width before training instead of trimming entries after it.
    """

    architecture = "neurcomp"
    latent_name = None
    latent = None
    grid_keep = None
    unit_importance = None

    def __init__(self, config: NeurcompConfig, aspect: torch.Tensor, widths: Sequence[int] | None = None) -> None:
        super().__init__()
        self.config = config
        self.widths = check_widths(config, full_widths(config) if widths is None else widths)
        self.register_buffer("aspect", aspect.to(torch.float32), persistent=False)
        inputs = [3, *self.widths[:-1]]
        self.layers = nn.ModuleList(
            SineLayer(n_in, n_out, config.omega_0, first=k == 0)
            for k, (n_in, n_out) in enumerate(zip(inputs, self.widths, strict=True))
        )
        last = self.widths[-1]
        self.output = _linear(torch.empty(config.outputs, last), torch.empty(config.outputs))
        bound = math.sqrt(6.0 / max(last, 1)) / 30.0
        with torch.no_grad():
            self.output.weight.uniform_(-bound, bound)
            self.output.bias.uniform_(-1.0 / math.sqrt(max(last, 1)), 1.0 / math.sqrt(max(last, 1)))
        self.unit_masks = nn.ModuleList(nn.Identity() for _ in self.widths)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        masks, layers = self.unit_masks, self.layers
        stream = masks[0](layers[0](positions * self.aspect))
        last = self.config.blocks - 1
        for b in range(self.config.blocks):
            inner, outer = 2 * b + 1, 2 * b + 2
            if self.config.residual:
                x = stream if b == 0 else 0.5 * stream
                y = layers[outer](masks[inner](layers[inner](x)))
                stream = stream + y if b < last else 0.5 * (stream + y)
            else:
                stream = masks[outer](layers[outer](masks[inner](layers[inner](stream))))
        return self.output(stream).squeeze(1)

    # -- weight clustering (see srnvtk.kmeans) ---------------------------------------------------------
    @property
    def shares_weights(self) -> bool:
        """Whether training ends by clustering the hidden matrices (and fine-tuning their shared values)."""
        return self.config.weight_clusters > 0

    def clustered_layers(self) -> list[int]:
        return [k for k, layer in enumerate(self.layers) if isinstance(layer.linear, ClusteredLinear)]

    @torch.no_grad()
    def share_weights(self) -> None:
        """Replace every hidden matrix by config.weight_clusters shared values (k-means); no-op when not asked
        for or done already. Masks must be baked first."""
        if not self.shares_weights or self.clustered_layers():
            return
        for k in hidden_layers(self.config):
            self.layers[k].linear = ClusteredLinear.from_linear(self.layers[k].linear, self.config.weight_clusters)

    def use_clustered_layers(self, layers: Sequence[int], clusters: int) -> None:
        """Empty clustered layers (for loading a stored state) at these sine-layer indices."""
        for k in layers:
            linear = self.layers[k].linear
            self.layers[k].linear = ClusteredLinear.empty(linear.out_features, linear.in_features, clusters)

    # -- pruning (see srnvtk.pruning) -----------------------------------------------------------------
    def structure(self) -> dict:
        """What a reader needs beside the settings: every sine layer's (pruned) width, and which sine layers
        hold clustered matrices."""
        return {"widths": list(self.widths), "clustered_layers": self.clustered_layers()}

    def mask_shapes(self, granularity: str) -> list[tuple[int, ...]]:
        return [(self.widths[k],) for k in prunable_layers(self.config)]

    def attach_masks(self, masks: list[UnitMask]) -> None:
        for k, mask in zip(prunable_layers(self.config), masks, strict=True):
            self.unit_masks[k] = mask

    def masks(self) -> list[UnitMask]:
        return [m for m in self.unit_masks if isinstance(m, UnitMask)]

    def masked_values(self) -> list[torch.Tensor]:
        """The weights that read masked neurons (Smallify's L2 keeps these from growing to compensate)."""
        return [self._reader(k).weight for k, m in enumerate(self.unit_masks) if isinstance(m, UnitMask)]

    def _reader(self, k: int) -> nn.Linear:
        return self.layers[k + 1].linear if k + 1 < len(self.layers) else self.output

    def quantization_groups(self) -> None:
        return None  # no latent tensor

    def quantization_aware(self, on: bool) -> None:
        """Nothing to round: no latent tensor (clustered weights are trained as stored, srnvtk.kmeans)."""

    def set_grid_keep(self, keep: torch.Tensor) -> None:
        raise ValueError("Neurcomp has no latent grid to keep entries of")

    def resize_latent(self, config: NeurcompConfig, grid_shape: tuple[int, int, int]) -> None:
        raise ValueError("Neurcomp has no latent grid to resize")

    @torch.no_grad()
    def bake_masks(self, rank_only: bool = False) -> None:
        """Remove pruned neurons; fold the kept neurons' factors into the weights that read them."""
        if rank_only:
            raise ValueError("Neurcomp's neurons are pruned by their masks' threshold; rate control sizes its width")
        for k, mask in enumerate(self.unit_masks):
            if not isinstance(mask, UnitMask):
                continue
            keep, scale = mask.keep(), mask.scale().detach()
            maker = self.layers[k].linear
            self.layers[k].linear = _linear(maker.weight[keep], maker.bias[keep])
            reader = self._reader(k)
            shrunk = _linear(reader.weight[:, keep] * scale[keep], reader.bias)
            if k + 1 < len(self.layers):
                self.layers[k + 1].linear = shrunk
            else:
                self.output = shrunk
            self.widths[k] = int(keep.sum())
            self.unit_masks[k] = nn.Identity()

    def entry_counts(self) -> dict[str, tuple[int, int]]:
        """Per parameter: (entries kept, entries of the unpruned network)."""
        full = parameter_shapes(self.config, full_widths(self.config))
        counts = {name: (p.numel(), math.prod(full[name])) for name, p in self.named_parameters() if name in full}
        for k in self.clustered_layers():  # a clustered matrix keeps one index per weight
            name = f"layers.{k}.linear.weight"
            counts[name] = (self.layers[k].linear.indices.numel(), math.prod(full[name]))
        return counts


def _linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    """An nn.Linear holding copies of these tensors (any size, zero included: no initialisation runs)."""
    layer = nn.Linear(1, 1, device="meta")
    layer.in_features, layer.out_features = weight.shape[1], weight.shape[0]
    layer.weight = nn.Parameter(weight.detach().clone())
    layer.bias = nn.Parameter(bias.detach().clone())
    return layer
