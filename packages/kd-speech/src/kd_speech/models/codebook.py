"""Codebook bookkeeping for grouped vector quantizers: token ids from group indices, usage and perplexity.

Baevski, Schneider, Auli, "vq-wav2vec: Self-Supervised Learning of Discrete Speech Representations", ICLR 2020
(arXiv 1910.05453). A frame quantized with ``G`` groups of ``V`` codewords is a tuple of group indices
``(i_0, ..., i_{G-1})``; ``combine_indices`` writes it as one token id ``sum_g i_g * V**(G-1-g)`` in
``[0, V**G)`` (group 0 is the most significant digit), ``split_tokens`` undoes that.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from kd_core.errors import ConfigError

from kd_speech.models._checks import positive_int

__all__ = ["CodebookUsage", "codebook_usage", "combine_indices", "perplexity", "split_tokens"]


def combine_indices(indices: torch.Tensor, num_vars: int) -> torch.Tensor:
    """One token id per frame from group indices ``[..., G]``: ``sum_g i_g * V**(G-1-g)``, shape ``[...]``."""
    positive_int("num_vars", num_vars)
    if indices.dim() < 1 or indices.dtype not in (torch.int64, torch.int32):
        raise ConfigError("indices", "an integer tensor [..., groups]", f"{indices.dtype} {tuple(indices.shape)}")
    groups = indices.shape[-1]
    weights = torch.tensor([num_vars ** (groups - 1 - g) for g in range(groups)], dtype=torch.int64,
                           device=indices.device)
    return (indices.long() * weights).sum(-1)


def split_tokens(tokens: torch.Tensor, num_vars: int, groups: int) -> torch.Tensor:
    """Group indices ``[..., G]`` of token ids written by ``combine_indices``."""
    positive_int("num_vars", num_vars)
    positive_int("groups", groups)
    digits = []
    rest = tokens.long()
    for _ in range(groups):
        digits.append(rest % num_vars)
        rest = torch.div(rest, num_vars, rounding_mode="floor")
    return torch.stack(digits[::-1], dim=-1)


def perplexity(probabilities: torch.Tensor) -> torch.Tensor:
    """``exp(entropy)`` of distributions over the last dimension (from 1 for one codeword to ``V`` for uniform)."""
    return torch.exp(-(probabilities * torch.log(probabilities.clamp_min(1e-7))).sum(-1))


@dataclass(frozen=True)
class CodebookUsage:
    """How much of a grouped codebook a set of frames uses.

    ``used`` and ``perplexity`` have one entry per group; ``distinct`` counts the distinct code combinations
    (the distinct token ids of ``combine_indices``) among ``frames`` frames.
    """

    num_vars: int
    groups: int
    frames: int
    used: tuple[int, ...]
    perplexity: tuple[float, ...]
    distinct: int

    @property
    def fraction(self) -> float:
        """Share of all ``groups * num_vars`` codewords used at least once."""
        return sum(self.used) / (self.groups * self.num_vars)

    @property
    def min_fraction(self) -> float:
        """Share of codewords used in the least-used group."""
        return min(self.used) / self.num_vars

    def summary(self) -> str:
        """One line for logs and reports."""
        used = ", ".join(f"{u}/{self.num_vars}" for u in self.used)
        ppl = ", ".join(f"{p:.1f}" for p in self.perplexity)
        return (f"codebook usage: {used} codewords per group ({100 * self.fraction:.0f}%), perplexity {ppl}, "
                f"{self.distinct} distinct combinations over {self.frames} frames")


def codebook_usage(indices: torch.Tensor, num_vars: int) -> CodebookUsage:
    """Usage of group indices ``[..., G]`` (any leading shape; every frame counts)."""
    positive_int("num_vars", num_vars)
    if indices.dim() < 1 or indices.numel() == 0:
        raise ConfigError("indices", "a non-empty integer tensor [..., groups]", tuple(indices.shape))
    flat = indices.reshape(-1, indices.shape[-1]).long().cpu()
    if int(flat.min()) < 0 or int(flat.max()) >= num_vars:
        raise ConfigError("indices", f"group indices in [0, {num_vars})", (int(flat.min()), int(flat.max())))
    groups = flat.shape[1]
    used, ppl = [], []
    for g in range(groups):
        counts = torch.bincount(flat[:, g], minlength=num_vars).double()
        used.append(int((counts > 0).sum()))
        ppl.append(float(perplexity(counts / counts.sum())))
    distinct = int(torch.unique(combine_indices(flat, num_vars)).numel())
    return CodebookUsage(num_vars=num_vars, groups=groups, frames=flat.shape[0], used=tuple(used),
                         perplexity=tuple(ppl), distinct=distinct)
