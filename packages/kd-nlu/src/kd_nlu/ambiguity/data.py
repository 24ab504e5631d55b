"""Tasks with human label distributions for the ambiguity methods, and their seeded splits.

The default task is the VADER lexicon (``kd_nlu.data.vader``): every token has 10 human ratings,
turned into a negative/neutral/positive distribution. Models train on the majority label (ties drawn
by a seeded generator, see ``kd_core.ambiguity_metrics.majority_labels``) and are scored against the
full human distribution, as ChaosNLI-style evaluation does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from kd_core.ambiguity_metrics import majority_labels
from kd_core.errors import ConfigError, DataError

from kd_nlu.data.text import TextDataset


@dataclass
class AmbiguityTask:
    """Texts, their human label distributions ``[N, C]`` and gold (majority) labels."""

    texts: list[str]
    human: torch.Tensor
    labels: list[int]
    label_names: list[str]

    def __post_init__(self) -> None:
        if not self.texts:
            raise DataError("texts", "at least one text", 0)
        if self.human.dim() != 2 or len(self.human) != len(self.texts) or len(self.labels) != len(self.texts):
            raise DataError("human", f"one distribution and one label per text ({len(self.texts)})",
                            {"human": tuple(self.human.shape), "labels": len(self.labels)})
        if self.human.shape[1] != len(self.label_names):
            raise DataError("label_names", f"one name per class ({self.human.shape[1]})", self.label_names)

    @classmethod
    def from_distributions(cls, texts: Sequence[str], human: torch.Tensor, label_names: Sequence[str],
                           tie_seed: int | None = 0) -> AmbiguityTask:
        """A task whose gold labels are the majority classes of ``human`` (seeded tie-breaking)."""
        human = torch.as_tensor(human, dtype=torch.float32)
        return cls(list(texts), human, majority_labels(human, tie_seed).tolist(), list(label_names))

    @property
    def num_labels(self) -> int:
        """Number of classes."""
        return self.human.shape[1]

    def subset(self, indices: Sequence[int]) -> AmbiguityTask:
        """The samples at ``indices``, in that order."""
        index = list(indices)
        return AmbiguityTask([self.texts[i] for i in index], self.human[index], [self.labels[i] for i in index],
                             self.label_names)

    def dataset(self, tokenizer: Any, max_length: int = 64) -> TextDataset:
        """A ``TextDataset`` of the texts with gold labels and the human distributions as ``soft_label``."""
        return TextDataset(self.texts, self.labels, tokenizer, max_length=max_length, soft_labels=self.human)


def split_task(task: AmbiguityTask, train_size: int, val_size: int, test_size: int,
               seed: int = 0) -> dict[str, AmbiguityTask]:
    """Disjoint ``train``/``val``/``test`` subsets drawn from a seeded permutation."""
    sizes = {"train_size": train_size, "val_size": val_size, "test_size": test_size}
    for argument, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(argument, "a positive integer", value)
    if sum(sizes.values()) > len(task.texts):
        raise ConfigError("train_size + val_size + test_size", f"at most the task's {len(task.texts)} samples",
                          sum(sizes.values()))
    order = torch.randperm(len(task.texts), generator=torch.Generator().manual_seed(seed)).tolist()
    return {"train": task.subset(order[:train_size]),
            "val": task.subset(order[train_size:train_size + val_size]),
            "test": task.subset(order[train_size + val_size:train_size + val_size + test_size])}


def vader_task(tie_seed: int | None = 0) -> AmbiguityTask:
    """The VADER lexicon as a 3-class task with human distributions (from ``kd_nlu.data.vader``)."""
    from kd_nlu.data.vader import load_vader_distributions

    tokens, probs = load_vader_distributions()
    return AmbiguityTask.from_distributions(tokens, probs, ["negative", "neutral", "positive"], tie_seed)
