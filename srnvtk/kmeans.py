"""Weight sharing by 1D k-means (as Neurcomp's paper stores its hidden matrices): each matrix becomes a small
codebook of shared values and one uint8 index per weight.

`ClusteredLinear` is a linear layer whose weight is codebook[indices]: the indices stay fixed and the
codebook trains (each shared value gets the summed gradient of its weights), so fine-tuning after clustering
optimises exactly the model the file stores.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MAX_CLUSTERS = 256  # indices are stored as uint8
LLOYD_ITERATIONS = 30


def kmeans_1d(values: torch.Tensor, clusters: int, iterations: int = LLOYD_ITERATIONS
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(codebook (k,), indices (values' shape, uint8)) minimising the squared error of codebook[indices].

    Deterministic: the centroids start at evenly spaced quantiles and follow Lloyd's iterations; in 1D the
    nearest centroid is found by bucketing against the midpoints of the sorted centroids. With no more
    distinct values than clusters the codebook is those values, padded with copies of the largest: always k
    entries, so a reader can build the layer from the settings alone.
    """
    if not 2 <= clusters <= MAX_CLUSTERS:
        raise ValueError(f"clusters must be within [2, {MAX_CLUSTERS}], got {clusters}")
    flat = values.detach().reshape(-1).double()
    distinct = torch.unique(flat)
    if distinct.numel() <= clusters:
        indices = torch.bucketize(flat, distinct)
        codebook = torch.cat([distinct, distinct[-1:].expand(clusters - distinct.numel())])
        return codebook.to(values.dtype), indices.reshape(values.shape).to(torch.uint8)
    codebook = torch.quantile(flat, torch.linspace(0, 1, clusters, dtype=torch.float64))
    for _ in range(iterations):
        codebook, _ = torch.sort(codebook)
        indices = torch.bucketize(flat, (codebook[1:] + codebook[:-1]) / 2)
        sums = torch.zeros_like(codebook).index_add_(0, indices, flat)
        counts = torch.zeros_like(codebook).index_add_(0, indices, torch.ones_like(flat))
        updated = torch.where(counts > 0, sums / counts.clamp(min=1), codebook)  # an empty cluster stays put
        if torch.equal(updated, codebook):
            break
        codebook = updated
    codebook, _ = torch.sort(codebook)
    indices = torch.bucketize(flat, (codebook[1:] + codebook[:-1]) / 2)
    return codebook.to(values.dtype), indices.reshape(values.shape).to(torch.uint8)


class ClusteredLinear(nn.Module):
    """y = x @ codebook[indices].T + bias, with a trainable codebook and bias and fixed uint8 indices."""

    def __init__(self, codebook: torch.Tensor, indices: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        if indices.dim() != 2 or bias.shape != (indices.shape[0],):
            raise ValueError(f"indices {tuple(indices.shape)} and bias {tuple(bias.shape)} do not make a layer")
        self.codebook = nn.Parameter(codebook.detach().clone())
        self.register_buffer("indices", indices.detach().to(torch.uint8).clone())
        self.bias = nn.Parameter(bias.detach().clone())
        self.in_features, self.out_features = indices.shape[1], indices.shape[0]

    @classmethod
    def from_linear(cls, linear: nn.Linear, clusters: int) -> ClusteredLinear:
        codebook, indices = kmeans_1d(linear.weight, clusters)
        return cls(codebook, indices, linear.bias)

    @classmethod
    def empty(cls, out_features: int, in_features: int, clusters: int) -> ClusteredLinear:
        """A layer of the right shapes for loading a stored state into."""
        return cls(torch.zeros(clusters), torch.zeros((out_features, in_features), dtype=torch.uint8),
                   torch.zeros(out_features))

    @property
    def weight(self) -> torch.Tensor:
        return self.codebook[self.indices.long()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, clusters={self.codebook.numel()}"
