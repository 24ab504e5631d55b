"""A small self-supervised pre-training loop for vq-wav2vec: Adam on random crops, codebook usage at the end.

Baevski, Schneider, Auli, "vq-wav2vec: Self-Supervised Learning of Discrete Speech Representations", ICLR 2020
(arXiv 1910.05453). Each step draws ``batch_size`` waveforms (a fresh shuffle every pass over the data), crops
them to a common length (the shortest of the batch, at most ``crop`` samples, at random offsets, as the
reference recipe does), takes one Adam step on the model's loss and anneals the Gumbel temperature. Everything
random (order, crops, Gumbel noise, distractors) comes from ``seed``; the caller's global RNG state is restored
afterwards. The encoder learns at a tenth of the rate by default (see ``pretrain_vq_wav2vec``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from kd_core.errors import ConfigError, DataError, NonFiniteLossError

from kd_speech.models._checks import non_negative_float, positive_float, positive_int
from kd_speech.models.codebook import CodebookUsage, codebook_usage
from kd_speech.models.vq_wav2vec import VqWav2Vec

__all__ = ["PretrainResult", "measure_usage", "pretrain_vq_wav2vec"]


@dataclass
class PretrainResult:
    """Per-step ``losses`` (total), ``contrastive`` and ``quantizer`` losses, ``temperatures`` (None for k-means)
    and ``code_perplexities``, and the codebook ``usage`` over the training waveforms after the last step."""

    losses: list[float] = field(default_factory=list)
    contrastive: list[float] = field(default_factory=list)
    quantizer: list[float] = field(default_factory=list)
    temperatures: list[float | None] = field(default_factory=list)
    code_perplexities: list[float] = field(default_factory=list)
    usage: CodebookUsage | None = None


def _as_wave(item: object, index: int) -> torch.Tensor:
    if isinstance(item, np.ndarray):
        item = torch.from_numpy(item)
    if not isinstance(item, torch.Tensor) or item.dim() != 1 or not item.is_floating_point():
        shape = tuple(item.shape) if isinstance(item, torch.Tensor) else type(item).__name__
        raise DataError(f"waves[{index}]", "a 1-D floating-point waveform", shape)
    return item.float()


def _passes(waves: Iterable[torch.Tensor] | Sequence[torch.Tensor],
            generator: torch.Generator) -> Iterator[tuple[int, torch.Tensor]]:
    """``(index, wave)`` forever: shuffled passes over a sized dataset, or repeated passes over an iterable."""
    sized = hasattr(waves, "__len__") and hasattr(waves, "__getitem__")
    while True:
        seen = 0
        if sized:
            order = torch.randperm(len(waves), generator=generator).tolist()  # type: ignore[arg-type]
            items: Iterable[tuple[int, object]] = ((i, waves[i]) for i in order)  # type: ignore[index]
        else:
            items = enumerate(waves)
        for index, item in items:
            seen += 1
            yield index, _as_wave(item, index)
        if not seen:
            raise DataError("waves", "at least one waveform (an iterable must yield again on every pass)", 0)


def _crop_batch(batch: list[tuple[int, torch.Tensor]], crop: int | None, minimum: int,
                generator: torch.Generator) -> torch.Tensor:
    length = min(len(wave) for _, wave in batch)
    if length < minimum:
        index = min(batch, key=lambda item: len(item[1]))[0]
        raise DataError(f"waves[{index}]", f"at least {minimum} samples", length)
    if crop is not None:
        length = min(length, crop)
    rows = []
    for _, wave in batch:
        start = int(torch.randint(0, len(wave) - length + 1, (1,), generator=generator))
        rows.append(wave[start:start + length])
    return torch.stack(rows)


@torch.no_grad()
def measure_usage(model: VqWav2Vec, waves: Iterable[torch.Tensor], limit: int | None = None) -> CodebookUsage:
    """Codebook usage of the model's deterministic tokens over ``waves`` (the first ``limit`` of them)."""
    device = next(model.parameters()).device
    collected = []
    for index, item in enumerate(waves):
        if limit is not None and index >= limit:
            break
        wave = _as_wave(item, index)
        if len(wave) >= model.config.receptive_field:
            collected.append(model.indices(wave.to(device)).reshape(-1, model.config.groups).cpu())
    if not collected:
        raise DataError("waves", f"at least one waveform of {model.config.receptive_field} samples or more", 0)
    return codebook_usage(torch.cat(collected), model.config.num_vars)


def pretrain_vq_wav2vec(model: VqWav2Vec, waves: Iterable[torch.Tensor] | Sequence[torch.Tensor], steps: int, *,
                        lr: float = 1e-3, batch_size: int = 4, crop: int | None = 16000, seed: int = 0,
                        weight_decay: float = 0.0, grad_clip: float | None = None, encoder_lr_scale: float = 0.1,
                        usage_limit: int | None = 256) -> PretrainResult:
    """Train ``model`` for ``steps`` Adam updates on 1-D waveforms; returns losses and the final codebook usage.

    ``waves``: a sized dataset (indexed, shuffled every pass) or any re-iterable of 1-D float tensors or arrays
    at the model's sample rate. ``crop`` caps the samples per waveform per step (None: the batch's shortest).
    ``usage_limit`` caps the waveforms measured for the final usage (None: all). The model is left in the mode
    it came in.

    The feature encoder learns at ``lr * encoder_lr_scale``. On small data the binary contrastive loss first
    rewards features that do not vary over time (the frames' scores then all equal the base rate of positives),
    and an encoder at the full Adam rate gets there within a few dozen steps, collapsing the codebook to one or
    two codewords; at 0.1 of the rate the aggregator and predictor learn first and usage holds (1.0 restores the
    paper's single rate).
    """
    if not isinstance(model, VqWav2Vec):
        raise ConfigError("model", "a VqWav2Vec", type(model).__name__)
    positive_int("steps", steps)
    positive_int("batch_size", batch_size)
    positive_float("lr", lr)
    non_negative_float("weight_decay", weight_decay)
    non_negative_float("encoder_lr_scale", encoder_lr_scale)
    if crop is not None:
        positive_int("crop", crop, minimum=model.config.min_samples())
    if grad_clip is not None:
        positive_float("grad_clip", grad_clip)
    device = next(model.parameters()).device
    result = PretrainResult()
    was_training = model.training
    encoder = list(model.feature_extractor.parameters())
    encoder_ids = {id(p) for p in encoder}
    rest = [p for p in model.parameters() if id(p) not in encoder_ids]
    optimizer = torch.optim.Adam([{"params": encoder, "lr": lr * encoder_lr_scale}, {"params": rest}], lr=lr,
                                 weight_decay=weight_decay)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        stream = _passes(waves, generator)
        model.train()
        for step in range(steps):
            model.set_num_updates(step)
            batch = [next(stream) for _ in range(batch_size)]
            wave = _crop_batch(batch, crop, model.config.min_samples(), generator).to(device)
            out = model(wave)
            value = float(out.loss.detach())
            if not math.isfinite(value):
                raise NonFiniteLossError("loss", "a finite value", value, hint=f"at step {step}; try a lower lr")
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            result.losses.append(value)
            result.contrastive.append(float(out.contrastive.detach()))
            result.quantizer.append(float(out.quantizer_loss.detach()))
            result.temperatures.append(out.temperature)
            result.code_perplexities.append(float(out.code_perplexity))
        model.set_num_updates(steps)
        model.eval()
        result.usage = measure_usage(model, _first_pass(waves), limit=usage_limit)
    model.train(was_training)
    return result


def _first_pass(waves: Iterable[torch.Tensor] | Sequence[torch.Tensor]) -> Iterable[object]:
    if hasattr(waves, "__len__") and hasattr(waves, "__getitem__"):
        return (waves[i] for i in range(len(waves)))  # type: ignore[arg-type, index]
    return waves
