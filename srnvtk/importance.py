"""Error-driven sampling of training points: more of each batch where the network is still wrong.

The lattice is cut into blocks of BLOCK^3 points. Every block keeps a running estimate of the squared error of
the samples drawn in it. A batch draws blocks with probability

    p(block) = UNIFORM_SHARE * points(block) / points + (1 - UNIFORM_SHARE) * rms(block) / sum of rms

and then one uniform point in each drawn block. Each sample's squared error is weighted by
(points(block) / points) / p(block), so the loss stays an unbiased estimate of the whole volume's MSE (what PSNR
measures): the sampling lowers the variance of the gradient, not what is minimised. Drawing in proportion to
the RMS error is what minimises that variance when the gradient's size follows the error. The uniform share keeps
every block visited, so an estimate cannot go stale where the network has changed.

Measured (benchmarks/README.md, issue 17, stops 24 and 25): 600 s of one CPU thread, the default fV-SRN under rate
control, against uniform batches: +1.68 / +0.84 / +0.57 dB on the shared volume at ratios 200 / 500 / 1000, +0.59
on the generated sharp-feature volume at 200, level (-0.04 to +0.04) on the generated turbulence, whose error is
everywhere, and -0.90 on the sharp-feature volume at 1000 (error-driven batches to the end). Ending training on
uniform batches (srnvtk.train.ERROR_SAMPLING_UNTIL) moved nine such rows by -0.33 to +0.99 dB, +0.04 on average,
the sharp volume at 1000 to 38.88 dB (+0.09 over uniform batches throughout). A uniform share of 0.1 and 4^3 blocks
were probed and not kept (stop 25). The CUDA graphed step samples uniformly (TrainConfig.sampling 'auto'); the
sampler is not measured on a GPU yet.
"""

from __future__ import annotations

import torch

BLOCK = 8  # points per block side
UNIFORM_SHARE = 0.3  # of the sampling probability, spread as uniform sampling would
SMOOTHING = 0.3  # weight of a block's newest measured error in its running estimate
REFRESH_STEPS = 8  # the probabilities are recomputed every this many batches (cheaper than every batch)
# Slots of the drawing table per block: a block's probability is rounded down to a multiple of 1 / slots, and the
# uniform share gives every block at least UNIFORM_SHARE * 8 slots (of the 8 per block the table has on average).
TABLE_SLOTS_PER_BLOCK = 8
MIN_TABLE_SLOTS = 4096  # a finer rounding for volumes of few blocks


class ErrorSampler:
    """Draws training batches as flat [z, y, x] lattice indices with their loss weights (see the module)."""

    def __init__(self, shape_zyx: tuple[int, int, int], device: torch.device, generator: torch.Generator) -> None:
        self.device, self.generator = device, generator
        self.layout = _BlockLayout(shape_zyx, device)
        self.share = self.layout.points / self.layout.points.sum()  # uniform sampling's block probabilities
        blocks = self.share.numel()
        self.error = torch.zeros(blocks, device=device)  # running mean squared error per block
        self.measured = torch.zeros(blocks, dtype=torch.bool, device=device)
        self.sums = torch.zeros(blocks, device=device)  # since the last refresh
        self.counts = torch.zeros(blocks, device=device)
        self.batches = 0
        self.last_blocks: torch.Tensor | None = None
        self._set_probabilities(self.share)

    @property
    def blocks(self) -> int:
        return self.share.numel()

    def _set_probabilities(self, probabilities: torch.Tensor) -> None:
        # Drawing is a uniform pick from a table in which each block fills slots in proportion to its probability:
        # constant time per sample, where a search in the cumulative sums took as long as a tenth of a training
        # step. The weights use the table's own probabilities, so rounding them keeps the loss unbiased.
        table_slots = max(TABLE_SLOTS_PER_BLOCK * self.blocks, MIN_TABLE_SLOTS)
        slots = torch.floor(probabilities * table_slots).clamp_(min=1).long()
        self.table = torch.repeat_interleave(torch.arange(self.blocks, device=self.device), slots)
        self.weight = self.share / (slots / self.table.numel())  # the loss weight of a sample drawn in each block

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(flat indices, loss weights) of a batch; `record` its squared errors before the next one."""
        if self.batches and self.batches % REFRESH_STEPS == 0:
            self._refresh()
        slot = torch.randint(self.table.numel(), (batch,), generator=self.generator, device=self.device)
        chosen = self.table.index_select(0, slot)
        # A uniform point of the chosen block: its n-th point (n < the block's point count) is an offset from the
        # block's first point. Only one-dimensional gathers: per-axis arithmetic took four times as long.
        layout = self.layout
        uniform = torch.rand(batch, generator=self.generator, device=self.device)
        nth = layout.offsets_start.index_select(0, chosen) + (uniform * layout.points.index_select(0, chosen)).long()
        self.last_blocks = chosen
        self.batches += 1
        index = layout.first.index_select(0, chosen) + layout.offsets.index_select(0, nth)
        return index, self.weight.index_select(0, chosen)

    def record(self, squared_errors: torch.Tensor) -> None:
        """The last batch's squared error per sample (N,), averaged over a vector's components by the caller."""
        if self.last_blocks is None:
            raise RuntimeError("record() follows sample()")
        self.sums.index_add_(0, self.last_blocks, squared_errors.detach().to(torch.float32))
        self.counts.index_add_(0, self.last_blocks, torch.ones_like(squared_errors, dtype=torch.float32))

    def _refresh(self) -> None:
        seen = self.counts > 0
        mean = self.sums / self.counts.clamp(min=1.0)
        # A block's first measurement replaces the unknown; later ones move the running estimate.
        updated = torch.where(self.measured, self.error + SMOOTHING * (mean - self.error), mean)
        self.error = torch.where(seen, updated, self.error)
        self.measured |= seen
        self.sums.zero_()
        self.counts.zero_()
        # Blocks not measured yet are treated as the worst measured one, so they are visited soon.
        worst = self.error[self.measured].max() if bool(self.measured.any()) else self.error.new_tensor(1.0)
        rms = torch.where(self.measured, self.error, worst).sqrt()
        total = float(rms.sum())
        if not total > 0.0:  # a perfect fit so far (or nothing measured): uniform
            self._set_probabilities(self.share)
            return
        self._set_probabilities(UNIFORM_SHARE * self.share + (1.0 - UNIFORM_SHARE) * rms / total)


class _BlockLayout:
    """Where each block's points are: `first` (the flat [z, y, x] index of its first point), `points` (its point
    count, float32), and `offsets[offsets_start + n]` (its n-th point's flat offset from the first). Blocks cut
    short at the far end of an axis have their own offsets; there are at most 8 block shapes."""

    def __init__(self, shape_zyx: tuple[int, int, int], device: torch.device) -> None:
        _, ny, nx = shape_zyx
        origins = [torch.arange(0, size, BLOCK, device=device) for size in shape_zyx]
        lengths = [torch.clamp(size - origin, max=BLOCK) for size, origin in zip(shape_zyx, origins, strict=True)]
        self.first = _flat_indices(*origins, ny, nx)
        grids = torch.meshgrid(*lengths, indexing="ij")
        block_shapes = torch.stack([grid.flatten() for grid in grids], dim=1)
        distinct, shape_of_block = torch.unique(block_shapes, dim=0, return_inverse=True)
        offsets, starts, start = [], [], 0
        for lz, ly, lx in distinct.tolist():
            offsets.append(_flat_indices(*(torch.arange(length, device=device) for length in (lz, ly, lx)), ny, nx))
            starts.append(start)
            start += lz * ly * lx
        self.offsets = torch.cat(offsets)
        self.offsets_start = torch.tensor(starts, device=device).index_select(0, shape_of_block)
        self.points = block_shapes.prod(dim=1).to(torch.float32)


def _flat_indices(z: torch.Tensor, y: torch.Tensor, x: torch.Tensor, ny: int, nx: int) -> torch.Tensor:
    """Flat [z, y, x] indices (in a lattice of ny x nx planes) of every combination of the given z, y, x."""
    return ((z * (ny * nx))[:, None, None] + (y * nx)[None, :, None] + x[None, None, :]).flatten()
