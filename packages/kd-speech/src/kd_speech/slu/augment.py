"""Data augmentation of two-stage textual KD for SLU: span masking of vq tokens, time and channel masking.

Kim, Kim, Shin & Lee, "Two-Stage Textual Knowledge Distillation for End-to-End Spoken Language Understanding",
ICASSP 2021 (arXiv 2010.13105), "+DA": vq-token span masking (static span 5, about 20 % of the tokens become
``[MASK]``, position 0 never), time masking of the speech BERT's hidden states (p = 0.5, span 10) and channel
masking (p = 0.4, span 5), masked spans set to zero and chosen per sequence.

How many spans, and where (the same rule for all three):

- a sequence has ``n`` maskable positions (code tokens other than position 0 and the special ids; the valid frames
  of a hidden-state sequence; its channels);
- the number of spans is ``k = floor(n * p / span + u)`` with ``u ~ U[0, 1)`` (stochastic rounding of
  ``n * p / span``, as the reference code does), capped at ``n // span``. So spans *start* at a rate of
  ``p / span`` per position (the reference's ``select_prob / max_span`` = 0.2 / 5);
- the ``k`` spans are placed uniformly at random *without overlapping* (the reference allows overlaps, so it covers
  a little less than ``p``); hence exactly ``k * span`` positions are masked and the expected covered fraction is
  ``p`` (a little less only where the cap binds);
- a sequence shorter than ``span`` uses one span of its own length (covered with probability ``p``).

Token spans run over the maskable positions in order, so a span that meets a special token inside an utterance
continues after it; in ordinary ``[CLS] codes [SEP] [PAD]...`` rows every span is a contiguous run of ``span``.
Everything is deterministic given a ``torch.Generator`` (drawn on the CPU); ``enabled=False`` returns the input
unchanged, and the module wrappers act only in training mode.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from kd_core.errors import ConfigError
from torch import nn

from kd_speech.models._checks import positive_int, probability
from kd_speech.models.speech_vocab import SpeechVocabulary

__all__ = ["HiddenAugment", "TokenSpanMask", "channel_mask", "span_cover", "span_mask_tokens", "time_mask"]


def span_cover(n: int, p: float, span: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A boolean ``[n]`` mask of non-overlapping spans covering about ``p`` of ``n`` positions (module docstring)."""
    if n <= 0:
        return torch.zeros(0, dtype=torch.bool)
    span = min(span, n)
    count = min(int(n * p / span + float(torch.rand((), generator=generator))), n // span)
    covered = torch.zeros(n, dtype=torch.bool)
    if count == 0:
        return covered
    # k non-overlapping spans of length s in n slots <-> k distinct values in range(n - k*(s-1))
    free = n - count * (span - 1)
    values = torch.randperm(free, generator=generator)[:count].sort().values
    starts = values + torch.arange(count) * (span - 1)
    covered[(starts[:, None] + torch.arange(span)).reshape(-1)] = True
    return covered


def _check_span(argument: str, p: float, span: int) -> None:
    probability(f"{argument} probability", p, closed=True)
    positive_int(f"{argument} span", span)


def _valid(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """The ``[B, T]`` boolean mask of valid frames (all frames without an attention mask), on the CPU."""
    if attention_mask is None:
        return torch.ones(hidden.shape[:2], dtype=torch.bool)
    if tuple(attention_mask.shape) != tuple(hidden.shape[:2]):
        raise ConfigError("attention_mask", f"a mask of shape {tuple(hidden.shape[:2])}", tuple(attention_mask.shape))
    return attention_mask.detach().cpu().bool()


def _check_hidden(hidden: object) -> torch.Tensor:
    if not isinstance(hidden, torch.Tensor) or hidden.dim() != 3 or not hidden.is_floating_point():
        received = f"{hidden.dtype} {tuple(hidden.shape)}" if isinstance(hidden, torch.Tensor) else hidden
        raise ConfigError("hidden", "a float tensor [B, T, D] of hidden states", received)
    return hidden


def _token_ids(mask_id: int | SpeechVocabulary, special_ids: Iterable[int] | None) -> tuple[int, list[int]]:
    if isinstance(mask_id, SpeechVocabulary):
        vocab = mask_id
        specials = list(range(vocab.NUM_SPECIAL)) if special_ids is None else [int(i) for i in special_ids]
        return vocab.MASK, sorted({*specials, vocab.MASK})
    if isinstance(mask_id, bool) or not isinstance(mask_id, int) or mask_id < 0:
        raise ConfigError("mask_id", "a SpeechVocabulary or the [MASK] id (an integer >= 0)", mask_id)
    if special_ids is None:
        raise ConfigError("special_ids", "the ids never to mask ([PAD], [CLS], [SEP], ...)", None,
                          hint="or pass a SpeechVocabulary as mask_id")
    return mask_id, sorted({*(int(i) for i in special_ids), mask_id})


def span_mask_tokens(input_ids: torch.Tensor, mask_id: int | SpeechVocabulary,
                     special_ids: Iterable[int] | None = None, span: int = 5, rate: float = 0.2,
                     generator: torch.Generator | None = None,
                     enabled: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(masked ids, masked positions)``: spans of ``span`` code tokens replaced by ``[MASK]``, ``rate`` of them.

    ``input_ids`` is ``[B, L]`` with ``[CLS]`` first. ``mask_id`` is the ``[MASK]`` id or a ``SpeechVocabulary``
    (then ``special_ids`` defaults to its five special ids). Position 0 and ``special_ids`` are never masked.
    """
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.is_floating_point():
        received = f"{input_ids.dtype} {tuple(input_ids.shape)}" if isinstance(input_ids, torch.Tensor) else input_ids
        raise ConfigError("input_ids", "an integer tensor [B, L] of vq-token ids", received)
    mask_value, specials = _token_ids(mask_id, special_ids)
    _check_span("token", rate, span)
    masked = torch.zeros(input_ids.shape, dtype=torch.bool)
    if not enabled or rate == 0.0 or input_ids.shape[1] < 2:
        return input_ids.clone(), masked.to(input_ids.device)
    ids = input_ids.detach().cpu()
    candidates = ~torch.isin(ids, torch.tensor(specials, dtype=ids.dtype))
    candidates[:, 0] = False
    for row in range(ids.shape[0]):
        positions = candidates[row].nonzero(as_tuple=True)[0]
        masked[row, positions[span_cover(len(positions), rate, span, generator)]] = True
    masked = masked.to(input_ids.device)
    return input_ids.masked_fill(masked, mask_value), masked


def time_mask(hidden: torch.Tensor, p: float = 0.5, span: int = 10, attention_mask: torch.Tensor | None = None,
              generator: torch.Generator | None = None, enabled: bool = True) -> torch.Tensor:
    """Hidden states ``[B, T, D]`` with spans of ``span`` valid frames zeroed, about ``p`` of each sequence's frames.

    Frames where ``attention_mask`` is 0 are never chosen (and are left as they are).
    """
    _check_hidden(hidden)
    _check_span("time", p, span)
    if not enabled or p == 0.0:
        return hidden
    valid = _valid(hidden, attention_mask)
    drop = torch.zeros(valid.shape, dtype=torch.bool)
    for row in range(valid.shape[0]):
        frames = valid[row].nonzero(as_tuple=True)[0]
        drop[row, frames[span_cover(len(frames), p, span, generator)]] = True
    return hidden.masked_fill(drop.to(hidden.device)[:, :, None], 0.0)


def channel_mask(hidden: torch.Tensor, p: float = 0.4, span: int = 5, generator: torch.Generator | None = None,
                 enabled: bool = True) -> torch.Tensor:
    """Hidden states ``[B, T, D]`` with spans of ``span`` channels zeroed at every frame, about ``p`` of ``D``.

    The channels are chosen per sequence.
    """
    _check_hidden(hidden)
    _check_span("channel", p, span)
    if not enabled or p == 0.0:
        return hidden
    batch, _, dim = hidden.shape
    drop = torch.stack([span_cover(dim, p, span, generator) for _ in range(batch)]) if batch else \
        torch.zeros((0, dim), dtype=torch.bool)
    return hidden.masked_fill(drop.to(hidden.device)[:, None, :], 0.0)


def _generator(seed: int | None) -> torch.Generator | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError("seed", "an integer or None (the global RNG)", seed)
    return torch.Generator().manual_seed(seed)


class TokenSpanMask(nn.Module):
    """:func:`span_mask_tokens` in training mode, the identity in eval mode.

    With ``seed`` the draws come from a private generator (its state is not part of the ``state_dict``), else from
    the global RNG.
    """

    def __init__(self, mask_id: int | SpeechVocabulary, special_ids: Iterable[int] | None = None, span: int = 5,
                 rate: float = 0.2, seed: int | None = None) -> None:
        super().__init__()
        self.mask_id, self.special_ids = _token_ids(mask_id, special_ids)
        _check_span("token", rate, span)
        self.span, self.rate = span, rate
        self.generator = _generator(seed)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The ids with spans masked (training) or unchanged (eval)."""
        if not self.training:
            return input_ids
        return span_mask_tokens(input_ids, self.mask_id, self.special_ids, self.span, self.rate, self.generator)[0]

    def extra_repr(self) -> str:
        return f"mask_id={self.mask_id}, span={self.span}, rate={self.rate}"


class HiddenAugment(nn.Module):
    """Time then channel masking of hidden states in training mode (the paper's values by default); identity in eval.

    A probability of 0 turns that masking off. ``seed`` as in :class:`TokenSpanMask`.
    """

    def __init__(self, time_p: float = 0.5, time_span: int = 10, channel_p: float = 0.4, channel_span: int = 5,
                 seed: int | None = None) -> None:
        super().__init__()
        _check_span("time", time_p, time_span)
        _check_span("channel", channel_p, channel_span)
        self.time_p, self.time_span, self.channel_p, self.channel_span = time_p, time_span, channel_p, channel_span
        self.generator = _generator(seed)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The masked hidden states (training) or ``hidden`` itself (eval)."""
        if not self.training:
            return hidden
        hidden = time_mask(hidden, self.time_p, self.time_span, attention_mask, self.generator)
        return channel_mask(hidden, self.channel_p, self.channel_span, self.generator)

    def extra_repr(self) -> str:
        return (f"time_p={self.time_p}, time_span={self.time_span}, channel_p={self.channel_p}, "
                f"channel_span={self.channel_span}")
