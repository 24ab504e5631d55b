"""Unstructured magnitude pruning, fake (simulated) weight quantization and the bytes of the result.

The study tool behind "train large, then compress": Li, Wallace, Shen, Lin, Keutzer, Klein and Gonzalez, "Train
Large, Then Compress: Rethinking Model Size for Efficient Training and Inference of Transformers", ICML 2020
(arXiv:2002.11794), compare models of several sizes after magnitude pruning and low-bit weight quantization,
accuracy against compressed size. Everything here runs in float on any torch model; nothing is exported.

**Which parameters are compressed**: the weight matrices of ``nn.Linear`` and ``nn.Embedding`` modules (subclasses
included, such as ``MultiheadAttention``'s output projection) and ``MultiheadAttention``'s input projections
(``in_proj_weight``, or ``q/k/v_proj_weight``). A parameter shared by several modules (tied input and output
embeddings) is compressed and counted once. Biases, normalisation layers and every other parameter are left
untouched and counted at 32 bits.

- :func:`prune_magnitude`: unstructured magnitude pruning to a ``sparsity`` (the share of compressed weights set
  to zero). ``scope="global"`` ranks all compressed weights together by ``|w|``; ``"layer"`` prunes every matrix
  to the same sparsity. Exactly ``round(sparsity · n)`` weights are zeroed (ties broken by position), one shot,
  without fine-tuning.
- :func:`fake_quantize`: symmetric uniform quantization to ``bits`` bits, rounded to the grid and dequantized back
  to float: ``q = clamp(round(w / s), -m, m)``, ``w' = s · q`` with ``m = 2^(bits-1) - 1`` (the restricted,
  symmetric range: 2 bits are the ternary grid ``{-s, 0, s}``) and ``s = max|w| / m``, one scale per row of the
  matrix by default (per channel: a Linear's output unit, an embedding's token vector) or one per matrix
  (``per_channel=False``). Zero maps to zero, so pruned weights stay pruned. ``torch.round`` rounds halves to even.
  The paper's quantizer (granularity, calibration, training) was not retrieved for this implementation; per-channel
  post-training quantization of weights is the common choice (Krishnamoorthi, "Quantizing deep convolutional
  networks for efficient inference: A whitepaper", arXiv:1806.08342).
- :func:`compress`: a compressed copy, pruned then quantized (the model given is never changed).
- :func:`model_bytes`: the convention used for sizes: every non-zero compressed weight at ``bits`` bits, plus one
  32-bit scale per row (per channel) or per matrix when quantized (``bits < 32``), plus every untouched parameter
  at 32 bits; divided by 8. The positions of the non-zeros (a sparse index) are not counted unless ``index_bits``
  (bits per compressed weight, e.g. 1 for a bitmap) is given.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Literal

import torch
from kd_core.errors import ConfigError
from torch import nn

__all__ = ["FULL_BITS", "compress", "compressible_weights", "fake_quantize", "magnitude_masks", "model_bytes",
           "prune_magnitude", "quantize_tensor"]

#: The width of an uncompressed (float32) parameter.
FULL_BITS = 32

Scope = Literal["global", "layer"]
_MHA_WEIGHTS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")


# -- checks -------------------------------------------------------------------------------------------------

def _check_sparsity(sparsity: float) -> float:
    if isinstance(sparsity, bool) or not isinstance(sparsity, int | float) or not 0 <= sparsity < 1:
        raise ConfigError("sparsity", "a number in [0, 1)", sparsity)
    return float(sparsity)


def _check_bits(bits: int, *, allow_full: bool = False) -> int:
    valid = isinstance(bits, int) and not isinstance(bits, bool) and (2 <= bits <= 16 or (allow_full and bits == 32))
    if not valid:
        raise ConfigError("bits", "an integer in 2..16" + (" or 32 (uncompressed)" if allow_full else ""), bits)
    return bits


def _check_scope(scope: str) -> None:
    if scope not in ("global", "layer"):
        raise ConfigError("scope", "'global' or 'layer'", scope)


# -- which weights ------------------------------------------------------------------------------------------

def compressible_weights(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The weight matrices this module compresses, named as in ``model.named_parameters()``, each once (a tied
    parameter under its first name): Linear and Embedding weights and MultiheadAttention input projections."""
    found: dict[int, tuple[str, nn.Parameter]] = {}
    for prefix, module in model.named_modules():
        names = ["weight"] if isinstance(module, nn.Linear | nn.Embedding) else []
        if isinstance(module, nn.MultiheadAttention):
            names = [n for n in _MHA_WEIGHTS if getattr(module, n, None) is not None]
        for name in names:
            param = getattr(module, name)
            if isinstance(param, nn.Parameter) and id(param) not in found:
                found[id(param)] = (f"{prefix}.{name}" if prefix else name, param)
    return list(found.values())


def _untouched_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every distinct parameter that is not compressed (biases, norms, anything else)."""
    compressed = {id(p) for _, p in compressible_weights(model)}
    seen: set[int] = set()
    out = []
    for param in model.parameters():  # parameters() yields a shared parameter once
        if id(param) not in compressed and id(param) not in seen:
            seen.add(id(param))
            out.append(param)
    return out


# -- pruning ------------------------------------------------------------------------------------------------

def magnitude_masks(weights: Sequence[torch.Tensor], sparsity: float) -> list[torch.Tensor]:
    """Keep-masks (True = kept) that zero exactly ``round(sparsity · n)`` of the ``n`` weights of ``weights``
    taken together, those of smallest ``|w|`` (ties: the earlier position goes first)."""
    sparsity = _check_sparsity(sparsity)
    flat = torch.cat([w.detach().reshape(-1).abs().float() for w in weights]) if weights else torch.zeros(0)
    drop = round(sparsity * flat.numel())
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    if drop:
        order = torch.argsort(flat, stable=True)
        keep[order[:drop]] = False
    masks, start = [], 0
    for w in weights:
        masks.append(keep[start:start + w.numel()].reshape(w.shape))
        start += w.numel()
    return masks


def prune_magnitude(model: nn.Module, sparsity: float, scope: Scope = "global", *, inplace: bool = False) -> nn.Module:
    """``model`` (a deep copy unless ``inplace``) with its compressible weights pruned to ``sparsity`` by magnitude,
    ranked over all of them (``"global"``) or within each matrix (``"layer"``)."""
    _check_sparsity(sparsity)
    _check_scope(scope)
    target = model if inplace else copy.deepcopy(model)
    params = [p for _, p in compressible_weights(target)]
    groups = [params] if scope == "global" else [[p] for p in params]
    with torch.no_grad():
        for group in groups:
            for param, mask in zip(group, magnitude_masks(group, sparsity), strict=True):
                param.mul_(mask.to(param.dtype))
    return target


# -- quantization -------------------------------------------------------------------------------------------

def quantize_tensor(weight: torch.Tensor, bits: int, per_channel: bool = True) -> torch.Tensor:
    """``weight`` rounded to the symmetric ``bits``-bit grid and dequantized (a new tensor): one scale
    ``max|w| / (2^(bits-1) - 1)`` per row (``per_channel``) or for the whole tensor; an all-zero row stays zero."""
    levels = 2 ** (_check_bits(bits) - 1) - 1
    w = weight.detach().float()
    if per_channel and w.dim() >= 2:
        peak = w.abs().reshape(w.shape[0], -1).amax(dim=1).reshape(-1, *([1] * (w.dim() - 1)))
    else:
        peak = w.abs().amax()
    scale = torch.where(peak > 0, peak / levels, torch.ones_like(peak))
    return (torch.clamp(torch.round(w / scale), -levels, levels) * scale).to(weight.dtype)


def fake_quantize(model: nn.Module, bits: int, per_channel: bool = True, *, inplace: bool = False) -> nn.Module:
    """``model`` (a deep copy unless ``inplace``) with every compressible weight replaced by its ``bits``-bit
    symmetric fake-quantized value (:func:`quantize_tensor`)."""
    _check_bits(bits)
    target = model if inplace else copy.deepcopy(model)
    with torch.no_grad():
        for _, param in compressible_weights(target):
            param.copy_(quantize_tensor(param, bits, per_channel))
    return target


def compress(model: nn.Module, sparsity: float = 0.0, bits: int = FULL_BITS, scope: Scope = "global",
             per_channel: bool = True) -> nn.Module:
    """A compressed copy of ``model``: pruned to ``sparsity`` (when above 0), then fake-quantized to ``bits``
    (when below 32). Zeros stay zero through quantization, so the sparsity is kept."""
    _check_sparsity(sparsity)
    _check_bits(bits, allow_full=True)
    _check_scope(scope)
    target = copy.deepcopy(model)
    if sparsity > 0:
        prune_magnitude(target, sparsity, scope, inplace=True)
    if bits < FULL_BITS:
        fake_quantize(target, bits, per_channel, inplace=True)
    return target


# -- size ---------------------------------------------------------------------------------------------------

def model_bytes(model: nn.Module, bits: int = FULL_BITS, per_channel: bool = True, index_bits: float = 0.0) -> float:
    """Bytes of ``model`` stored compressed: non-zero compressed weights at ``bits`` bits, one 32-bit scale per row
    (``per_channel``) or per matrix when ``bits < 32``, ``index_bits`` per compressed weight (0: no sparse index),
    and every other parameter at 32 bits."""
    _check_bits(bits, allow_full=True)
    if isinstance(index_bits, bool) or not isinstance(index_bits, int | float) or not (
            math.isfinite(index_bits) and index_bits >= 0):
        raise ConfigError("index_bits", "a finite number >= 0", index_bits)
    total_bits = 0.0
    for _, param in compressible_weights(model):
        total_bits += int(torch.count_nonzero(param.detach())) * bits + param.numel() * index_bits
        if bits < FULL_BITS:
            scales = param.shape[0] if per_channel and param.dim() >= 2 else 1
            total_bits += scales * FULL_BITS
    total_bits += sum(p.numel() for p in _untouched_parameters(model)) * FULL_BITS
    return total_bits / 8
