"""A plain-MSE training step whose GPU work is one CUDA graph: sample, forward, loss, backward, Adam.

Why: a step of the default fV-SRN on 16,384 voxels is ~100 small kernels; launched one by one from Python the GPU
waits on the launches (about 470 steps/s measured on an H200, whatever the batch). Captured once and replayed, a
step costs one graph launch plus two tiny ones (the batch's random indices and the learning rate), so the small
batches that train best (benchmarks/README.md, the H200 sweep) stop being slow.

What is captured: positions of the batch's voxels (the same arithmetic as srnvtk.sampling.voxel_positions), the
model, the MSE, backward (gradients land in the graph's own memory and are overwritten by every replay) and Adam's
update (capturable=True: its step count and learning rate live on the GPU). What stays outside: drawing the
indices (`torch.randint(..., out=)` from the trainer's generator, so the random stream is the eager loop's) and
setting the learning rate (filled into a GPU tensor: the schedule may follow the clock). The first WARMUP steps
run eagerly on a side stream (lazy initialisation: Adam's state, library workspaces), then the step is captured;
should capture fail (an operation a graph cannot hold), training goes on eagerly with a warning.

On the CPU, and with capture=False, the same step runs eagerly with an ordinary Adam: exactly the trainer's loop
(tests/test_gpu_train.py compares the two), so the capture is the only thing a GPU adds.
SRNVTK_CUDA_GRAPHS=0 switches the graphed step off (srnvtk.train then runs its ordinary loop on CUDA too).
"""

from __future__ import annotations

import os
import warnings

import torch
import torch.nn.functional as F
from torch import nn

WARMUP = 3  # eager steps before the capture
# Adam's moment decays. The second moment's is 0.99, not torch's 0.999 (instant-NGP's choice for grid-based
# networks too). With 0.999 fV-SRN training blew up at its high early rates (the shared volume at ratio 200, 600 s
# of CPU: 41.4 dB at step 6,000, 22.3 at 8,000, the file 41.99 dB; with 0.99 no blow-up and 45.95 dB:
# benchmarks/README.md, issue 17, stop 26). Likely why, not traced: 0.999 averages the squared gradients over
# ~1,000 steps, so after they rise Adam's steps stay too large for that long; 0.99 averages over ~100.
ADAM_BETAS = (0.9, 0.99)


def graphs_enabled(device: torch.device) -> bool:
    """Whether srnvtk.train uses this step: on CUDA, unless SRNVTK_CUDA_GRAPHS is 0/no/off/false."""
    switched_off = os.environ.get("SRNVTK_CUDA_GRAPHS", "1").strip().lower() in ("0", "no", "off", "false")
    return device.type == "cuda" and not switched_off


def eager_adam(groups: list[dict], learning_rate: float, device: torch.device) -> torch.optim.Adam:
    """The trainer's Adam outside a graph: torch's fused kernel on the CPU (one pass per tensor instead of a dozen:
    a 16 x 40^3 grid's step takes 2 ms, not 14), the default elsewhere."""
    return torch.optim.Adam(groups, lr=learning_rate, betas=ADAM_BETAS, fused=device.type == "cpu" or None)


class GraphedStep:
    """Callable: one training step at the given learning-rate factor; returns the batch's MSE (a 0-d tensor on
    the device, overwritten by the next step when captured: read it before calling again).

    groups: Adam's parameter groups, each with its 'base_lr' (the trainer's); targets: the normalised values of
    the volume, flat [z, y, x]; shape_zyx: the volume's point counts.
    """

    def __init__(self, model: nn.Module, groups: list[dict], learning_rate: float, targets: torch.Tensor,
                 shape_zyx: tuple[int, int, int], batch_size: int, generator: torch.Generator,
                 capture: bool = True) -> None:
        self.model, self.targets, self.generator = model, targets, generator
        device = targets.device
        self.capture = capture and device.type == "cuda"
        if self.capture:
            # capturable: step counts on the GPU; a tensor rate per group, changed in place between replays
            self.optimizer = torch.optim.Adam(groups, lr=torch.tensor(learning_rate, device=device), betas=ADAM_BETAS,
                                              capturable=True, foreach=True)
            for group in self.optimizer.param_groups:
                group["lr"] = torch.tensor(float(group["base_lr"]), device=device)
        else:
            self.optimizer = eager_adam(groups, learning_rate, device)
        nz, ny, nx = shape_zyx
        self.shape = shape_zyx
        self.scale = torch.tensor([2.0 / (nx - 1), 2.0 / (ny - 1), 2.0 / (nz - 1)], dtype=torch.float32, device=device)
        self.index = torch.empty(batch_size, dtype=torch.long, device=device)
        self.steps = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.loss: torch.Tensor | None = None

    def __call__(self, decay: float) -> torch.Tensor:
        for group in self.optimizer.param_groups:
            if self.capture:
                group["lr"].fill_(group["base_lr"] * decay)
            else:
                group["lr"] = group["base_lr"] * decay
        torch.randint(self.targets.shape[0], self.index.shape, generator=self.generator, device=self.index.device,
                      out=self.index)
        self.steps += 1
        if self.graph is not None:
            self.graph.replay()
            return self.loss
        if not self.capture:
            return self._eager()
        if self.steps <= WARMUP:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                loss = self._eager()
            torch.cuda.current_stream().wait_stream(side)
            return loss
        return self._capture()

    def _positions(self) -> torch.Tensor:
        """srnvtk.sampling.voxel_positions of self.index, with its scale made once (a graph cannot copy from the
        host)."""
        nz, ny, nx = self.shape
        index = self.index
        x = index % nx
        y = (index // nx) % ny
        z = index // (nx * ny)
        return torch.stack([x, y, z], dim=1).to(torch.float32) * self.scale - 1.0

    def _eager(self) -> torch.Tensor:
        prediction = self.model(self._positions())
        loss = F.mse_loss(prediction, self.targets[self.index])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def _capture(self) -> torch.Tensor:
        graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)  # the captured backward allocates the gradients it writes
        try:
            with torch.cuda.graph(graph):
                self.loss = self._eager()
        except RuntimeError as error:
            warnings.warn(f"CUDA graph capture of the training step failed ({error}); training eagerly",
                          RuntimeWarning, stacklevel=3)
            self.capture = False
            lrs = [float(group["lr"]) for group in self.optimizer.param_groups]
            for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
                group["lr"] = lr
            return self._eager()
        self.graph = graph
        graph.replay()  # capturing ran nothing: this is the step
        return self.loss
