"""A small self-supervised pre-training loop for vq-wav2vec: Adam on random crops, codebook usage at the end.

Baevski, Schneider, Auli, "vq-wav2vec: Self-Supervised Learning of Discrete Speech Representations", ICLR 2020
(arXiv 1910.05453). Each step draws ``batch_size`` waveforms (a fresh shuffle every pass over the data), crops
them to a common length (the shortest of the batch, at most ``crop`` samples, at random offsets, as the
reference recipe does), takes one Adam step on the model's loss and anneals the Gumbel temperature. Everything
random (order, crops, Gumbel noise, distractors) comes from ``seed``; the caller's global RNG state is restored
afterwards. The encoder learns at a tenth of the rate by default (see ``pretrain_vq_wav2vec``).

:class:`VqPretrainer` takes the same updates one at a time and holds their whole state (model, optimizer, random
streams, data position), for runs that checkpoint, resume and measure between steps (``vq-wav2vec-pretrain``);
``pretrain_vq_wav2vec`` loops over it, with the same numbers it gave before that class existed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from kd_core.errors import ConfigError, DataError, NonFiniteLossError

from kd_speech.models._checks import non_negative_float, positive_float, positive_int
from kd_speech.models.codebook import CodebookUsage, codebook_usage
from kd_speech.models.vq_wav2vec import VqWav2Vec

__all__ = ["PretrainResult", "PretrainStep", "VqPretrainer", "measure_usage", "pretrain_vq_wav2vec"]


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


class _Stream:
    """``(index, wave)`` forever: shuffled passes over a sized dataset, or repeated passes over an iterable.

    A pass's order is drawn from ``generator`` when its first item is asked for (as a generator function would
    draw it). ``state_dict`` / ``load_state_dict`` hold the pass under way (its order and position), so that a
    checkpointed run resumes with the same items."""

    def __init__(self, waves: Iterable[torch.Tensor] | Sequence[torch.Tensor], generator: torch.Generator) -> None:
        self.waves, self.generator = waves, generator
        self.sized = hasattr(waves, "__len__") and hasattr(waves, "__getitem__")
        self.order: list[int] | None = None  # the pass under way (sized data); None: a new pass starts next
        self.position = 0  # items of the pass under way already given
        self._items: Iterator[tuple[int, object]] | None = None

    def _start_pass(self) -> None:
        if self.sized:
            self.order = torch.randperm(len(self.waves), generator=self.generator).tolist()  # type: ignore[arg-type]
            self._items = ((i, self.waves[i]) for i in self.order[self.position:])  # type: ignore[index]
        else:
            self.order = []
            self._items = itertools.islice(enumerate(self.waves), self.position, None)

    def __next__(self) -> tuple[int, torch.Tensor]:
        if self.order is None:
            self._start_pass()
        elif self._items is None:  # restored mid-pass: the same order, from the saved position
            self._items = (((i, self.waves[i]) for i in self.order[self.position:]) if self.sized  # type: ignore[index]
                           else itertools.islice(enumerate(self.waves), self.position, None))
        assert self._items is not None
        for index, item in self._items:
            self.position += 1
            return index, _as_wave(item, index)
        if not self.position:
            raise DataError("waves", "at least one waveform (an iterable must yield again on every pass)", 0)
        self.order, self.position, self._items = None, 0, None
        return next(self)

    def state_dict(self) -> dict[str, Any]:
        """The pass under way: its order (sized data) and how many of its items were given."""
        return {"order": self.order, "position": self.position}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Go on from a ``state_dict``."""
        self.order = None if state["order"] is None else [int(i) for i in state["order"]]
        self.position, self._items = int(state["position"]), None


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


@dataclass(frozen=True)
class PretrainStep:
    """One update's numbers: ``step`` (0-based), total ``loss``, ``contrastive`` and ``quantizer`` losses, the
    Gumbel ``temperature`` it ran at (None for k-means) and the batch's ``code_perplexity`` (summed over groups)."""

    step: int
    loss: float
    contrastive: float
    quantizer: float
    temperature: float | None
    code_perplexity: float


class VqPretrainer:
    """The pre-training of ``pretrain_vq_wav2vec`` one update at a time, with its whole state for checkpoints.

    ``train_step()`` takes the next Adam update; ``finish()`` sets the Gumbel temperature to its value after the
    last update and leaves the model in eval mode. Every random draw (order, crops, Gumbel noise, distractors,
    dropout) comes from the trainer's own streams, seeded by ``seed``: the caller's global RNG state is the same
    after each call as before it, and something else drawing random numbers between two steps (a usage
    measurement, say) changes nothing. ``state_dict()`` / ``load_state_dict()`` hold the model, the optimizer,
    both random streams, the position in the data and the step count, so that a run stopped after any step and
    resumed from its state ends with the same weights as one that was not stopped (same device).
    """

    def __init__(self, model: VqWav2Vec, waves: Iterable[torch.Tensor] | Sequence[torch.Tensor], *,
                 lr: float = 1e-3, batch_size: int = 4, crop: int | None = 16000, seed: int = 0,
                 weight_decay: float = 0.0, grad_clip: float | None = None, encoder_lr_scale: float = 0.1) -> None:
        if not isinstance(model, VqWav2Vec):
            raise ConfigError("model", "a VqWav2Vec", type(model).__name__)
        positive_int("batch_size", batch_size)
        positive_float("lr", lr)
        non_negative_float("weight_decay", weight_decay)
        non_negative_float("encoder_lr_scale", encoder_lr_scale)
        if crop is not None:
            positive_int("crop", crop, minimum=model.config.min_samples())
        if grad_clip is not None:
            positive_float("grad_clip", grad_clip)
        self.model, self.waves = model, waves
        self.batch_size, self.crop, self.grad_clip = batch_size, crop, grad_clip
        self.step = 0
        self.device = next(model.parameters()).device
        encoder = list(model.feature_extractor.parameters())
        encoder_ids = {id(p) for p in encoder}
        rest = [p for p in model.parameters() if id(p) not in encoder_ids]
        self.optimizer = torch.optim.Adam([{"params": encoder, "lr": lr * encoder_lr_scale}, {"params": rest}],
                                          lr=lr, weight_decay=weight_decay)
        self._devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=self._devices):
            torch.manual_seed(seed)
            self._rng = self._global_rng()
        self.generator = torch.Generator().manual_seed(seed)
        self._stream = _Stream(waves, self.generator)

    def _global_rng(self) -> dict[str, torch.Tensor]:
        state = {"cpu": torch.get_rng_state()}
        if self._devices:
            state["cuda"] = torch.cuda.get_rng_state(self._devices[0])
        return state

    def _set_global_rng(self, state: Mapping[str, torch.Tensor]) -> None:
        torch.set_rng_state(state["cpu"])
        if self._devices and "cuda" in state:
            torch.cuda.set_rng_state(state["cuda"], self._devices[0])

    def train_step(self) -> PretrainStep:
        """One Adam update on the next batch (``NonFiniteLossError`` before a non-finite update)."""
        model, step = self.model, self.step
        with torch.random.fork_rng(devices=self._devices):
            self._set_global_rng(self._rng)
            model.train()
            model.set_num_updates(step)
            batch = [next(self._stream) for _ in range(self.batch_size)]
            wave = _crop_batch(batch, self.crop, model.config.min_samples(), self.generator).to(self.device)
            out = model(wave)
            value = float(out.loss.detach())
            if not math.isfinite(value):
                raise NonFiniteLossError("loss", "a finite value", value, hint=f"at step {step}; try a lower lr")
            self.optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            if self.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
            self.optimizer.step()
            self._rng = self._global_rng()
        self.step = step + 1
        return PretrainStep(step=step, loss=value, contrastive=float(out.contrastive.detach()),
                            quantizer=float(out.quantizer_loss.detach()), temperature=out.temperature,
                            code_perplexity=float(out.code_perplexity))

    def finish(self) -> VqWav2Vec:
        """Anneal the temperature to its value after the last update and put the model in eval mode."""
        self.model.set_num_updates(self.step)
        return self.model.eval()

    def state_dict(self) -> dict[str, Any]:
        """Model, optimizer, random streams, data position and step count (tensors, lists and numbers)."""
        return {"step": self.step, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "rng": dict(self._rng), "generator": self.generator.get_state(), "stream": self._stream.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Go on from a ``state_dict`` of a trainer built with the same model, data and settings."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._rng = {k: v.clone() for k, v in state["rng"].items()}
        self.generator.set_state(state["generator"])
        self._stream.load_state_dict(state["stream"])
        self.step = int(state["step"])
        self.model.set_num_updates(self.step)


def pretrain_vq_wav2vec(model: VqWav2Vec, waves: Iterable[torch.Tensor] | Sequence[torch.Tensor], steps: int, *,
                        lr: float = 1e-3, batch_size: int = 4, crop: int | None = 16000, seed: int = 0,
                        weight_decay: float = 0.0, grad_clip: float | None = None, encoder_lr_scale: float = 0.1,
                        usage_limit: int | None = 256) -> PretrainResult:
    """Train ``model`` for ``steps`` Adam updates on 1-D waveforms; returns losses and the final codebook usage.

    ``waves``: a sized dataset (indexed, shuffled every pass) or any re-iterable of 1-D float tensors or arrays
    at the model's sample rate. ``crop`` caps the samples per waveform per step (None: the batch's shortest).
    ``usage_limit`` caps the waveforms measured for the final usage (None: all). The model is left in the mode
    it came in. (:class:`VqPretrainer` runs the same updates one at a time, with checkpointable state.)

    The feature encoder learns at ``lr * encoder_lr_scale``. On small data the binary contrastive loss first
    rewards features that do not vary over time (the frames' scores then all equal the base rate of positives),
    and an encoder at the full Adam rate gets there within a few dozen steps, collapsing the codebook to one or
    two codewords; at 0.1 of the rate the aggregator and predictor learn first and usage holds (1.0 restores the
    paper's single rate).
    """
    if not isinstance(model, VqWav2Vec):
        raise ConfigError("model", "a VqWav2Vec", type(model).__name__)
    positive_int("steps", steps)
    trainer = VqPretrainer(model, waves, lr=lr, batch_size=batch_size, crop=crop, seed=seed,
                           weight_decay=weight_decay, grad_clip=grad_clip, encoder_lr_scale=encoder_lr_scale)
    was_training = model.training
    result = PretrainResult()
    for _ in range(steps):
        done = trainer.train_step()
        result.losses.append(done.loss)
        result.contrastive.append(done.contrastive)
        result.quantizer.append(done.quantizer)
        result.temperatures.append(done.temperature)
        result.code_perplexities.append(done.code_perplexity)
    trainer.finish()
    result.usage = measure_usage(model, _first_pass(waves), limit=usage_limit)
    model.train(was_training)
    return result


def _first_pass(waves: Iterable[torch.Tensor] | Sequence[torch.Tensor]) -> Iterable[object]:
    if hasattr(waves, "__len__") and hasattr(waves, "__getitem__"):
        return (waves[i] for i in range(len(waves)))  # type: ignore[arg-type, index]
    return waves
