"""A torch ``Dataset`` over ``Utterance`` records, and a collate function that pads audio.

An item is ``{"audio": float32 [samples] at 16 kHz, "transcript": str, "label": int, "index": int}``
(``label`` is the intent's index in ``classes``, -1 for an utterance without an intent), plus ``"features"``
``[frames, bins]`` when a ``transform`` such as ``LogMel()`` is given. ``augment`` (e.g. ``Augment()``) is
applied to the audio before the transform, seeded by ``seed`` and the item's index.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from kd_core.errors import ConfigError
from torch.utils.data import Dataset

from kd_speech.data.audio import SAMPLE_RATE, Utterance, read_audio

__all__ = ["SpeechDataset", "collate_audio", "pad_sequences"]


class SpeechDataset(Dataset):
    """Utterances read from disk as 16 kHz waveforms with their transcript and intent id.

    ``classes``: the intent names in class-id order (default: the sorted intents present); an utterance
    whose intent is not among them is a ``ConfigError`` at construction. ``resample=False`` makes audio at
    another rate an error instead of resampling it.
    """

    def __init__(self, utterances: Sequence[Utterance], classes: Sequence[str] | None = None, *,
                 transform: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
                 augment: Callable[[torch.Tensor, int], torch.Tensor] | None = None, seed: int = 0,
                 resample: bool = True) -> None:
        self.utterances = list(utterances)
        present = sorted({u.intent for u in self.utterances if u.intent is not None})
        self.classes: tuple[str, ...] = tuple(classes) if classes is not None else tuple(present)
        self.class_to_id = {name: i for i, name in enumerate(self.classes)}
        unknown = sorted(set(present) - set(self.class_to_id))
        if unknown:
            raise ConfigError("intent", f"one of the {len(self.classes)} classes", unknown[:5])
        self.transform, self.augment, self.seed, self.resample = transform, augment, seed, resample

    def __len__(self) -> int:
        return len(self.utterances)

    def label(self, index: int) -> int:
        """The class id of an item (-1 without an intent), without reading its audio."""
        intent = self.utterances[index].intent
        return -1 if intent is None else self.class_to_id[intent]

    def __getitem__(self, index: int) -> dict[str, Any]:
        utterance = self.utterances[index]
        audio = read_audio(utterance.path, SAMPLE_RATE, resample=self.resample)
        if self.augment is not None:
            audio = self.augment(audio, self.seed * 1_000_003 + index)
        item: dict[str, Any] = {"audio": audio, "transcript": utterance.transcript, "label": self.label(index),
                                "index": index}
        if self.transform is not None:
            item["features"] = self.transform(audio, SAMPLE_RATE)
        return item


def pad_sequences(tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Tensors of shape ``[length, ...]`` zero-padded to ``[batch, longest, ...]``, with their lengths."""
    lengths = torch.tensor([t.shape[0] for t in tensors], dtype=torch.int64)
    padded = tensors[0].new_zeros((len(tensors), int(lengths.max()), *tensors[0].shape[1:]))
    for row, tensor in enumerate(tensors):
        padded[row, : tensor.shape[0]] = tensor
    return padded, lengths


def collate_audio(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A batch of ``SpeechDataset`` items: ``audio`` ``[batch, samples]`` zero-padded with ``lengths``,
    ``label`` and ``index`` int64 ``[batch]``, ``transcript`` a list, and ``features`` ``[batch, frames, bins]``
    with ``feature_lengths`` when items carry features."""
    if not items:
        raise ConfigError("items", "at least one dataset item to collate", 0)
    audio, lengths = pad_sequences([item["audio"] for item in items])
    batch: dict[str, Any] = {"audio": audio, "lengths": lengths,
                             "label": torch.tensor([int(item["label"]) for item in items], dtype=torch.int64),
                             "index": torch.tensor([int(item.get("index", -1)) for item in items], dtype=torch.int64),
                             "transcript": [item["transcript"] for item in items]}
    if all("features" in item for item in items):
        batch["features"], batch["feature_lengths"] = pad_sequences([item["features"] for item in items])
    return batch
