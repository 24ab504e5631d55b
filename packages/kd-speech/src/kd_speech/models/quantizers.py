"""vq-wav2vec's two grouped quantizers: Gumbel-softmax and online k-means.

Baevski, Schneider, Auli, "vq-wav2vec: Self-Supervised Learning of Discrete Speech Representations", ICLR 2020
(arXiv 1910.05453), section 3.

Both take dense features ``[B, C, T]`` and return a ``QuantizerOutput`` whose ``quantized`` is ``[B, D, T]``:
the feature vector is split into ``G`` groups and each group is replaced by one of ``V`` codewords of size
``D / G``; ``indices`` ``[B, T, G]`` says which.

- ``GumbelQuantizer``: a linear map gives ``G x V`` logits; in training the forward pass takes the hard one-hot
  of ``argmax(logits + gumbel noise)`` while the backward pass uses the gradient of
  ``softmax((logits + noise) / tau)`` (straight-through); at evaluation it takes ``argmax(logits)``.
  ``tau`` is annealed from 2 to 0.5 by a factor 0.999995 per update (``set_num_updates``).
- ``KMeansQuantizer``: each group is replaced by its nearest codeword (Euclidean); the forward value is the
  codeword ``ẑ`` and the gradient passes straight to the encoder output ``z``; the codebook and the encoder are
  trained by ``||sg(z) - ẑ||² + γ ||z - sg(ẑ)||²`` with ``γ = 0.25`` (each term the mean over elements).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from kd_core.errors import ConfigError
from torch import nn

from kd_speech.models._checks import non_negative_float, positive_float, positive_int
from kd_speech.models.codebook import perplexity
from kd_speech.models.conv_encoder import activation

__all__ = ["GumbelQuantizer", "KMeansQuantizer", "QuantizerOutput", "check_temperature"]


@dataclass
class QuantizerOutput:
    """What a quantizer returns.

    ``quantized`` ``[B, D, T]``; ``indices`` ``[B, T, G]``; ``loss`` the quantizer's own loss (the k-means
    loss, the optional Gumbel diversity penalty, else 0); ``code_perplexity`` the perplexity of the hard
    assignments in this batch summed over groups; ``prob_perplexity`` that of the averaged softmax (Gumbel only,
    else equal to ``code_perplexity``).
    """

    quantized: torch.Tensor
    indices: torch.Tensor
    loss: torch.Tensor
    code_perplexity: torch.Tensor
    prob_perplexity: torch.Tensor


def check_temperature(temperature: Sequence[float]) -> tuple[float, float, float]:
    """``(start, floor, decay)`` with ``start >= floor > 0`` and ``0 < decay <= 1``, or a ``ConfigError``."""
    if isinstance(temperature, str | bytes) or not isinstance(temperature, Sequence) or len(temperature) != 3:
        raise ConfigError("temperature", "a (start, floor, decay) triple", temperature)
    start, floor, decay = (positive_float(f"temperature[{i}]", v) for i, v in enumerate(temperature))
    if start < floor:
        raise ConfigError("temperature", "start >= floor", temperature)
    if decay > 1.0:
        raise ConfigError("temperature[2]", "a decay factor in (0, 1]", decay)
    return start, floor, decay


def _hard_code_perplexity(indices: torch.Tensor, num_vars: int) -> torch.Tensor:
    """Perplexity of hard assignments ``[N, G]`` per group, summed over groups."""
    one_hot = F.one_hot(indices, num_vars).float()
    return perplexity(one_hot.mean(0)).sum()


class GumbelQuantizer(nn.Module):
    """Grouped Gumbel-softmax quantizer (features ``[B, dim, T]`` to ``[B, vq_dim, T]``).

    ``weight_proj`` maps a frame to ``groups * num_vars`` logits (a ``Linear``, or with ``weight_proj_depth > 1``
    hidden blocks of width ``dim * weight_proj_factor`` then a ``Linear``); ``vars`` holds the codewords,
    ``[1, groups * num_vars, vq_dim / groups]`` (one shared set of ``num_vars`` with ``combine_groups``).
    The last linear layer starts from ``N(0, 9 / fan_in)`` weights and zero bias, so that the initial logits
    spread over a few units at any width (the softmax neither saturates nor drowns in the Gumbel noise).
    ``diversity_weight`` (0 in the paper; wav2vec 2.0's codebook penalty, Baevski et al., NeurIPS 2020,
    arXiv 2006.11477) adds ``diversity_weight * (G V - prob_perplexity) / (G V)`` to ``loss``.
    """

    def __init__(self, dim: int, num_vars: int = 320, groups: int = 2, vq_dim: int | None = None,
                 combine_groups: bool = False, weight_proj_depth: int = 1, weight_proj_factor: int = 2,
                 temperature: Sequence[float] = (2.0, 0.5, 0.999995), activation_name: str = "relu",
                 diversity_weight: float = 0.0) -> None:
        super().__init__()
        self.dim = positive_int("dim", dim)
        self.num_vars = positive_int("num_vars", num_vars)
        self.groups = positive_int("groups", groups)
        self.vq_dim = dim if vq_dim is None else positive_int("vq_dim", vq_dim)
        if self.vq_dim % self.groups:
            raise ConfigError("vq_dim", f"a multiple of groups ({groups})", self.vq_dim)
        positive_int("weight_proj_depth", weight_proj_depth)
        positive_int("weight_proj_factor", weight_proj_factor)
        self.max_temperature, self.min_temperature, self.temperature_decay = check_temperature(temperature)
        self.diversity_weight = non_negative_float("diversity_weight", diversity_weight)
        self.combine_groups = bool(combine_groups)
        num_sets = 1 if self.combine_groups else self.groups
        self.vars = nn.Parameter(torch.empty(1, num_sets * self.num_vars, self.vq_dim // self.groups))
        nn.init.normal_(self.vars)
        logits = self.groups * self.num_vars
        if weight_proj_depth == 1:
            self.weight_proj: nn.Module = nn.Linear(dim, logits)
            last = self.weight_proj
        else:
            inner = dim * weight_proj_factor
            blocks: list[nn.Module] = [nn.Sequential(nn.Linear(dim if i == 0 else inner, inner),
                                                     activation(activation_name))
                                       for i in range(weight_proj_depth - 1)]
            last = nn.Linear(inner, logits)
            self.weight_proj = nn.Sequential(*blocks, last)
        nn.init.normal_(last.weight, std=3.0 / math.sqrt(last.in_features))
        nn.init.zeros_(last.bias)
        #: optimizer updates so far; sets the temperature
        self.num_updates = 0

    @property
    def temperature(self) -> float:
        """``max(start * decay ** num_updates, floor)``."""
        return max(self.max_temperature * self.temperature_decay ** self.num_updates, self.min_temperature)

    def set_num_updates(self, num_updates: int) -> None:
        """Anneal the temperature to its value after ``num_updates`` optimizer updates."""
        self.num_updates = positive_int("num_updates", num_updates, minimum=0)

    def codewords(self) -> torch.Tensor:
        """The codebook ``[groups, num_vars, vq_dim / groups]``."""
        table = self.vars.view(-1, self.num_vars, self.vq_dim // self.groups)
        return table.expand(self.groups, -1, -1) if self.combine_groups else table

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, T, groups, num_vars]`` of features ``[B, dim, T]``."""
        _check_features(features, self.dim)
        batch, _, frames = features.shape
        return self.weight_proj(features.transpose(1, 2)).view(batch, frames, self.groups, self.num_vars)

    def indices(self, features: torch.Tensor) -> torch.Tensor:
        """Deterministic codeword indices ``[B, T, groups]`` (argmax of the logits, no noise)."""
        return self.logits(features).argmax(-1)

    def forward(self, features: torch.Tensor) -> QuantizerOutput:
        """Quantize features ``[B, dim, T]`` (Gumbel noise and straight-through gradients in training)."""
        logits = self.logits(features)
        batch, frames = logits.shape[:2]
        if self.training:
            uniform = torch.rand_like(logits).clamp(1e-10, 1.0 - 1e-7)
            soft = torch.softmax((logits - torch.log(-torch.log(uniform))) / self.temperature, dim=-1)
            indices = soft.argmax(-1)
            hard = F.one_hot(indices, self.num_vars).to(soft.dtype)
            weights = hard + (soft - soft.detach())  # value: exactly the hard one-hot; gradient: the softmax's
        else:
            indices = logits.argmax(-1)
            weights = F.one_hot(indices, self.num_vars).to(logits.dtype)
        quantized = torch.einsum("btgv,gvd->btgd", weights, self.codewords()).reshape(batch, frames, self.vq_dim)
        flat = indices.reshape(-1, self.groups)
        code_ppl = _hard_code_perplexity(flat, self.num_vars)
        prob_ppl = perplexity(torch.softmax(logits.float(), dim=-1).reshape(-1, self.groups, self.num_vars).mean(0))
        prob_ppl = prob_ppl.sum()
        total = self.groups * self.num_vars
        loss = (self.diversity_weight * (total - prob_ppl) / total if self.diversity_weight
                else logits.new_zeros(()))
        return QuantizerOutput(quantized=quantized.transpose(1, 2), indices=indices, loss=loss,
                               code_perplexity=code_ppl, prob_perplexity=prob_ppl)


class KMeansQuantizer(nn.Module):
    """Grouped online k-means quantizer (features ``[B, dim, T]`` to ``[B, dim, T]``).

    ``projection`` (a grouped 1x1 convolution and a ``GroupNorm`` over the groups) maps the features to ``z``;
    ``embedding`` ``[num_vars, groups, dim / groups]`` holds the codewords (one shared set with
    ``combine_groups``). ``loss`` is ``mse(ẑ, sg(z)) + gamma * mse(z, sg(ẑ))``.
    """

    def __init__(self, dim: int, num_vars: int = 320, groups: int = 2, combine_groups: bool = False,
                 gamma: float = 0.25) -> None:
        super().__init__()
        self.dim = positive_int("dim", dim)
        self.num_vars = positive_int("num_vars", num_vars)
        self.groups = positive_int("groups", groups)
        if dim % groups:
            raise ConfigError("dim", f"a multiple of groups ({groups})", dim)
        self.vq_dim = dim
        self.gamma = non_negative_float("gamma", gamma)
        self.combine_groups = bool(combine_groups)
        self.projection = nn.Sequential(nn.Conv1d(dim, dim, 1, groups=groups, bias=False), nn.GroupNorm(groups, dim))
        codewords = torch.randn(num_vars, 1 if self.combine_groups else groups, dim // groups)
        # every codeword starts at the norm of a unit-variance z, so no codeword wins by being short
        self.embedding = nn.Parameter(codewords * math.sqrt(dim // groups) / codewords.norm(dim=-1, keepdim=True))

    def codewords(self) -> torch.Tensor:
        """The codebook ``[groups, num_vars, dim / groups]``."""
        table = self.embedding.transpose(0, 1)
        return table.expand(self.groups, -1, -1) if self.combine_groups else table

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """``z`` ``[B, T, groups, dim / groups]`` of features ``[B, dim, T]``."""
        _check_features(features, self.dim)
        batch, _, frames = features.shape
        z = self.projection(features)
        return z.view(batch, self.groups, self.dim // self.groups, frames).permute(0, 3, 1, 2)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Index ``[B, T, groups]`` of the nearest codeword to each group of ``z`` ``[B, T, groups, d]``."""
        batch, frames, groups, width = z.shape
        per_group = z.reshape(batch * frames, groups, width).transpose(0, 1)  # [G, N, d]
        distances = torch.cdist(per_group, self.codewords().to(z.dtype))  # [G, N, V]
        return distances.argmin(-1).transpose(0, 1).reshape(batch, frames, groups)

    def indices(self, features: torch.Tensor) -> torch.Tensor:
        """Codeword indices ``[B, T, groups]`` of features ``[B, dim, T]``."""
        return self.nearest(self.project(features))

    def forward(self, features: torch.Tensor) -> QuantizerOutput:
        """Quantize features ``[B, dim, T]``; the gradient passes straight through to ``z``."""
        z = self.project(features)
        indices = self.nearest(z.detach())
        table = self.codewords()
        group_ids = torch.arange(self.groups, device=z.device)
        z_hat = table[group_ids, indices]  # [B, T, G, d]
        loss = F.mse_loss(z_hat, z.detach()) + self.gamma * F.mse_loss(z, z_hat.detach())
        quantized = z_hat.detach() + (z - z.detach())  # value: the codeword; gradient: to z
        batch, frames = z.shape[:2]
        code_ppl = _hard_code_perplexity(indices.reshape(-1, self.groups), self.num_vars)
        return QuantizerOutput(quantized=quantized.reshape(batch, frames, self.dim).transpose(1, 2), indices=indices,
                               loss=loss, code_perplexity=code_ppl, prob_perplexity=code_ppl)


def _check_features(features: torch.Tensor, dim: int) -> None:
    if features.dim() != 3 or features.shape[1] != dim:
        raise ConfigError("features", f"a tensor [B, {dim}, T]", tuple(features.shape))
