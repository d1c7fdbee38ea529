"""Pruning while training: put masks on a model, the mask phase's objective, and what was pruned.

The schedule (run by srnvtk.train): train with masks and the method's regulariser, bake the masks into
the model (`model.bake_masks()`), then fine-tune the survivors with plain MSE. The objective per method:
  smallify     MSE + l1_weight * mean |beta| + l2_weight * mean square of what the factors multiply
  binary       MSE + l1_weight * mean sigmoid(logit)
  variational  Gaussian negative log-likelihood (mean over the batch) + kl_weight * ramp * mean KL per unit;
               sigma fixed ('static') or predicted per position by a small network ('dynamic', trained
               with the masks and dropped afterwards)
The penalties are means over the units, so the weights do not depend on the size of the grid or network.
(The exact ELBO would weigh the KL sum against the likelihood of every voxel: with far more voxels than
units it hardly prunes a network of a few hundred neurons, so the KL weight is a setting instead.)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .config import PruningConfig
from .masks import make_mask
from .models.layers import Snake

if TYPE_CHECKING:
    from .models.protocol import SRNModel

# The PruningConfig fields each method reads, beside the schedule's (for showing the settings that matter).
SCHEDULE_SETTINGS = ("mask_phase_fraction", "mask_learning_rate", "finetune_lr_factor")
METHOD_SETTINGS = {
    "none": (),
    "smallify": ("l1_weight", "l2_weight", "sign_momentum", "sign_variance_threshold"),
    "variational": ("kl_weight", "kl_ramp_fraction", "sigma", "static_sigma", "dropout_threshold"),
    "binary": ("l1_weight", "binary_threshold"),
}


def attach_masks(model: SRNModel, config: PruningConfig) -> None:
    """Fresh masks of the configured method at every place the architecture can prune."""
    device = next(model.parameters()).device
    model.attach_masks([make_mask(config, shape).to(device) for shape in model.mask_shapes(config.granularity)])


def kept_unit_fraction(model: SRNModel) -> float:
    """Fraction of the masked units that the masks currently keep (1.0 without masks)."""
    masks = model.masks()
    total = sum(m.num_units for m in masks)
    return sum(int(m.keep().sum()) for m in masks) / total if total else 1.0


def pruned_fractions(model: SRNModel) -> dict[str, float]:
    """Per parameter: the fraction of the unpruned model's entries that pruning removed."""
    return {name: 1.0 - kept / full if full else 0.0 for name, (kept, full) in model.entry_counts().items()}


def pruned_fraction(model: SRNModel) -> float:
    """The fraction of all the unpruned model's parameter entries that pruning removed."""
    counts = model.entry_counts().values()
    full = sum(f for _k, f in counts)
    return 1.0 - sum(k for k, _f in counts) / full if full else 0.0


class GaussianNLL(nn.Module):
    """Mean negative log-likelihood of targets under N(prediction, sigma^2), without the constant.

    'static': sigma is fixed; 'dynamic': a small MLP predicts log sigma from the position, starting at
    the static value. The predicted sigma is kept within [MIN_SIGMA, 1]: the likelihood has no lower
    bound as sigma shrinks where the fit is already close.
    """

    MIN_SIGMA = 1e-3  # of the value range: 60 dB

    def __init__(self, mode: str, static_sigma: float, hidden: int = 16) -> None:
        super().__init__()
        self.static_log_sigma = math.log(static_sigma)
        self.log_sigma_range = (math.log(min(self.MIN_SIGMA, static_sigma)), max(0.0, self.static_log_sigma))
        self.net = None
        if mode == "dynamic":
            self.net = nn.Sequential(nn.Linear(3, hidden), Snake(), nn.Linear(hidden, hidden), Snake(),
                                     nn.Linear(hidden, 1))
            with torch.no_grad():
                self.net[-1].weight.zero_()
                self.net[-1].bias.fill_(self.static_log_sigma)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if self.net is None:
            log_sigma = torch.full_like(prediction, self.static_log_sigma)
        else:
            log_sigma = self.net(positions).squeeze(1).clamp(*self.log_sigma_range)
        return (0.5 * ((target - prediction) * torch.exp(-log_sigma)).square() + log_sigma).mean()


class MaskObjective:
    """The mask phase's loss for one method; call with a batch, get (loss, mse)."""

    def __init__(self, config: PruningConfig, model: SRNModel) -> None:
        self.config = config
        self.model = model
        self.units = max(1, sum(m.num_units for m in model.masks()))
        self.likelihood = None
        if config.method == "variational":
            device = next(model.parameters()).device
            self.likelihood = GaussianNLL(config.sigma, config.static_sigma).to(device)

    def parameter_groups(self, learning_rate: float) -> list[dict]:
        """Adam parameter groups: the network (and the dynamic sigma network) at learning_rate; the masks at
        the configured mask_learning_rate. Each group records its initial rate as 'base_lr'."""
        mask_parameters = [p for mask in self.model.masks() for p in mask.parameters()]
        masked = {id(p) for p in mask_parameters}
        network = [p for p in self.model.parameters() if id(p) not in masked]
        if self.likelihood is not None:
            network += list(self.likelihood.parameters())
        return [{"params": network, "base_lr": learning_rate},
                {"params": mask_parameters, "base_lr": self.config.mask_learning_rate}]

    def __call__(
        self, prediction: torch.Tensor, target: torch.Tensor, positions: torch.Tensor, phase_fraction: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        config = self.config
        mse = F.mse_loss(prediction, target)
        penalty = sum(mask.penalty() for mask in self.model.masks())
        if config.method == "variational":
            ramp = min(1.0, phase_fraction / config.kl_ramp_fraction) if config.kl_ramp_fraction > 0 else 1.0
            nll = self.likelihood(prediction, target, positions)
            return nll + config.kl_weight * ramp * penalty / self.units, mse
        loss = mse + config.l1_weight * penalty / self.units
        if config.method == "smallify" and config.l2_weight > 0:
            values = self.model.masked_values()
            squares = sum(v.square().sum() for v in values) / sum(v.numel() for v in values)
            loss = loss + config.l2_weight * squares
        return loss, mse

    def after_step(self) -> None:
        for mask in self.model.masks():
            mask.after_step()
