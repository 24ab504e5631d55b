"""Where teacher knowledge comes from: a frozen teacher, a co-trained teacher, a disk cache, an ensemble.

Every signal is called as ``signal(batch, progress)`` and returns ``{tap: tensor}`` with at least
``"logits"``. The engine tells a signal which taps its objective reads with ``bind(taps, forward)``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from kd_core.errors import CacheError, CheckpointError, ConfigError
from kd_core.objective import Objective
from kd_core.taps import LOGITS, TapSet

Batch = Mapping[str, Any]
Forward = Callable[[nn.Module, Batch], Any]
TeacherOutput = dict[str, torch.Tensor]


def default_forward(model: nn.Module, batch: Batch) -> Any:
    """Call ``model(batch["input"])``: the default way kd feeds a batch to a model."""
    return model(batch["input"])


@runtime_checkable
class Signal(Protocol):
    """A source of teacher outputs."""

    trainable: bool

    def bind(self, taps: Sequence[str], forward: Forward) -> None:
        """Declare the taps the objective needs and how to feed a batch to a model."""

    def __call__(self, batch: Batch, progress: float = 0.0) -> TeacherOutput:
        """Teacher outputs for this batch."""


class FrozenTeacher:
    """A fixed, pretrained teacher: eval mode, no gradients (run under ``torch.no_grad``)."""

    trainable = False

    def __init__(self, model: nn.Module, forward: Forward | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise ConfigError("teacher", "a torch.nn.Module", type(model).__name__)
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.forward = forward
        self._taps = TapSet(model, [])

    def bind(self, taps: Sequence[str], forward: Forward) -> None:
        """Hook the taps the objective reads."""
        self.forward = self.forward or forward
        self._taps = TapSet(self.model, taps)

    def to(self, device: torch.device | str) -> FrozenTeacher:
        """Move the teacher to ``device``."""
        self.model.to(device)
        return self

    def __call__(self, batch: Batch, progress: float = 0.0) -> TeacherOutput:
        if self.model.training:  # only when someone switched it back: eval() walks every submodule
            self.model.eval()
        # no_grad, not inference_mode: its outputs may be saved for the student's backward without a copy
        with torch.no_grad():
            return self._taps.run(self.forward or default_forward, self.model, batch)


class TrainableTeacher:
    """A teacher trained alongside the student (online KD, e.g. DML and BD-KD).

    ``objective`` is the teacher's own loss; it sees the teacher's outputs as "student" and the
    (detached) student outputs as "teacher". The engine steps ``optimizer`` with the student's.
    """

    trainable = True

    def __init__(self, model: nn.Module, objective: Objective,
                 optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] | None = None,
                 forward: Forward | None = None) -> None:
        self.model = model
        self.objective = objective
        self.forward = forward
        self.make_optimizer = optimizer or (lambda params: torch.optim.AdamW(params, lr=1e-3))
        self.optimizer: torch.optim.Optimizer | None = None
        self._taps = TapSet(model, objective.student_taps)

    def bind(self, taps: Sequence[str], forward: Forward) -> None:
        """Hook the taps both objectives read; build the teacher's optimizer."""
        self.forward = self.forward or forward
        self._taps = TapSet(self.model, [*taps, *self.objective.student_taps])
        params = [*self.model.parameters(), *self.objective.parameters()]
        self.optimizer = self.make_optimizer(params)

    def __call__(self, batch: Batch, progress: float = 0.0) -> TeacherOutput:
        if not self.model.training:
            self.model.train()
        return self._taps.run(self.forward or default_forward, self.model, batch)


def _fingerprint(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


class CachedTeacher:
    """Teacher outputs computed once, stored on disk, and served by sample id and augmentation seed.

    Batches must carry ``id_key`` (default ``"index"``: the sample's position in its dataset) and,
    when inputs are augmented, ``seed_key`` (the augmentation seed of that view). ``augmentation``
    describes the augmentation setting (any JSON-able value); a cache built under one setting refuses
    to serve under another. With ``top_k``, logits keep only the k largest entries; the remaining
    probability mass is spread evenly over the other classes, which is exact for the top-k
    probabilities at temperature 1.
    """

    trainable = False
    FORMAT = 1

    def __init__(self, teacher: FrozenTeacher, directory: str | os.PathLike, augmentation: Any = "none",
                 top_k: int | None = None, id_key: str = "index", seed_key: str = "aug_seed") -> None:
        if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
            raise ConfigError("top_k", "a positive integer or None", top_k)
        self.teacher = teacher
        self.directory = Path(directory)
        self.augmentation = augmentation
        self.top_k = top_k
        self.id_key, self.seed_key = id_key, seed_key
        self.taps: list[str] = [LOGITS]
        self._rows: dict[tuple[int, int], int] | None = None
        self._store: dict[str, torch.Tensor] = {}
        self._classes = 0

    # -- building -----------------------------------------------------------------------------
    def bind(self, taps: Sequence[str], forward: Forward) -> None:
        """Record the taps to cache and hook them on the teacher."""
        self.taps = list(dict.fromkeys([LOGITS, *taps]))
        self.teacher.bind(self.taps, forward)

    @property
    def meta_path(self) -> Path:
        """The cache's manifest."""
        return self.directory / "meta.json"

    def exists(self) -> bool:
        """Whether a complete cache is on disk."""
        return self.meta_path.is_file()

    def _key(self, batch: Batch) -> list[tuple[int, int]]:
        if self.id_key not in batch:
            raise CacheError(f"batch[{self.id_key!r}]", "sample ids in every batch for the teacher cache",
                             sorted(batch))
        ids = torch.as_tensor(batch[self.id_key]).reshape(-1).tolist()
        seeds = batch.get(self.seed_key)
        seeds = [0] * len(ids) if seeds is None else torch.as_tensor(seeds).reshape(-1).tolist()
        return list(zip((int(i) for i in ids), (int(s) for s in seeds)))

    def build(self, batches: Iterable[Batch], progress: Callable[[int], None] | None = None) -> None:
        """Run the teacher once over ``batches`` and write the cache atomically."""
        keys: list[tuple[int, int]] = []
        chunks: dict[str, list[torch.Tensor]] = {}
        for batch in batches:
            keys.extend(self._key(batch))
            out = self.teacher(batch)
            for tap in self.taps:
                chunks.setdefault(tap, []).append(out[tap].detach().float().cpu())
            if progress is not None:
                progress(len(keys))
        if not keys:
            raise CacheError("batches", "at least one batch to cache", 0)
        tensors: dict[str, torch.Tensor] = {}
        for tap, parts in chunks.items():
            full = torch.cat(parts)
            if tap == LOGITS and self.top_k is not None and self.top_k < full.shape[-1]:
                log_p = torch.log_softmax(full, dim=-1)
                values, indices = log_p.topk(self.top_k, dim=-1)
                tensors["logits.topk_values"] = values.contiguous()
                tensors["logits.topk_indices"] = indices.to(torch.int32).contiguous()
            else:
                tensors[tap] = full.contiguous()
            if tap == LOGITS:
                self._classes = full.shape[-1]
        tensors["__keys__"] = torch.tensor(keys, dtype=torch.int64)
        meta = {"format": self.FORMAT, "augmentation": _fingerprint(self.augmentation), "top_k": self.top_k,
                "taps": self.taps, "classes": self._classes, "rows": len(keys)}
        self.directory.mkdir(parents=True, exist_ok=True)
        # drop an older manifest first: a rebuild that dies before writing the new one must leave the
        # cache incomplete, never an old manifest (old augmentation, top_k, taps) over new data
        self.meta_path.unlink(missing_ok=True)
        from kd_core.checkpoint import write_atomic

        try:  # atomic and fsynced; a full disk is a kd error naming the file, and leaves no temp file
            write_atomic(self.directory / "cache.safetensors", lambda tmp: save_file(tensors, tmp), "cache")
            # the manifest last: its presence marks a complete cache
            write_atomic(self.meta_path, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=1)), "cache")
        except CheckpointError as err:
            raise CacheError(err.argument, err.expected, err.received, hint=err.hint) from None
        self._rows = None

    # -- serving ------------------------------------------------------------------------------
    def classes(self) -> int:
        """The width of the cached logits (read from the manifest: no teacher forward, no tensor load)."""
        if not self.exists():
            raise CacheError("directory", "a built teacher cache (call build() first)", str(self.directory))
        return int(json.loads(self.meta_path.read_text()).get("classes", 0))

    def _load(self) -> None:
        if not self.exists():
            raise CacheError("directory", "a built teacher cache (call build() first)", str(self.directory))
        meta = json.loads(self.meta_path.read_text())
        if meta.get("format") != self.FORMAT:
            raise CacheError("format", f"teacher-cache format {self.FORMAT}", meta.get("format"),
                             hint=f"rebuild the cache in {self.directory}")
        if meta.get("augmentation") != _fingerprint(self.augmentation):
            raise CacheError("augmentation", f"the setting the cache was built under ({meta.get('augmentation')})",
                             _fingerprint(self.augmentation),
                             hint="rebuild the cache, or serve it under the same augmentation")
        if meta.get("top_k") != self.top_k:
            raise CacheError("top_k", f"the cache's top_k ({meta.get('top_k')})", self.top_k)
        missing = [t for t in self.taps if t not in meta["taps"]]
        if missing:
            raise CacheError("taps", f"taps present in the cache {meta['taps']}", missing)
        try:
            store = load_file(str(self.directory / "cache.safetensors"))
        except (SafetensorError, OSError) as err:  # corrupt, truncated or not safetensors (e.g. a pickle)
            raise CacheError("directory", "a readable teacher cache (cache.safetensors)", str(self.directory),
                             hint=f"{type(err).__name__}: {err}; delete the folder to rebuild it") from None
        keys = store.pop("__keys__").tolist()
        self._rows = {(int(i), int(s)): row for row, (i, s) in enumerate(keys)}
        self._store = store
        self._classes = int(meta.get("classes", 0))

    def __call__(self, batch: Batch, progress: float = 0.0) -> TeacherOutput:
        if self._rows is None:
            self._load()
        assert self._rows is not None
        keys = self._key(batch)
        try:
            rows = torch.tensor([self._rows[k] for k in keys])
        except KeyError as err:
            raise CacheError(f"batch[{self.id_key!r}]", "samples that were cached",
                             f"(id, aug_seed)={err.args[0]}") from None
        device = _batch_device(batch)
        out: TeacherOutput = {}
        for tap in self.taps:
            if tap == LOGITS and "logits.topk_values" in self._store:
                out[tap] = self._expand_topk(rows).to(device)
            else:
                out[tap] = self._store[tap][rows].to(device)
        return out

    def _expand_topk(self, rows: torch.Tensor) -> torch.Tensor:
        values = self._store["logits.topk_values"][rows]
        indices = self._store["logits.topk_indices"][rows].long()
        rest = (1 - values.exp().sum(-1, keepdim=True)).clamp_min(1e-12) / (self._classes - values.shape[-1])
        full = rest.log().expand(len(rows), self._classes).clone()
        return full.scatter(-1, indices, values)

    def key_digest(self) -> str:
        """A short digest of the cache's settings, for run configs."""
        return hashlib.sha1(_fingerprint([self.augmentation, self.top_k, self.taps]).encode()).hexdigest()[:12]


def _batch_device(batch: Batch) -> torch.device:
    for value in batch.values():
        if isinstance(value, torch.Tensor):
            return value.device
    return torch.device("cpu")


class Weighting(Protocol):
    """How an ``Ensemble`` weighs its teachers: ``[T]`` or per-sample ``[B, T]`` weights.

    Reinforced (policy) and curriculum (expert selection) weightings implement ``update`` to learn
    from a reward after each step; static weightings ignore it.
    """

    def __call__(self, outputs: Sequence[TeacherOutput], batch: Batch, progress: float) -> torch.Tensor: ...

    def update(self, reward: torch.Tensor) -> None: ...


class UniformWeighting:
    """Every teacher counts the same."""

    def __call__(self, outputs: Sequence[TeacherOutput], batch: Batch, progress: float) -> torch.Tensor:
        return torch.full((len(outputs),), 1.0 / len(outputs))

    def update(self, reward: torch.Tensor) -> None:
        """Static: nothing to learn."""


class FixedWeighting:
    """Given finite non-negative weights, normalised to sum to one."""

    def __init__(self, weights: Sequence[float]) -> None:
        w = torch.as_tensor(list(weights), dtype=torch.float32)
        if (w.ndim != 1 or len(w) == 0 or not bool(torch.isfinite(w).all()) or bool((w < 0).any())
                or float(w.sum()) <= 0):
            raise ConfigError("weights", "finite non-negative teacher weights with a positive sum", list(weights))
        self.weights = w / w.sum()

    def __call__(self, outputs: Sequence[TeacherOutput], batch: Batch, progress: float) -> torch.Tensor:
        if len(outputs) != len(self.weights):
            raise ConfigError("weights", f"one weight per teacher ({len(outputs)})", len(self.weights))
        return self.weights

    def update(self, reward: torch.Tensor) -> None:
        """Static: nothing to learn."""


class Ensemble:
    """Several teacher signals combined tap by tap as a weighted mean of their outputs."""

    def __init__(self, teachers: Sequence[Signal], weighting: Weighting | None = None) -> None:
        if len(teachers) < 1:
            raise ConfigError("teachers", "at least one teacher signal", len(teachers))
        self.teachers = list(teachers)
        self.weighting = weighting or UniformWeighting()
        self.trainable = any(t.trainable for t in self.teachers)
        self.last_weights: torch.Tensor | None = None

    def bind(self, taps: Sequence[str], forward: Forward) -> None:
        """Bind every member."""
        for teacher in self.teachers:
            teacher.bind(taps, forward)

    def __call__(self, batch: Batch, progress: float = 0.0) -> TeacherOutput:
        outputs = [teacher(batch, progress) for teacher in self.teachers]
        weights = self.weighting(outputs, batch, progress)
        self.last_weights = weights
        combined: TeacherOutput = {}
        for tap in outputs[0]:
            stacked = torch.stack([o[tap] for o in outputs], dim=-1)  # [..., T]
            w = weights.to(stacked.device, stacked.dtype)
            if w.ndim == 2:  # [B, T] -> broadcast over the tap's inner axes
                w = w.reshape(w.shape[0], *([1] * (stacked.ndim - 2)), w.shape[1])
            combined[tap] = (stacked * w).sum(-1)
        return combined
