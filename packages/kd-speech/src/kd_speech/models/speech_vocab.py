"""The vocabulary of a speech BERT over vq-wav2vec tokens: five special tokens, then the codes.

Baevski, Schneider, Auli, "vq-wav2vec: Self-Supervised Learning of Discrete Speech Representations", ICLR 2020
(arXiv 1910.05453), section 4: a BERT is trained on the quantized tokens. Ids 0..4 are ``[PAD]``, ``[UNK]``,
``[CLS]``, ``[SEP]`` and ``[MASK]``; the codes follow. Either every code ``0..num_codes-1`` gets an id
(``code + 5``), or, with ``codes``, only the listed ones do (``SpeechVocabulary.from_sequences`` keeps the
codes seen in a corpus, which matters when ``num_codes`` is ``V**G``, 102,400 for the paper's 2 x 320) and
the others read as ``[UNK]``. The vocabulary is stored in a ``BertConfig`` (``vq_num_codes``, ``vq_codes``)
so that it travels with ``save_pretrained``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from kd_core.errors import ConfigError

from kd_speech.models._checks import positive_int

__all__ = ["SPECIAL_TOKENS", "SpeechVocabulary"]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _ids(tokens: torch.Tensor | Sequence[int], argument: str) -> torch.Tensor:
    if isinstance(tokens, torch.Tensor):
        if tokens.dim() != 1 or tokens.is_floating_point():
            raise ConfigError(argument, "a 1-D integer tensor of vq tokens", f"{tokens.dtype} {tuple(tokens.shape)}")
        return tokens.long().cpu()
    if isinstance(tokens, str | bytes) or not isinstance(tokens, Sequence):
        raise ConfigError(argument, "a sequence of vq token ids", type(tokens).__name__)
    if any(isinstance(t, bool) or not isinstance(t, int) for t in tokens):
        raise ConfigError(argument, "integer vq token ids", list(tokens)[:10])
    return torch.tensor(list(tokens), dtype=torch.long)


class SpeechVocabulary:
    """Maps vq token ids to BERT input ids and back (see the module docstring)."""

    PAD, UNK, CLS, SEP, MASK = range(5)
    NUM_SPECIAL = len(SPECIAL_TOKENS)

    def __init__(self, num_codes: int, codes: Iterable[int] | None = None) -> None:
        self.num_codes = positive_int("num_codes", num_codes)
        if codes is None:
            self.codes: tuple[int, ...] | None = None
            self._lookup: torch.Tensor | None = None
        else:
            listed = sorted({int(c) for c in codes})
            if not listed or listed[0] < 0 or listed[-1] >= num_codes:
                raise ConfigError("codes", f"a non-empty set of codes in [0, {num_codes})", listed[:10])
            self.codes = tuple(listed)
            self._lookup = torch.full((num_codes,), self.UNK, dtype=torch.long)
            self._lookup[torch.tensor(listed)] = torch.arange(len(listed)) + self.NUM_SPECIAL

    @property
    def size(self) -> int:
        """Number of BERT input ids (the ``vocab_size`` of its config)."""
        return self.NUM_SPECIAL + (self.num_codes if self.codes is None else len(self.codes))

    def __len__(self) -> int:
        return self.size

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SpeechVocabulary) and (self.num_codes, self.codes) == (other.num_codes, other.codes)

    def __hash__(self) -> int:
        return hash((self.num_codes, self.codes))

    @classmethod
    def from_sequences(cls, sequences: Iterable[torch.Tensor | Sequence[int]], num_codes: int,
                       min_count: int = 1) -> SpeechVocabulary:
        """The codes seen at least ``min_count`` times in ``sequences`` of vq tokens."""
        positive_int("min_count", min_count)
        counts: Counter[int] = Counter()
        for index, sequence in enumerate(sequences):
            counts.update(_ids(sequence, f"sequences[{index}]").tolist())
        return cls(num_codes, [code for code, count in counts.items() if count >= min_count])

    def encode(self, tokens: torch.Tensor | Sequence[int], max_length: int | None = None,
               add_sep: bool = True) -> torch.Tensor:
        """BERT input ids ``[CLS] codes... [SEP]`` of one utterance's vq tokens, cut to ``max_length`` in all."""
        ids = _ids(tokens, "tokens")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.num_codes):
            raise ConfigError("tokens", f"vq token ids in [0, {self.num_codes})", (int(ids.min()), int(ids.max())))
        body = ids + self.NUM_SPECIAL if self._lookup is None else self._lookup[ids]
        extra = 2 if add_sep else 1
        if max_length is not None:
            positive_int("max_length", max_length, minimum=extra)
            body = body[: max_length - extra]
        parts = [torch.tensor([self.CLS]), body] + ([torch.tensor([self.SEP])] if add_sep else [])
        return torch.cat(parts)

    def decode(self, input_ids: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """vq tokens of BERT input ids; special ids are dropped, except ``[UNK]`` and ``[MASK]``, which read -1."""
        ids = _ids(input_ids, "input_ids")
        keep = (ids >= self.NUM_SPECIAL) | (ids == self.UNK) | (ids == self.MASK)
        ids = ids[keep]
        codes = ids - self.NUM_SPECIAL if self.codes is None else torch.tensor(
            [self.codes[i - self.NUM_SPECIAL] if i >= self.NUM_SPECIAL else -1 for i in ids.tolist()],
            dtype=torch.long)
        return torch.where(ids >= self.NUM_SPECIAL, codes, torch.full_like(ids, -1))

    def batch(self, sequences: Sequence[torch.Tensor | Sequence[int]],
              max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask)`` ``[B, L]`` of several utterances, padded with ``[PAD]``."""
        if not sequences:
            raise ConfigError("sequences", "at least one sequence of vq tokens", 0)
        encoded = [self.encode(s, max_length=max_length) for s in sequences]
        length = max(len(e) for e in encoded)
        input_ids = torch.full((len(encoded), length), self.PAD, dtype=torch.long)
        mask = torch.zeros((len(encoded), length), dtype=torch.long)
        for row, ids in enumerate(encoded):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        return input_ids, mask

    def to_config(self) -> dict[str, Any]:
        """The entries stored in a ``BertConfig``."""
        return {"vq_num_codes": self.num_codes, "vq_codes": list(self.codes) if self.codes is not None else None}

    @classmethod
    def from_config(cls, config: Any) -> SpeechVocabulary:
        """The vocabulary stored by ``to_config`` in a config (a ``BertConfig`` or a mapping)."""
        if isinstance(config, Mapping):
            num_codes, codes = config.get("vq_num_codes"), config.get("vq_codes")
        else:
            num_codes, codes = getattr(config, "vq_num_codes", None), getattr(config, "vq_codes", None)
        if num_codes is None:
            raise ConfigError("config", "a speech BERT config (with vq_num_codes)", type(config).__name__)
        return cls(num_codes, codes)
