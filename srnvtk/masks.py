"""Learnable per-unit masks for pruning while training: Smallify, sparse variational dropout, binary.

A mask holds one learnable value (or pair) per prunable unit, laid out in `unit_shape`, and multiplies a
tensor whose trailing dimensions broadcast against that shape: fV-SRN's latent grid (C, z, y, x) against
units (1, z, y, x) or (C, z, y, x); a Neurcomp layer's activations (batch, width) against units (width,).

Every mask answers the same questions, so models and the trainer need not know which method runs:
  forward(x)   x times the training-time factors (eval mode: the deterministic `scale`)
  penalty()    the method's regulariser, summed over the units (L1 of the factors, or the KL divergence)
  after_step() bookkeeping after each optimiser step (Smallify's sign statistics)
  keep()       which units survive
  scale()      the factor to fold into the model when the masks are baked in (zero where pruned)
  importance() how much each unit matters, comparable within one mask (rate control keeps the most
               important units that fit a byte budget instead of the method's own threshold)
  soft_scale() the factor to fold in when rate control, not keep(), decides which units survive
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import PruningConfig
from .errors import SettingsError


class UnitMask(nn.Module):
    """Base class: the shape bookkeeping shared by every mask."""

    def __init__(self, unit_shape: tuple[int, ...]) -> None:
        super().__init__()
        if not unit_shape or min(unit_shape) < 1:
            raise SettingsError(f"a mask needs a non-empty unit shape, got {tuple(unit_shape)}")
        self.unit_shape = tuple(int(s) for s in unit_shape)

    @property
    def num_units(self) -> int:
        return math.prod(self.unit_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x * self.scale()
        lead = x.shape[: x.dim() - len(self.unit_shape)]
        return x * self.factors(tuple(lead))

    def factors(self, lead: tuple[int, ...]) -> torch.Tensor:
        """Training-time factors, of shape unit_shape or (for per-sample noise) lead + unit_shape."""
        raise NotImplementedError

    def penalty(self) -> torch.Tensor:
        raise NotImplementedError

    def after_step(self) -> None:
        """Called after every optimiser step of the mask phase."""

    def keep(self) -> torch.Tensor:
        raise NotImplementedError

    def scale(self) -> torch.Tensor:
        raise NotImplementedError

    def importance(self) -> torch.Tensor:
        raise NotImplementedError

    def soft_scale(self) -> torch.Tensor:
        raise NotImplementedError


class SmallifyMask(UnitMask):
    """Smallify (Leclerc et al. 2018): a factor beta per unit, initialised N(0, 1), with an L1 penalty.

    After every step the exponential moving averages of sign(beta) and of its variance are updated; a
    unit whose sign variance exceeds the threshold (its factor keeps flipping sign around zero) is pruned
    for good: its factor is zero from then on.
    """

    def __init__(self, unit_shape: tuple[int, ...], momentum: float, threshold: float) -> None:
        super().__init__(unit_shape)
        self.momentum = momentum
        self.threshold = threshold
        self.beta = nn.Parameter(torch.randn(self.unit_shape))
        sign = torch.sign(self.beta.detach())
        self.register_buffer("sign_mean", sign.clone(), persistent=False)
        self.register_buffer("sign_variance", torch.zeros(self.unit_shape), persistent=False)
        self.register_buffer("alive", torch.ones(self.unit_shape, dtype=torch.bool), persistent=False)

    def factors(self, lead: tuple[int, ...]) -> torch.Tensor:
        return self.scale()

    def penalty(self) -> torch.Tensor:
        return (self.beta * self.alive).abs().sum()

    @torch.no_grad()
    def after_step(self) -> None:
        sign = torch.sign(self.beta)
        m = self.momentum
        self.sign_mean.mul_(1 - m).add_(m * sign)
        self.sign_variance.mul_(1 - m).add_(m * (sign - self.sign_mean).square())
        self.alive &= self.sign_variance <= self.threshold

    def keep(self) -> torch.Tensor:
        return self.alive.clone()

    def scale(self) -> torch.Tensor:
        return self.beta * self.alive

    def importance(self) -> torch.Tensor:
        """|beta| of the living units; the pruned ones (zero from now on) below every living one."""
        return torch.where(self.alive, self.beta.detach().abs(), torch.full_like(self.beta, -1.0))

    def soft_scale(self) -> torch.Tensor:
        return self.scale()


class VariationalMask(UnitMask):
    """Sparse variational dropout (Molchanov et al. 2017) on units: factor theta + sigma * N(0, 1).

    log alpha = log sigma^2 - 2 log |theta|; the penalty is Molchanov's approximation of the KL divergence
    to the log-uniform prior. A unit is pruned where its dropout rate alpha / (1 + alpha) reaches the
    threshold. The noise is drawn per sample where the tensor has leading (batch) dimensions, else once
    per step for the whole tensor (a latent grid).
    """

    K1, K2, K3 = 0.63576, 1.87320, 1.48695
    LOG_ALPHA_LIMIT = 12.0  # |log alpha| beyond this changes nothing but can overflow
    INITIAL_LOG_SIGMA2 = -6.0  # little noise at first (alpha = 0.0025, sigma = 0.05 for theta = 1)

    def __init__(self, unit_shape: tuple[int, ...], threshold: float) -> None:
        super().__init__(unit_shape)
        self.log_alpha_threshold = math.log(threshold / (1 - threshold))
        self.theta = nn.Parameter(torch.ones(self.unit_shape))
        self.log_sigma2 = nn.Parameter(torch.full(self.unit_shape, self.INITIAL_LOG_SIGMA2))

    def log_alpha(self) -> torch.Tensor:
        log_alpha = self.log_sigma2 - torch.log(self.theta.square() + 1e-16)
        return log_alpha.clamp(-self.LOG_ALPHA_LIMIT, self.LOG_ALPHA_LIMIT)

    def factors(self, lead: tuple[int, ...]) -> torch.Tensor:
        noise = torch.randn(lead + self.unit_shape, device=self.theta.device)
        return self.theta + torch.exp(0.5 * self.log_sigma2) * noise

    def penalty(self) -> torch.Tensor:
        la = self.log_alpha()
        negative_kl = self.K1 * torch.sigmoid(self.K2 + self.K3 * la) - 0.5 * F.softplus(-la) - self.K1
        return -negative_kl.sum()

    def keep(self) -> torch.Tensor:
        return self.log_alpha().detach() < self.log_alpha_threshold

    def scale(self) -> torch.Tensor:
        return self.theta * self.keep()

    def importance(self) -> torch.Tensor:
        """The lower the dropout rate, the more the unit matters."""
        return -self.log_alpha().detach()

    def soft_scale(self) -> torch.Tensor:
        return self.theta


class BinaryMask(UnitMask):
    """A straight-through binary mask: forward multiplies by the hard 0/1 mask sigmoid(logit) >= threshold,
    backward takes the gradient of the soft mask sigmoid(logit). Kept units are not rescaled by their soft
    value. The penalty is the L1 norm of the soft mask (its values are positive: their sum), which drives
    unneeded logits below the threshold rather than to it."""

    INITIAL_LOGIT = 1.0  # sigmoid 0.73: every unit starts kept, near enough to the threshold to leave

    def __init__(self, unit_shape: tuple[int, ...], threshold: float) -> None:
        super().__init__(unit_shape)
        self.threshold = threshold
        self.logits = nn.Parameter(torch.full(self.unit_shape, self.INITIAL_LOGIT))

    def factors(self, lead: tuple[int, ...]) -> torch.Tensor:
        soft = torch.sigmoid(self.logits)
        return (soft >= self.threshold).to(soft.dtype) + soft - soft.detach()

    def penalty(self) -> torch.Tensor:
        return torch.sigmoid(self.logits).sum()

    def keep(self) -> torch.Tensor:
        return torch.sigmoid(self.logits.detach()) >= self.threshold

    def scale(self) -> torch.Tensor:
        return self.keep().to(self.logits.dtype)

    def importance(self) -> torch.Tensor:
        return self.logits.detach().clone()

    def soft_scale(self) -> torch.Tensor:
        return torch.ones_like(self.logits)


def make_mask(config: PruningConfig, unit_shape: tuple[int, ...]) -> UnitMask:
    """A fresh mask of the configured method (random parts from torch's global generator)."""
    if config.method == "smallify":
        return SmallifyMask(unit_shape, config.sign_momentum, config.sign_variance_threshold)
    if config.method == "variational":
        return VariationalMask(unit_shape, config.dropout_threshold)
    if config.method == "binary":
        return BinaryMask(unit_shape, config.binary_threshold)
    raise SettingsError(f"pruning method '{config.method}' has no masks")
