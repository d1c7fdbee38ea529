"""Neurcomp in inference form: the same function as `Neurcomp.forward`, with less memory traffic per point.

Training needs the network's own parameterisation; decoding does not. Here omega_0, the aspect scaling of the
positions and the residual blocks' 0.5 scalings are folded into the weights once, clustered matrices are
expanded once, and every activation is computed in place in buffers reused from block to block:
one matrix product and one in-place sine per layer, one in-place add per residual block.
"""

from __future__ import annotations

import torch

from .models.neurcomp import Neurcomp


class FoldedNeurcomp:
    """Callable: positions (N, 3) in [-1, 1] -> normalised values (N,), like the model it was made from."""

    def __init__(self, model: Neurcomp) -> None:
        if model.masks():
            raise TypeError("pruning masks are still attached (not baked)")
        config = model.config
        omega = config.omega_0
        self.residual, self.blocks = config.residual, config.blocks
        # (weight transposed, bias) per sine layer, scaled so that the layer is sin(x @ weight + bias).
        self.layers: list[tuple[torch.Tensor, torch.Tensor]] = []
        for k, layer in enumerate(model.layers):
            weight = layer.linear.weight.detach().float()
            bias = layer.linear.bias.detach().float()
            if k == 0:  # the network reads positions * aspect
                weight = weight * model.aspect[None, :]
            elif self.residual and k % 2 == 1 and k > 1:  # inner layers after the first block read 0.5 * stream
                weight = weight * 0.5
            self.layers.append(((omega * weight).t().contiguous(), omega * bias))
        out_weight = model.output.weight.detach().float()
        if self.residual:  # the last block's 0.5 * (stream + y)
            out_weight = out_weight * 0.5
        self.output = (out_weight.t().contiguous(), model.output.bias.detach().float())
        self._buffers: dict[str, torch.Tensor] = {}

    def _buffer(self, name: str, rows: int, columns: int, like: torch.Tensor) -> torch.Tensor:
        tensor = self._buffers.get(name)
        if tensor is None or tensor.shape != (rows, columns) or tensor.device != like.device:
            tensor = self._buffers[name] = torch.empty((rows, columns), dtype=torch.float32, device=like.device)
        return tensor

    def _sine(self, k: int, x: torch.Tensor, name: str) -> torch.Tensor:
        weight, bias = self.layers[k]
        out = self._buffer(name, x.shape[0], weight.shape[1], x)
        return torch.addmm(bias, x, weight, out=out).sin_()

    @torch.inference_mode()
    def __call__(self, positions: torch.Tensor) -> torch.Tensor:
        positions = positions.float()
        stream = self._sine(0, positions, "stream")
        for b in range(self.blocks):
            inner, outer = 2 * b + 1, 2 * b + 2
            if self.residual:
                hidden = self._sine(inner, stream, "inner")
                stream.add_(self._sine(outer, hidden, "outer"))
            else:
                hidden = self._sine(inner, stream, "inner")
                stream = self._sine(outer, hidden, "stream" if b % 2 else "outer")
        weight, bias = self.output
        return torch.addmm(bias, stream, weight).squeeze(1)
