"""Where teacher knowledge comes from: a frozen teacher, a co-trained teacher, a disk cache, an ensemble.

Every signal is called as ``signal(batch, progress)`` and returns ``{tap: tensor}`` with at least
``"logits"``. The engine tells a signal which taps its objective reads with ``bind(taps, forward)``.
Everything else the engine needs it asks the signal through ``Signal``'s methods (what it holds, what
trains, how it prepares, its own loss and optimizers, its checkpoint state); it never checks a
signal's type.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from kd_core.errors import CacheError, CheckpointError, ConfigError
from kd_core.objective import Objective, ObjectiveResult
from kd_core.taps import LOGITS, TapSet, select_logits

if TYPE_CHECKING:
    from kd_core.engine import Distiller

Batch = Mapping[str, Any]
Forward = Callable[[nn.Module, Batch], Any]
TeacherOutput = dict[str, torch.Tensor]


def default_forward(model: nn.Module, batch: Batch) -> Any:
    """Call ``model(batch["input"])``: the default way kd feeds a batch to a model."""
    return model(batch["input"])


class Signal:
    """A source of teacher outputs, and everything the engine asks of one.

    A subclass implements ``bind`` and ``__call__``; the other methods have defaults for a signal that
    holds nothing that trains. The engine:

    - resolves the objective's teacher taps on ``modules()`` (when there is exactly one);
    - calls ``prepare`` once before training (move to the device, build a cache);
    - asks ``classes`` for the logits' width before training (a mismatch with the student is an error);
    - trains ``trainable()`` with the step's loss: the student's objective plus the signal's own ``loss``
      (which sees the student's outputs detached), steps ``optimizers()`` with the phase's optimizer
      (same clipping, precision and LR schedule), and wraps these modules with the student for several
      processes (so their gradients are averaged);
    - logs validation metrics of ``evaluated()`` every epoch, and keeps ``state_dict()`` in every checkpoint.
    """

    def bind(self, taps: Sequence[str], forward: Forward) -> None:
        """Declare the taps the objective needs and how to feed a batch to a model."""
        raise NotImplementedError

    def __call__(self, batch: Batch, progress: float = 0.0) -> TeacherOutput:
        """Teacher outputs for this batch."""
        raise NotImplementedError

    def modules(self) -> dict[str, nn.Module]:
        """The networks whose outputs the signal serves, by name (the teacher taps resolve on them)."""
        return {}

    def trainable(self) -> dict[str, nn.Module]:
        """The modules the step's loss trains, by name (none for a fixed teacher)."""
        return {}

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The signal's own optimizers, which the engine steps with the student's."""
        return []

    def loss(self, outputs: TeacherOutput, student_outputs: TeacherOutput, batch: Batch,
             progress: float) -> ObjectiveResult | None:
        """The signal's own loss for this step (added to the student's), or None; ``student_outputs`` are detached."""
        return None

    def evaluated(self) -> dict[str, nn.Module]:
        """Models whose validation metrics the engine logs every epoch, as ``val_<name>/<metric>``."""
        return {}

    def prepare(self, distiller: Distiller, train: Any) -> None:
        """Get ready before the first step; by default, move every module to the run's device."""
        for module in self.modules().values():
            module.to(distiller.backend.device)

    def classes(self, sample: Batch) -> int | None:
        """The width of the logits for ``sample`` (a small batch), or None when it cannot be known beforehand."""
        return self(sample)[LOGITS].shape[-1]

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps: the trainable modules' and the optimizers' states."""
        return {"modules": {name: module.state_dict() for name, module in self.trainable().items()},
                "optimizers": [optimizer.state_dict() for optimizer in self.optimizers()]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        modules, optimizers = self.trainable(), self.optimizers()
        saved_modules, saved_optimizers = dict(state.get("modules", {})), list(state.get("optimizers", []))
        if sorted(saved_modules) != sorted(modules) or len(saved_optimizers) != len(optimizers):
            raise CheckpointError("checkpoint", f"a signal state with modules {sorted(modules)} and "
                                  f"{len(optimizers)} optimizer(s)",
                                  f"modules {sorted(saved_modules)} and {len(saved_optimizers)} optimizer(s)")
        for name, module in modules.items():
            module.load_state_dict(saved_modules[name])
        for optimizer, saved in zip(optimizers, saved_optimizers, strict=True):
            optimizer.load_state_dict(saved)


class FrozenTeacher(Signal):
    """A fixed, pretrained teacher: eval mode, no gradients (run under ``torch.no_grad``)."""

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

    def modules(self) -> dict[str, nn.Module]:
        """The teacher network."""
        return {"model": self.model}

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


class TrainableTeacher(Signal):
    """A teacher trained alongside the student (online KD, e.g. DML and BD-KD).

    ``objective`` is the teacher's own loss; it sees the teacher's outputs as "student" and the
    (detached) student outputs as "teacher". The engine steps ``optimizer`` with the student's; the
    teacher network and the objective's trainable losses (e.g. a projection) are what trains.
    """

    def __init__(self, model: nn.Module, objective: Objective,
                 optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] | None = None,
                 forward: Forward | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise ConfigError("teacher", "a torch.nn.Module", type(model).__name__)
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

    def modules(self) -> dict[str, nn.Module]:
        """The teacher network."""
        return {"model": self.model}

    def trainable(self) -> dict[str, nn.Module]:
        """The teacher network and its objective (whose trainable losses, if any, train with it)."""
        return {"model": self.model, "objective": self.objective}

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The teacher's optimizer (built by ``bind``)."""
        return [self.optimizer] if self.optimizer is not None else []

    def loss(self, outputs: TeacherOutput, student_outputs: TeacherOutput, batch: Batch,
             progress: float) -> ObjectiveResult:
        """The teacher's objective: its outputs as "student", the detached student's as "teacher"."""
        return self.objective(outputs, student_outputs, batch, progress)

    def evaluated(self) -> dict[str, nn.Module]:
        """The co-trained teacher, logged as ``val_teacher/...``."""
        return {"teacher": self.model}

    def prepare(self, distiller: Distiller, train: Any) -> None:
        """Move the teacher and its objective to the run's device."""
        self.model.to(distiller.backend.device)
        self.objective.to(distiller.backend.device)

    def classes(self, sample: Batch) -> int | None:
        """The teacher's logits width, from one eval-mode forward without gradients (no state changes)."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                return select_logits((self.forward or default_forward)(self.model, sample)).shape[-1]
        finally:
            self.model.train(was_training)

    def __call__(self, batch: Batch, progress: float = 0.0) -> TeacherOutput:
        if not self.model.training:
            self.model.train()
        return self._taps.run(self.forward or default_forward, self.model, batch)


def _fingerprint(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


class CachedTeacher(Signal):
    """Teacher outputs computed once, stored on disk, and served by sample id and augmentation seed.

    Batches must carry ``id_key`` (default ``"index"``: the sample's position in its dataset) and,
    when inputs are augmented, ``seed_key`` (the augmentation seed of that view). ``augmentation``
    describes the augmentation setting (any JSON-able value); a cache built under one setting refuses
    to serve under another. With ``top_k``, logits keep only the k largest entries; the remaining
    probability mass is spread evenly over the other classes, which is exact for the top-k
    probabilities at temperature 1.
    """

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

    def modules(self) -> dict[str, nn.Module]:
        """The teacher whose outputs are cached."""
        return self.teacher.modules()

    def prepare(self, distiller: Distiller, train: Any) -> None:
        """Build the cache over ``train`` (in order) when there is none: the main process builds it, the others
        wait. The teacher moves to the run's device only then; a built cache leaves it where it is."""
        if self.exists():
            return
        backend = distiller.backend
        with backend.main_first():
            if backend.is_main and not self.exists():
                self.teacher.prepare(distiller, train)
                self.build(distiller.in_order(train))

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
    def classes(self, sample: Batch | None = None) -> int:
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


class Ensemble(Signal):
    """Several teacher signals combined tap by tap as a weighted mean of their outputs.

    What the members hold, train and optimize is the ensemble's, named ``"<i>.<name>"`` by member; a
    weighting that trains through the step's loss declares its modules with a ``trainable()`` method of its own.
    """

    def __init__(self, teachers: Sequence[Signal], weighting: Weighting | None = None) -> None:
        if len(teachers) < 1:
            raise ConfigError("teachers", "at least one teacher signal", len(teachers))
        self.teachers = list(teachers)
        self.weighting = weighting or UniformWeighting()
        self.last_weights: torch.Tensor | None = None
        self._outputs: list[TeacherOutput] = []

    def bind(self, taps: Sequence[str], forward: Forward) -> None:
        """Bind every member."""
        for teacher in self.teachers:
            teacher.bind(taps, forward)

    def _members(self, what: Callable[[Signal], Mapping[str, nn.Module]]) -> dict[str, nn.Module]:
        return {f"{i}.{name}": module for i, teacher in enumerate(self.teachers)
                for name, module in what(teacher).items()}

    def modules(self) -> dict[str, nn.Module]:
        """Every member's networks."""
        return self._members(lambda t: t.modules())

    def trainable(self) -> dict[str, nn.Module]:
        """Every member's trainable modules, and the weighting's when it declares some."""
        found = self._members(lambda t: t.trainable())
        declared = getattr(self.weighting, "trainable", None)  # optional in the Weighting protocol
        if callable(declared):
            found.update({f"weighting.{name}": module for name, module in declared().items()})
        return found

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """Every member's optimizers."""
        return [optimizer for teacher in self.teachers for optimizer in teacher.optimizers()]

    def loss(self, outputs: TeacherOutput, student_outputs: TeacherOutput, batch: Batch,
             progress: float) -> ObjectiveResult | None:
        """The sum of the members' own losses, each on that member's outputs of this step (terms ``"<i>.<term>"``)."""
        results = [(i, teacher.loss(own, student_outputs, batch, progress))
                   for i, (teacher, own) in enumerate(zip(self.teachers, self._outputs, strict=True))]
        results = [(i, r) for i, r in results if r is not None]
        if not results:
            return None
        total = sum((r.total for _, r in results[1:]), results[0][1].total)
        return ObjectiveResult(total=total, terms={f"{i}.{k}": v for i, r in results for k, v in r.terms.items()})

    def evaluated(self) -> dict[str, nn.Module]:
        """Every member's evaluated models, named ``"<name><i>"``."""
        return {f"{name}{i}": module for i, teacher in enumerate(self.teachers)
                for name, module in teacher.evaluated().items()}

    def prepare(self, distiller: Distiller, train: Any) -> None:
        """Prepare every member."""
        for teacher in self.teachers:
            teacher.prepare(distiller, train)

    def classes(self, sample: Batch) -> int | None:
        """The members' logits width (the first member that knows it)."""
        return next((c for c in (t.classes(sample) for t in self.teachers) if c is not None), None)

    def __call__(self, batch: Batch, progress: float = 0.0) -> TeacherOutput:
        outputs = self._outputs = [teacher(batch, progress) for teacher in self.teachers]
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
