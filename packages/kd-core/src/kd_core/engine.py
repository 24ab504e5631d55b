"""The distillation loop: ``Distiller.fit`` runs phases with their own objectives, optimizers and lengths.

It handles gradient accumulation and clipping, mixed precision, several processes, best and last
checkpoints written atomically, and resume: a run killed at any point and resumed from its last
checkpoint ends with the same weights as one that was never interrupted (same device, same seed).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, default_collate

from kd_core.backends import Backend
from kd_core.checkpoint import (
    copy_atomic,
    load_state,
    load_weights,
    rng_state,
    save_state,
    save_weights,
    set_rng_state,
)
from kd_core.data import epoch_batches, in_order, loader
from kd_core.errors import CheckpointError, ConfigError, NonFiniteLossError, TapError
from kd_core.objective import Objective
from kd_core.runs import RunDir, environment
from kd_core.signals import Forward, Signal, default_forward
from kd_core.taps import LOGITS, TapSet, unwrap
from kd_core.task import Evaluator, classification_evaluator

_OPTIONS = ("out", "fit(..., resume=True)")  # how a run-directory error names the run folder and resuming

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer, int], Any]


def adamw(lr: float = 1e-3, weight_decay: float = 0.0) -> OptimizerFactory:
    """An AdamW factory (the default optimizer of a phase)."""
    return lambda params: torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def sgd(lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 0.0) -> OptimizerFactory:
    """An SGD-with-momentum factory."""
    return lambda params: torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def cosine_lr(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Cosine decay of the learning rate over a phase's optimizer steps."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1))


class _Schedules:
    """A phase's LR schedule, one per optimizer: the phase's, then the signal's (none without a scheduler)."""

    def __init__(self, schedules: Sequence[Any]) -> None:
        self.schedules = list(schedules)

    def step(self) -> None:
        """Advance every schedule one optimizer step."""
        for schedule in self.schedules:
            schedule.step()

    def state_dict(self) -> list[dict[str, Any]]:
        """Every schedule's state."""
        return [schedule.state_dict() for schedule in self.schedules]

    def load_state_dict(self, state: Sequence[dict[str, Any]]) -> None:
        """Restore every schedule (a ``ValueError`` when the count differs)."""
        for schedule, saved in zip(self.schedules, state, strict=True):
            schedule.load_state_dict(saved)


class _Trained(nn.Module):
    """Every module a phase trains, held together so that several processes wrap them once (``Backend.wrap``)
    and average all their gradients: the student, the phase's objective (its trainable losses, e.g. a
    projection) and the signal's trainable modules (a co-trained teacher, ...). Its forward runs the step
    it is given, so that the wrapper sees the whole step's computation."""

    def __init__(self, student: nn.Module, objective: nn.Module, signal: Mapping[str, nn.Module]) -> None:
        super().__init__()
        self.student, self.objective = student, objective
        self.signal = nn.ModuleDict({name.replace(".", "/"): module for name, module in signal.items()})

    def forward(self, step: Callable[[], Any]) -> Any:
        """Run ``step`` (the step's forward passes and losses) and return what it returns."""
        return step()


@dataclass
class Phase:
    """One stage of training: an objective, a length in epochs and a fresh optimizer.

    ``restore_best`` loads the phase's best student (by the monitored metric) when the phase ends,
    as Annealing-KD does before its second phase.
    """

    name: str
    objective: Objective
    epochs: int = 1
    optimizer: OptimizerFactory = field(default_factory=adamw)
    scheduler: SchedulerFactory | None = None
    restore_best: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"phases[{self.name}].epochs", "an integer ≥ 1", self.epochs)


class Callback:
    """Hooks into ``Distiller.fit``; override what you need."""

    def on_fit_start(self, distiller: Distiller) -> None:
        """Called once, after checks pass and before the first step."""

    def on_phase_start(self, distiller: Distiller, phase: Phase, total_steps: int) -> None:
        """Called when a phase starts (or resumes)."""

    def on_step_end(self, distiller: Distiller, logs: dict[str, float]) -> None:
        """Called after every optimizer step with the logged values."""

    def on_epoch_end(self, distiller: Distiller, logs: dict[str, float]) -> None:
        """Called after every epoch with its validation metrics."""

    def on_fit_end(self, distiller: Distiller, result: FitResult) -> None:
        """Called once at the end."""

    def state_dict(self) -> dict[str, Any] | None:
        """State to save in every checkpoint (tensors, numbers, strings, lists, dicts), or None for none."""
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned, when a run resumes."""


@dataclass
class FitResult:
    """What ``fit`` returns: the run folder, the per-epoch history and the best metric per phase."""

    run: RunDir
    history: list[dict[str, float]]
    best: dict[str, float]
    student: nn.Module


def _detach(out: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in out.items()}


def _host(values: Mapping[str, torch.Tensor], finite: torch.Tensor) -> dict[str, float]:
    """Every value as a float, and ``finite`` as 1.0 or 0.0, read from the device in one transfer."""
    stacked = torch.stack([v.detach().float().reshape(()) for v in [*values.values(), finite]])
    return dict(zip([*values, "finite"], stacked.tolist(), strict=True))


class Distiller:
    """Trains a student against a teacher signal through one or more phases.

    ``monitor`` (e.g. ``"val/accuracy"``) and ``mode`` pick the best checkpoint; ``checkpoint_every``
    also writes the last checkpoint every that many optimizer steps (besides every epoch end).
    ``collate`` turns a list of sample dicts into a batch; the engine then adds ``batch["index"]``, the
    samples' positions in their dataset (when the batch is a dict that has none). ``progress``: show progress
    while fitting (a bar on a terminal, plain lines every few seconds otherwise) unless a
    ``kd_core.progress.ProgressCallback`` is among ``callbacks`` already; ``False`` keeps ``fit`` silent.
    """

    def __init__(self, student: nn.Module, phases: Sequence[Phase], teacher: Signal | None = None,
                 backend: Backend | None = None, callbacks: Sequence[Callback] = (),
                 batch_size: int = 32, eval_batch_size: int = 256, grad_accum_steps: int = 1,
                 clip_grad_norm: float | None = None, seed: int = 0, forward: Forward = default_forward,
                 evaluator: Evaluator = classification_evaluator, monitor: str = "val/accuracy",
                 mode: str = "max", checkpoint_every: int = 0, num_workers: int = 0,
                 collate: Callable[[list[Any]], Any] = default_collate, progress: bool = True) -> None:
        if not phases:
            raise ConfigError("phases", "at least one Phase", "none")
        names = [p.name for p in phases]
        if len(set(names)) != len(names):
            raise ConfigError("phases", "unique phase names", names)
        for argument, value in (("batch_size", batch_size), ("grad_accum_steps", grad_accum_steps),
                                ("eval_batch_size", eval_batch_size)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(argument, "an integer ≥ 1", value)
        if clip_grad_norm is not None and not clip_grad_norm > 0:
            raise ConfigError("clip_grad_norm", "a number > 0 or None", clip_grad_norm)
        if mode not in ("max", "min"):
            raise ConfigError("mode", "'max' or 'min'", mode)
        self.student = student
        self.phases = list(phases)
        self.teacher = teacher
        self.backend = backend or Backend()
        self.callbacks = list(callbacks)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.grad_accum_steps, self.clip_grad_norm = grad_accum_steps, clip_grad_norm
        self.seed, self.forward, self.evaluator = seed, forward, evaluator
        self.monitor, self.mode, self.checkpoint_every = monitor, mode, checkpoint_every
        self.num_workers, self.collate, self.progress = num_workers, collate, progress
        self.global_step = 0
        self.run: RunDir | None = None
        self._last_saved: int | None = None  # global step of the last checkpoint written (for error messages)
        self._validate_objectives()

    # -- checks, before anything runs ---------------------------------------------------------------
    def _validate_objectives(self) -> None:
        teacher_model = None
        if self.teacher is not None:
            modules = list(self.teacher.modules().values())
            teacher_model = modules[0] if len(modules) == 1 else None
        for phase in self.phases:
            if phase.objective.needs_teacher and self.teacher is None:
                raise ConfigError("teacher", f"a teacher signal (phase {phase.name!r} has teacher terms)", None)
            phase.objective.validate(self.student, teacher_model)

    def _probe_shapes(self, sample: Mapping[str, Any]) -> None:
        """One eval-mode forward of both models, to reject mismatched logits before training."""
        compared = [t for p in self.phases for t in p.objective.terms if t.student == LOGITS and t.teacher == LOGITS]
        if self.teacher is None or not compared:  # nothing compares logits (e.g. bare encoders' hidden states)
            return
        was_training = self.student.training
        self.student.eval()
        with torch.no_grad():
            try:
                s_classes = TapSet(self.student, []).run(self.forward, self.student, sample)[LOGITS].shape[-1]
            except TapError as err:
                raise TapError(f"{compared[0].name}.student", "a student whose forward returns logits", err.received,
                               hint="the term compares logits; for a bare encoder, read a tap instead or give the "
                                    "model a head") from None
            t_classes = self.teacher.classes(sample)
        self.student.train(was_training)
        if t_classes is None:
            return
        if s_classes != t_classes:
            raise ConfigError("teacher", f"logits over {s_classes} classes like the student's", f"{t_classes} classes",
                              hint=f"term {compared[0].name!r} compares teacher and student logits")

    # -- helpers ------------------------------------------------------------------------------------
    def _loader(self, dataset: Dataset, batches: Sequence[list[int]]) -> Iterable[Any]:
        # a private generator (for worker seeds): iterating must not draw from the global RNG, or a resumed run
        # would diverge
        generator = torch.Generator().manual_seed(self.seed)
        return loader(dataset, batches, self.collate, num_workers=self.num_workers, generator=generator)

    def _batches(self, dataset: Dataset, phase_index: int, epoch: int) -> list[list[int]]:
        return epoch_batches(len(dataset), self.batch_size, self.seed, phase_index, epoch,
                             rank=self.backend.rank, world_size=self.backend.world_size)

    def _better(self, value: float, best: float | None) -> bool:
        if best is None or math.isnan(best):
            return not math.isnan(value)
        return value > best if self.mode == "max" else value < best

    def in_order(self, dataset: Dataset) -> Iterator[Any]:
        """``dataset`` in order, in batches of ``eval_batch_size`` carrying ``"index"``, on the run's device."""
        for batch in self._loader(dataset, in_order(len(dataset), self.eval_batch_size)):  # type: ignore[arg-type]
            yield self.backend.to_device(batch)

    def evaluate(self, dataset: Dataset, model: nn.Module | None = None) -> dict[str, float]:
        """The evaluator's metrics of the student (or ``model``) over ``dataset`` (in order, unshuffled)."""
        with self.backend.autocast():
            return self.evaluator(self.student if model is None else model, self.in_order(dataset), self.forward)

    # -- the state a checkpoint holds ---------------------------------------------------------------
    def _state(self, position: dict[str, int], optimizer: torch.optim.Optimizer, schedules: _Schedules,
               best: dict[str, float], history: list[dict[str, float]]) -> dict[str, Any]:
        state: dict[str, Any] = {
            "student": unwrap(self.student).state_dict(),
            "objectives": {p.name: p.objective.state_dict() for p in self.phases},
            "signal": self.teacher.state_dict() if self.teacher is not None else None,
            "optimizer": optimizer.state_dict(),
            "scheduler": schedules.state_dict(),
            "scaler": self.backend.scaler.state_dict() if self.backend.scaler.is_enabled() else None,
            "rng": rng_state(),
            "position": dict(position),
            "global_step": self.global_step,
            "best": dict(best),
            "history": list(history),
        }
        callbacks = {str(i): cb.state_dict() for i, cb in enumerate(self.callbacks) if hasattr(cb, "state_dict")}
        state["callbacks"] = {k: v for k, v in callbacks.items() if v is not None}
        return state

    def _save(self, name: str, state: dict[str, Any]) -> None:
        if self.backend.is_main and self.run is not None:
            self.run.flush()  # metrics.jsonl first: a run killed after this save has every line up to it
            save_state(state, self.run.checkpoints / f"{name}.safetensors")
            self.run.write_json(f"checkpoints/{name}.json", {
                "position": state["position"], "global_step": state["global_step"], "best": state["best"]})
        self._last_saved = state["global_step"]
        self.backend.barrier()

    # -- training -----------------------------------------------------------------------------------
    def fit(self, train: Dataset, val: Dataset | None = None, out: str | os.PathLike = "runs/distill",
            config: dict[str, Any] | None = None, resume: bool = False) -> FitResult:
        """Train through every phase; write checkpoints, metrics and config under ``out``, and at the end
        ``report.md`` (phases, best and final validation metrics, checkpoints) with ``plots/training.png``."""
        config = dict(config or {})
        config.setdefault("seed", self.seed)
        config.setdefault("phases", [{"name": p.name, "epochs": p.epochs} for p in self.phases])
        RunDir.create(out, config, resume=resume, write=False, options=_OPTIONS)  # checks only: nothing written yet
        self.backend.barrier()  # no process writes before every process has checked
        resume_state = None
        if resume:
            last = Path(out) / "checkpoints" / "last.safetensors"
            if last.is_file():
                resume_state = load_state(last)

        taps = list(dict.fromkeys(t for p in self.phases for t in p.objective.teacher_taps))
        if self.teacher is not None:
            self.teacher.bind(taps or [LOGITS], self.forward)
            self.teacher.prepare(self, train)  # to the device; a cached teacher builds its cache
        self.student.to(self.backend.device)
        probe = next(iter(self._loader(train, [[0, min(1, len(train) - 1)]])))  # type: ignore[arg-type]
        self._probe_shapes(self.backend.to_device(probe))

        env = environment(self.seed, {"backend": self.backend.describe()})
        # only the main process writes (the others already checked, and would now see its files)
        self.run = (RunDir.create(out, config, resume=resume, env=env, options=_OPTIONS) if self.backend.is_main
                    else RunDir(out))
        if resume and self.backend.is_main:
            self.run.remove_stale_temp_files()  # torn writes of a killed run: the renamed files are intact
        shown = self._progress_callback()
        try:
            return self._fit(train, val, resume_state, resume)
        finally:
            if shown is not None:
                shown.close()
                self.callbacks.remove(shown)
            self.run.close()

    def _progress_callback(self) -> Any:
        """A ``ProgressCallback`` added for this ``fit`` (main process, ``progress`` on, none given), or None."""
        from kd_core.progress import ProgressCallback

        if not self.progress or not self.backend.is_main or any(isinstance(cb, ProgressCallback)
                                                                 for cb in self.callbacks):
            return None
        shown = ProgressCallback()
        self.callbacks.append(shown)
        return shown

    def _fit(self, train: Dataset, val: Dataset | None, resume_state: dict[str, Any] | None,
             resume: bool) -> FitResult:
        assert self.run is not None
        history: list[dict[str, float]] = []
        best: dict[str, float] = {}
        position = {"phase": 0, "epoch": 0, "batch": 0}
        self._last_saved = None
        if resume_state is not None:
            unwrap(self.student).load_state_dict(resume_state["student"])
            for phase in self.phases:
                phase.objective.load_state_dict(resume_state["objectives"][phase.name])
            for key, cb_state in resume_state.get("callbacks", {}).items():
                self.callbacks[int(key)].load_state_dict(cb_state)
            history, best = resume_state["history"], resume_state["best"]
            position = resume_state["position"]
            self.global_step = resume_state["global_step"]
            self._last_saved = self.global_step
            if self.backend.is_main:
                self.run.truncate_metrics(self.global_step)
        else:
            torch.manual_seed(self.seed)
            if resume and self.backend.is_main:  # killed before its first checkpoint: start over cleanly
                self.run.truncate_metrics(0)
        for cb in self.callbacks:
            cb.on_fit_start(self)

        for phase_index in range(position["phase"], len(self.phases)):
            phase = self.phases[phase_index]
            start_epoch = position["epoch"] if phase_index == position["phase"] else 0
            start_batch = position["batch"] if phase_index == position["phase"] else 0
            optimizer, scheduler, total = self._start_phase(phase, phase_index, len(train))
            if resume_state is not None and phase_index == resume_state["position"]["phase"]:
                self._restore_optimizers(resume_state, optimizer, scheduler)
                set_rng_state(resume_state["rng"])
                resume_state = None
            self._wrap(phase)
            for cb in self.callbacks:
                cb.on_phase_start(self, phase, total)
            for epoch in range(start_epoch, phase.epochs):
                batches = self._batches(train, phase_index, epoch)
                self._train_epoch(phase, phase_index, epoch, batches, start_batch, train, optimizer,
                                  scheduler, best, history)
                start_batch = 0
                logs: dict[str, float] = {"phase": phase_index, "epoch": epoch + 1}
                if val is not None:
                    logs.update({f"val/{k}": v for k, v in self.evaluate(val).items()})
                    for name, model in (self.teacher.evaluated() if self.teacher is not None else {}).items():
                        logs.update({f"val_{name}/{k}": v for k, v in self.evaluate(val, model).items()})
                history.append(logs)
                if self.backend.is_main:
                    self.run.log({"step": self.global_step, "phase_name": phase.name, **logs})
                monitored = logs.get(self.monitor)
                if monitored is None and phase.restore_best and val is not None:
                    raise ConfigError("monitor", "a validation metric the evaluator reports (one of "
                                      f"{sorted(k for k in logs if k.startswith('val/'))}) for phase "
                                      f"{phase.name!r}, which restores its best epoch", self.monitor)
                if monitored is not None and self._better(monitored, best.get(phase.name)):
                    best[phase.name] = monitored
                    if self.backend.is_main:
                        save_weights(unwrap(self.student), self.run.checkpoints / f"best-{phase.name}.safetensors",
                                     metadata={"metric": self.monitor, "value": str(monitored),
                                               "epoch": str(epoch + 1)})
                next_pos = {"phase": phase_index, "epoch": epoch + 1, "batch": 0}
                if epoch + 1 == phase.epochs:
                    next_pos = {"phase": phase_index + 1, "epoch": 0, "batch": 0}
                for cb in self.callbacks:
                    cb.on_epoch_end(self, logs)
                if epoch + 1 < phase.epochs:
                    self._save("last", self._state(next_pos, optimizer, scheduler, best, history))
            self._end_phase(phase, best)
            # the optimizer of the next phase is new: the state saved is the one it will restore into
            if phase_index + 1 < len(self.phases):
                next_opt, next_sched, _ = self._start_phase(self.phases[phase_index + 1], phase_index + 1,
                                                            len(train))
                self._save("last", self._state({"phase": phase_index + 1, "epoch": 0, "batch": 0},
                                               next_opt, next_sched, best, history))
            else:
                self._save("last", self._state({"phase": len(self.phases), "epoch": 0, "batch": 0},
                                               optimizer, scheduler, best, history))
        self._finish(best)
        if self.backend.is_main:
            self._write_report(history)
        result = FitResult(run=self.run, history=history, best=best, student=unwrap(self.student))
        for cb in self.callbacks:
            cb.on_fit_end(self, result)
        return result

    def _start_phase(self, phase: Phase, phase_index: int,
                     size: int) -> tuple[torch.optim.Optimizer, _Schedules, int]:
        """The phase's fresh optimizer (student and objective), its LR schedules and its optimizer steps.

        The signal's optimizers carry on across phases; they follow the phase's LR schedule too."""
        params = [p for p in self.student.parameters() if p.requires_grad]
        params += [p for p in phase.objective.parameters() if p.requires_grad]
        phase.objective.to(self.backend.device)
        optimizer = phase.optimizer(params)
        per_epoch = math.ceil(len(self._batches_count(size)) / self.grad_accum_steps)
        total = per_epoch * phase.epochs
        optimizers = [optimizer, *(self.teacher.optimizers() if self.teacher is not None else [])]
        schedules = _Schedules([phase.scheduler(o, total) for o in optimizers] if phase.scheduler is not None else [])
        return optimizer, schedules, total

    def _wrap(self, phase: Phase) -> None:
        """Wrap everything the phase trains once (``Backend.wrap``): with several processes, one DDP over the
        student, the phase's objective and the signal's trainable modules, so that all their gradients are
        averaged. (Objective and signal modules may sit out a step, e.g. a term weighted 0 at that progress.)"""
        self._trained = None  # the previous phase's wrapper first: its hooks must not outlive it
        signal = self.teacher.trainable() if self.teacher is not None else {}
        extra = bool(signal) or any(p.requires_grad for p in phase.objective.parameters())
        self._trained = self.backend.wrap(_Trained(self.student, phase.objective, signal),
                                          find_unused_parameters=extra)

    def _batches_count(self, size: int) -> list[int]:
        per_rank = math.ceil(size / self.backend.world_size)
        return list(range(math.ceil(per_rank / self.batch_size)))

    def _restore_optimizers(self, state: dict[str, Any], optimizer: torch.optim.Optimizer,
                            schedules: _Schedules) -> None:
        """Restore the phase's optimizer, the signal (its modules and optimizers), the LR schedules and the scaler
        (after the phase's schedules were made: making one resets its optimizer's learning rate)."""
        try:
            optimizer.load_state_dict(state["optimizer"])
            if self.teacher is not None:
                self.teacher.load_state_dict(state["signal"])
            schedules.load_state_dict(state["scheduler"])
            if state["scaler"] is not None:
                self.backend.scaler.load_state_dict(state["scaler"])
        except (ValueError, KeyError, RuntimeError, TypeError) as err:
            raise CheckpointError("checkpoint", "optimizer state matching this run's phases", "another layout",
                                  hint=str(err)) from None

    def _train_epoch(self, phase: Phase, phase_index: int, epoch: int, batches: list[list[int]],
                     start_batch: int, train: Dataset, optimizer: torch.optim.Optimizer, schedules: _Schedules,
                     best: dict[str, float], history: list[dict[str, float]]) -> None:
        student, signal, objective = self.student, self.teacher, phase.objective
        student.train()
        taps = TapSet(student, objective.student_taps)
        signal_trains = signal is not None and bool(signal.trainable())
        needs_teacher = signal is not None and (objective.needs_teacher or signal_trains)
        optimizers = [optimizer, *(signal.optimizers() if signal is not None else [])]
        scaler, distributed = self.backend.scaler, self.backend.world_size > 1
        n, accum = len(batches), self.grad_accum_steps

        def step(batch: Mapping[str, Any], progress: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            """The step's forward passes and losses: the total and every logged value (device tensors)."""
            # teacher first: a frozen teacher's activations are freed before the student's graph is built
            t_out = signal(batch, progress) if needs_teacher else None
            s_out = taps.run(self.forward, student, batch)
            # the student's objective never trains the signal, nor the signal's loss the student
            result = objective(s_out, _detach(t_out) if t_out is not None else None, batch, progress)
            own = signal.loss(t_out, _detach(s_out), batch, progress) if signal_trains else None
            logged = {"loss/total": result.total, **{f"loss/{k}": v for k, v in result.terms.items()}}
            if own is None:
                return result.total, logged
            logged.update({"teacher_loss/total": own.total, **{f"teacher_loss/{k}": v for k, v in own.terms.items()}})
            return result.total + own.total, logged

        finite: torch.Tensor | None = None  # whether every loss of the accumulation group so far is finite
        for offset, raw in enumerate(self._loader(train, batches[start_batch:])):
            index = start_batch + offset
            batch = self.backend.to_device(raw)
            progress = (epoch + index / n) / phase.epochs
            group_end = min((index // accum + 1) * accum, n)
            group_size = group_end - (index // accum) * accum
            with self.backend.autocast():
                loss, logged = self._trained(lambda: step(batch, progress))  # noqa: B023 (called right here)
                if group_size > 1:
                    loss = loss / group_size
            last_of_group = index + 1 == group_end
            ok = torch.isfinite(loss.detach())
            finite = ok if finite is None else finite & ok
            scaler.scale(loss).backward()
            if not last_of_group:
                continue
            if distributed:  # every process must stop at the same step, or the others hang
                logged["ranks_nonfinite"] = self.backend.all_reduce_sum((~finite).float())
            # the step's one host transfer: every logged value and the group's finite flag
            values = _host(logged, finite)
            group_finite = values.pop("finite") == 1.0
            ranks_nonfinite = int(values.pop("ranks_nonfinite", 0.0))
            finite = None
            if not group_finite or not all(map(math.isfinite, values.values())):
                raise self._nonfinite(phase, epoch, index, values)
            if ranks_nonfinite:
                raise self._nonfinite(phase, epoch, index, values, other_ranks=ranks_nonfinite)
            for opt in optimizers:
                if self.clip_grad_norm is not None:  # each network's norm on its own: a co-trained teacher must
                    scaler.unscale_(opt)  # not shrink the student's step, nor the reverse
                    torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]],
                                                   self.clip_grad_norm)
                scaler.step(opt)
            scaler.update()
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            schedules.step()
            self.global_step += 1
            logs = {"step": self.global_step, "phase": phase_index, "epoch": epoch + (index + 1) / n,
                    "lr": optimizer.param_groups[0]["lr"], **values}
            if self.backend.is_main:
                self.run.log(logs)
            for cb in self.callbacks:
                cb.on_step_end(self, logs)
            if self.checkpoint_every and self.global_step % self.checkpoint_every == 0 and group_end < n:
                self._save("last", self._state({"phase": phase_index, "epoch": epoch, "batch": group_end},
                                               optimizer, schedules, best, history))

    def _nonfinite(self, phase: Phase, epoch: int, index: int, values: dict[str, float],
                   other_ranks: int = 0) -> NonFiniteLossError:
        """The error for a NaN/inf loss at the coming optimizer step: which terms, where, and what was kept.

        ``other_ranks``: this process's loss was finite, but that many other processes' were not."""
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        received: Any
        if other_ranks:
            name, received = "loss/total", (f"NaN or inf on {other_ranks} other process(es) of "
                                             f"{self.backend.world_size} (this one, rank {self.backend.rank}, "
                                             "was finite)")
        elif bad:  # name a term rather than the total when one is to blame
            name = next((k for k in bad if not k.endswith("total")), bad[0])
            received = values[name]
        else:  # the last micro-batch was finite: an earlier one of the accumulation group was not
            name, received = "loss/total", "NaN or inf in an earlier micro-batch of the accumulation group"
        where = (f"at phase {phase.name!r}, epoch {epoch + 1}, batch {index + 1}, optimizer step "
                 f"{self.global_step + 1}" + (f" (non-finite: {', '.join(bad)})" if bad else ""))
        if self._last_saved is None:
            kept = "no checkpoint had been written yet"
        else:
            kept = f"checkpoints/last.safetensors (step {self._last_saved}) is kept and nothing was written after it"
        return NonFiniteLossError(name, "a finite loss", received,
                                  hint=f"Training stopped {where}, before the update; {kept}. Lower the learning "
                                       "rate, set clip_grad_norm, or check the inputs and the loss options")

    def _end_phase(self, phase: Phase, best: dict[str, float]) -> None:
        path = self.run.checkpoints / f"best-{phase.name}.safetensors"
        if phase.restore_best and path.is_file():
            self.backend.barrier()
            load_weights(unwrap(self.student), path)

    def _write_report(self, history: list[dict[str, float]]) -> None:
        """The run's ``report.md`` and ``plots/training.png`` (``kd_core.report.write_fit_report``)."""
        from kd_core.report import FitPhase, describe_objective, write_fit_report

        phases = [FitPhase(p.name, p.epochs, *describe_objective(p.objective)) for p in self.phases]
        write_fit_report(self.run, phases, history, self.run.metrics(), monitor=self.monitor, mode=self.mode)

    def _finish(self, best: dict[str, float]) -> None:
        if not self.backend.is_main:
            return
        final = self.run.checkpoints / f"best-{self.phases[-1].name}.safetensors"
        if final.is_file():
            copy_atomic(final, self.run.checkpoints / "best.safetensors")
        save_weights(unwrap(self.student), self.run.checkpoints / "final.safetensors")
