"""Arms and studies: a method is a few arms; a ``Study`` runs arms × seeds and reports paired comparisons.

An ``Arm`` is one way to train a student: its phases (each with its objective), the teacher signal it
distils from, and its student builder. The from-scratch twin and every baseline are arms too. A method
module holds only its config, its paper citation and ``arms(config, task) -> {name: Arm}``.

``Study(task, arms, seeds).run(out)``:

1. gets the teacher: given with weights (checked on val and reported), or trained here on the task's
   teacher pool and cached under ``$KD_DATA_HOME/teachers`` keyed by what determines it;
2. trains every arm on every seed through ``Distiller``, paired: the same seed gives every arm the same
   student initialisation and the same data order; each arm × seed is its own resumable run directory;
3. evaluates every student through the task on the test split and writes ``results.json``;
4. writes ``report.md`` with plots: the teacher's own quality first, then whether plain KD beats
   scratch, then every other comparison, each a paired per-seed difference with a 95 % t-interval and a
   verdict (``kd_core.stats``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader

from kd_core.backends import Backend
from kd_core.checkpoint import load_weights, save_weights
from kd_core.datacache import cached_model
from kd_core.engine import Callback, Distiller, Phase, adamw, cosine_lr
from kd_core.errors import ConfigError
from kd_core.losses import cross_entropy
from kd_core.objective import Objective, Term
from kd_core.runs import RunDir, environment
from kd_core.signals import Forward, FrozenTeacher, Signal, default_forward
from kd_core.stats import PairedComparison, paired_difference
from kd_core.task import Task, classification_outputs

Role = Literal["scratch", "kd", "variant", "baseline"]

#: Validation metrics for which lower is better, when a ``TrainSpec`` picks its best epoch.
LOWER_IS_BETTER = frozenset({"nll", "ece", "loss", "error"})

__all__ = ["Arm", "ArmRun", "Role", "Study", "StudyResult", "TrainSpec", "cached_teacher", "compare_arms",
           "model_cost", "supervised_phases"]


@dataclass(frozen=True)
class TrainSpec:
    """How a model is trained when a study trains it (a teacher, or an arm's single phase): epochs, AdamW
    learning rate with cosine decay, batch size, weight decay, and ``best_on``: when set (a validation metric
    such as ``"nll"``), the model ends as its best epoch by that metric instead of its last (early stopping by
    checkpoint choice, as a teacher trained to convergence should be: ``best_on="nll"``)."""

    epochs: int
    lr: float
    batch_size: int = 64
    weight_decay: float = 0.0
    best_on: str | None = None

    def phases(self, objective: Objective, name: str = "train") -> list[Phase]:
        """One phase of ``epochs`` over ``objective`` (restoring the best epoch when ``best_on`` is set)."""
        return [Phase(name, objective, epochs=self.epochs, optimizer=adamw(self.lr, self.weight_decay),
                      scheduler=cosine_lr, restore_best=self.best_on is not None)]

    def monitor(self) -> dict[str, str]:
        """The ``Distiller`` options that pick the best epoch by ``best_on`` (lower is better for ``nll``,
        ``ece``, ``loss`` and ``error``, higher otherwise); empty when ``best_on`` is None."""
        if self.best_on is None:
            return {}
        return {"monitor": f"val/{self.best_on}", "mode": "min" if self.best_on in LOWER_IS_BETTER else "max"}

    def key(self) -> dict[str, Any]:
        """What determines the trained model (for the teacher cache): every field, ``best_on`` only when set, so
        that teachers cached before the field existed keep their keys."""
        return {k: v for k, v in self.__dict__.items() if not (k == "best_on" and v is None)}


def compare_arms(results: Mapping[str, Any], a: str, b: str, metric: str, *, higher_is_better: bool = True,
                 scale: float = 1.0, label: str | None = None) -> PairedComparison | None:
    """Arm ``a`` against arm ``b`` of a study's ``results`` on ``metric`` (× ``scale``), paired over the seeds both
    ran; None when they share no seed or a value is missing or not finite. ``label`` names the metric in the
    comparison (default ``metric``). The headline comparisons use it, and so can a method's second metrics."""
    arms = results["arms"]
    seeds = [s for s in arms[a]["seeds"] if s in arms[b]["seeds"]]
    values = [[scale * arms[x]["seeds"][s].get(metric, math.nan) for s in seeds] for x in (a, b)]
    if not seeds or any(not math.isfinite(v) for v in values[0] + values[1]):
        return None
    return paired_difference(values[0], values[1], a_name=a, b_name=b, metric=label or metric,
                             higher_is_better=higher_is_better)


def supervised_phases(train: TrainSpec, label: str = "label") -> list[Phase]:
    """Cross-entropy on the labels alone, one phase: how a scratch twin or a teacher learns."""
    return train.phases(Objective(Term("ce", cross_entropy, student="logits", target=label)))


@dataclass
class Arm:
    """One way to train a student.

    - ``phases()``: fresh phases for one run (objectives may hold trainable parts, so one set per run);
    - ``signal(teacher, workdir)``: the teacher signal built from the study's teacher (``workdir``: the study's
      run directory, shared by every arm and seed, e.g. for a cache of teacher outputs); None means a frozen
      teacher when a phase reads the teacher, and no teacher otherwise;
    - ``student(seed)``: the student builder (default: the task's);
    - ``role``: ``scratch`` (no teacher), ``kd`` (plain KD, the baseline every variant must beat),
      ``variant`` (the method under test) or ``baseline`` (any other);
    - ``callbacks()``: fresh callbacks per run; ``distiller``: extra ``Distiller`` options;
    - ``fit(run)``: for arms that are not one ``Distiller.fit`` over the task's train split (a stream of
      class-incremental tasks, data-free synthesis followed by distillation): trains ``run.student`` in
      ``run.out`` and returns it, through ``Distiller`` (``run.distiller(...)`` builds one with the study's
      backend, forward, collate, evaluator, callbacks and seed). ``phases`` may then be unused; ``run.metrics``
      takes extra per-seed figures (they join the evaluator's in ``results.json``);
    - ``needs_teacher``: whether the study's teacher is needed (default: every role but ``scratch``); a study
      none of whose arms needs it trains none, and ``signal`` factories and custom fits then get None.
    """

    phases: Callable[[], list[Phase]]
    role: Role = "variant"
    signal: Callable[[nn.Module, Path], Signal] | None = None
    student: Callable[[int], nn.Module] | None = None
    batch_size: int = 64
    callbacks: Callable[[], list[Callback]] = list
    distiller: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    fit: Callable[[ArmRun], nn.Module] | None = None
    needs_teacher: bool | None = None

    @property
    def uses_teacher(self) -> bool:
        """Whether the study must provide its teacher for this arm: ``needs_teacher``, else every role but
        ``scratch`` (an arm that co-trains its own teacher, or distils from itself, says False)."""
        return self.needs_teacher if self.needs_teacher is not None else self.role != "scratch"


@dataclass
class ArmRun:
    """One arm on one seed, as a custom ``Arm.fit`` receives it."""

    name: str
    arm: Arm
    seed: int
    student: nn.Module
    teacher: nn.Module | None
    out: Path
    resume: bool
    study: Study
    metrics: dict[str, float] = field(default_factory=dict)

    def distiller(self, phases: Sequence[Phase], signal: Signal | None = None, *,
                  extra_callbacks: Sequence[Callback] = (), **options: Any) -> Distiller:
        """A ``Distiller`` for ``self.student`` with the study's backend, the task's forward, collate and
        epoch evaluator, the arm's batch size, callbacks (then ``extra_callbacks``) and options, and this seed
        (``options`` override them)."""
        task, study = self.study.task, self.study
        callbacks = [*self.arm.callbacks(), *extra_callbacks, *study._progress(f"{self.name} s{self.seed}")]
        settings: dict[str, Any] = {"backend": study.backend, "batch_size": self.arm.batch_size, "seed": self.seed,
                                    "forward": task.forward, "collate": task.collate, "evaluator": task.epoch_evaluator,
                                    "callbacks": callbacks, **self.arm.distiller, **options}
        return Distiller(self.student, phases, teacher=signal, **settings)

    def train(self, phases: Sequence[Phase], signal: Signal | None = None, *, train: Any = None,
              extra_callbacks: Sequence[Callback] = (), **options: Any) -> nn.Module:
        """Train ``self.student`` through ``phases`` in ``self.out`` on the task's train split (or ``train``),
        validated on its val split, resuming when the study resumes; return the trained student."""
        data = self.study.task.data
        distiller = self.distiller(phases, signal, extra_callbacks=extra_callbacks, **options)
        distiller.fit(data.train if train is None else train, data.val, out=self.out, config=self.config(),
                      resume=self.resume and (self.out / "config.yaml").is_file())
        return distiller.student

    def config(self) -> dict[str, Any]:
        """What a sub-run's ``config.yaml`` records (resume checks it)."""
        return {"arm": self.name, "seed": self.seed, "role": self.arm.role, **self.study.config}


@dataclass
class StudyResult:
    """What ``Study.run`` returns: the run directory, the results dict (as in ``results.json``) and the
    comparisons."""

    run: RunDir
    results: dict[str, Any]
    comparisons: list[PairedComparison]

    @property
    def report(self) -> Path:
        """The report's path."""
        return self.run.report


class _BatchCall(nn.Module):
    """``forward(model, batch)`` as a module called with the batch (what the MAC and latency counters time)."""

    def __init__(self, model: nn.Module, forward: Forward) -> None:
        super().__init__()
        self.model, self.call = model, forward

    def forward(self, batch: Any) -> Any:
        return self.call(self.model, batch)


def model_cost(model: nn.Module, batch: Any, latency_iterations: int = 50,
               forward: Forward = default_forward) -> dict[str, float]:
    """Parameters, MACs and CPU latency (p50 ms) of a CPU copy of ``model`` on ``batch``, fed by ``forward``
    (a task's: token ids and masks for text, ``batch["input"]`` by default)."""
    from kd_core.metrics import count_macs, count_parameters, measure_latency

    cpu_model = copy.deepcopy(model).cpu().eval()
    cpu_batch = {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in batch.items()} \
        if isinstance(batch, Mapping) else batch
    call = _BatchCall(cpu_model, forward)
    cost: dict[str, float] = {"params": count_parameters(cpu_model)}
    try:
        cost["macs"] = count_macs(call, cpu_batch)
    except Exception:  # a model the flop counter cannot trace still gets its other costs
        cost["macs"] = float("nan")
    if latency_iterations > 0:
        cost["latency_ms_p50"] = measure_latency(call, cpu_batch, warmup=5, iterations=latency_iterations).p50_ms
    return cost


def cached_teacher(folder: str = "teacher-outputs") -> Callable[[nn.Module, Path], Signal]:
    """An ``Arm.signal`` factory: the frozen teacher's outputs over the train split, computed once into
    ``<study directory>/<folder>`` and served to every arm and seed (exact when the inputs are not augmented)."""
    from kd_core.signals import CachedTeacher

    def signal(teacher: nn.Module, workdir: Path) -> Signal:
        return CachedTeacher(FrozenTeacher(teacher), Path(workdir) / folder)

    return signal


def _check_arms(arms: Mapping[str, Arm], seeds: Sequence[int]) -> None:
    if not isinstance(arms, Mapping) or not arms:
        raise ConfigError("arms", "a non-empty dict of name -> Arm", arms)
    for name, arm in arms.items():
        if not isinstance(name, str) or not name or "/" in name:
            raise ConfigError("arms", "arm names that are non-empty and hold no '/'", name)
        if not isinstance(arm, Arm):
            raise ConfigError(f"arms[{name!r}]", "an Arm", type(arm).__name__)
        if arm.role not in ("scratch", "kd", "variant", "baseline"):
            raise ConfigError(f"arms[{name!r}].role", "scratch, kd, variant or baseline", arm.role)
    if not seeds or len(set(seeds)) != len(seeds) or not all(isinstance(s, int) for s in seeds):
        raise ConfigError("seeds", "a non-empty list of distinct integers", list(seeds))


class Study:
    """Arms × seeds on one task, paired, with a report (see the module doc).

    ``teacher_training``: how to train the teacher when the task's comes without weights; ``reuse_teacher``
    reads a cached teacher when one with the same key exists. ``compare``: (a, b) arm pairs to compare on
    the headline metric; by default every ``kd`` arm against the ``scratch`` arm and every ``variant``
    against the ``kd`` arm and against ``scratch``. ``sections(results, run_dir)`` may return extra
    ``(heading, markdown)`` report sections (a method's own tables and plots), placed before "Reproduce", and
    may add entries of its own to ``results`` (they are saved in ``results.json``).
    """

    def __init__(self, task: Task, arms: Mapping[str, Arm], seeds: Sequence[int], *, title: str,
                 teacher_training: TrainSpec | None = None, backend: Backend | None = None,
                 reuse_teacher: bool = True, compare: Sequence[tuple[str, str]] | None = None,
                 latency_iterations: int = 50, config: dict[str, Any] | None = None, notes: str = "",
                 progress: Any = None,
                 sections: Callable[[dict[str, Any], Path], list[tuple[str, str]]] | None = None) -> None:
        _check_arms(arms, seeds)
        self.task, self.arms, self.seeds, self.title = task, dict(arms), list(seeds), title
        self.teacher_training, self.reuse_teacher = teacher_training, reuse_teacher
        self.backend = backend or Backend()
        self.latency_iterations, self.config, self.notes, self.progress = latency_iterations, config or {}, notes, \
            progress
        self.compare = list(compare) if compare is not None else self._default_pairs()
        self._given_teacher: nn.Module | None = None
        self.sections = sections
        for a, b in self.compare:
            for arm in (a, b):
                if arm not in self.arms:
                    raise ConfigError("compare", f"pairs of arm names among {sorted(self.arms)}", arm)
        if self._needs_teacher() and not task.teacher_trained and teacher_training is None:
            raise ConfigError("teacher_training", "how to train the teacher (the task's comes without weights)",
                              None)

    def _default_pairs(self) -> list[tuple[str, str]]:
        by_role: dict[str, list[str]] = {}
        for name, arm in self.arms.items():
            by_role.setdefault(arm.role, []).append(name)
        scratch, kd = by_role.get("scratch", [])[:1], by_role.get("kd", [])[:1]
        pairs = [(k, s) for k in by_role.get("kd", []) for s in scratch]
        for variant in by_role.get("variant", []):
            pairs += [(variant, k) for k in kd] + [(variant, s) for s in scratch]
        return pairs

    def _needs_teacher(self) -> bool:
        return any(arm.uses_teacher for arm in self.arms.values())

    # -- the teacher ------------------------------------------------------------------------------
    def _teacher(self, out: Path, resume: bool) -> tuple[nn.Module, str]:
        task = self.task
        if task.teacher_trained:
            teacher = self._given_teacher if self._given_teacher is not None else task.teacher()
            # a task that trains (or caches) its own teacher says so in extras["teacher_note"], filled on build
            note = task.extras.get("teacher_note")
            return teacher.to(self.backend.device), str(note or "given with its weights, used as it is")
        spec = self.teacher_training
        assert spec is not None  # checked in __init__

        def build() -> nn.Module:
            torch.manual_seed(0)
            return task.teacher()

        def train(model: nn.Module) -> nn.Module:
            distiller = Distiller(model, supervised_phases(spec), backend=self.backend, batch_size=spec.batch_size,
                                  seed=0, forward=task.forward, collate=task.collate,
                                  evaluator=task.epoch_evaluator, callbacks=self._progress("teacher"),
                                  **spec.monitor())
            run = out / "teacher"
            distiller.fit(task.data.teacher_pool, task.data.val, out=run, config={"role": "teacher", **self.config},
                          resume=resume and (run / "config.yaml").is_file())
            return distiller.student

        model, note = cached_model(build, train, task.name, self.reuse_teacher, data=task.key,
                                   training=spec.key())
        return model.to(self.backend.device), note

    def teacher_model(self, out: str | Path, resume: bool = False) -> nn.Module:
        """The study's teacher: given with its weights, read from the teacher cache, or trained (in ``out``)."""
        return self._teacher(Path(out), resume)[0]

    def _progress(self, label: str) -> list[Callback]:
        if self.progress is None:
            return []
        from kd_core.progress import ProgressCallback

        return [ProgressCallback(label, self.progress)]

    # -- the arms ---------------------------------------------------------------------------------
    def _signal(self, arm: Arm, phases: list[Phase], teacher: nn.Module | None, workdir: Path) -> Signal | None:
        if arm.signal is not None:
            return arm.signal(teacher, workdir)
        if any(p.objective.needs_teacher for p in phases):
            return FrozenTeacher(teacher) if teacher is not None else None
        return None

    def _train_arm(self, name: str, arm: Arm, seed: int, teacher: nn.Module | None, out: Path,
                   resume: bool) -> tuple[nn.Module, ArmRun]:
        task = self.task
        run = ArmRun(name, arm, seed, (arm.student or task.student)(seed), teacher, out / f"{name}-seed{seed}",
                     resume, self)
        if arm.fit is not None:
            student = arm.fit(run)
            final = run.out / "checkpoints" / "final.safetensors"
            if self.backend.is_main and not final.is_file():  # where eval, kd-edge and load_student look
                save_weights(student, final)
            return student, run
        phases = arm.phases()
        return run.train(phases, self._signal(arm, phases, teacher, out)), run

    def _batches(self, dataset: Any) -> list[Any]:
        loader = DataLoader(dataset, batch_size=256, collate_fn=self.task.collate)
        return [self.backend.to_device(b) for b in loader]

    def val_batches(self) -> list[Any]:
        """The val split, collated and on the study's device (for choosing settings without the test split)."""
        return self._batches(self.task.data.val)

    def test_batches(self) -> list[Any]:
        """The test split, collated and on the study's device."""
        return self._batches(self.task.data.test)

    def score(self, model: nn.Module, batches: list[Any]) -> dict[str, float]:
        """The task's metrics of ``model`` over ``batches``."""
        return self._score(model, batches)

    def _probe(self, model: nn.Module, role: str, argument: str) -> None:
        """One eval-mode forward of an example batch: a model that cannot take the task's inputs, or whose logits
        do not cover the task's classes, is refused before any training or run directory."""
        from kd_core.taps import select_logits

        task = self.task
        batch = task.example_batch(2)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                logits = select_logits(task.forward(model, batch))
        except Exception as err:  # any failure here is the model not fitting the data: say so in one line
            shape = tuple(task.example_input().shape) if isinstance(task.example_input(), torch.Tensor) else "?"
            message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(argument, f"a {role} that accepts this task's inputs (one item: shape {shape})",
                              f"{type(err).__name__}: {message[:300]}") from None
        finally:
            model.train(was_training)
        classes = len(task.class_names) if task.class_names else None
        if classes is not None and task.classification and logits.shape[-1] != classes:
            names = ", ".join(task.class_names[:6]) + (", ..." if classes > 6 else "")
            raise ConfigError(argument, f"logits over the data's {classes} classes ({names})",
                              f"{logits.shape[-1]} outputs")

    def preflight(self) -> None:
        """Check data and models before anything runs: the splits build, every arm's student and the teacher
        take the task's inputs and give one logit per class. Errors name the recipe field at fault."""
        task = self.task
        task.data  # noqa: B018 - builds the splits (their errors come first)
        if any(arm.student is None for arm in self.arms.values()):  # the recipe's own student first
            self._probe(task.student(self.seeds[0]), "student", task.student_field)
        for name, arm in self.arms.items():
            if arm.student is not None:
                self._probe(arm.student(self.seeds[0]), "student", f"arms[{name!r}].student")
        if self._needs_teacher():
            teacher = task.teacher()
            if task.teacher_trained:
                self._given_teacher = teacher
            field = task.teacher_field
            self._probe(teacher, "teacher", field.rpartition(".")[0] + ".weights" if task.teacher_trained else field)

    def _score(self, model: nn.Module, batches: list[Any], evaluator: Any = None) -> dict[str, float]:
        model.eval()
        with self.backend.autocast():
            metrics = (evaluator or self.task.evaluator)(model, batches, self.task.forward)
            return {k: float(v) for k, v in metrics.items()}

    # -- the whole study --------------------------------------------------------------------------
    def run(self, out: str | Path, resume: bool = False) -> StudyResult:
        """Run every arm on every seed under ``out`` and write ``results.json`` and ``report.md``."""
        config = {"study": self.title, "arms": sorted(self.arms), "seeds": self.seeds, **self.config}
        RunDir.create(out, config, resume=resume, write=False)  # a bad --out fails before any data is built
        self.preflight()
        top = RunDir.create(out, config, resume=resume,
                            env=environment(self.seeds[0], {"backend": self.backend.describe()}),
                            write=self.backend.is_main)
        try:  # the run directory stays locked until the study ends
            return self._run(top, resume)
        finally:
            top.close()

    def _run(self, top: RunDir, resume: bool) -> StudyResult:
        task = self.task
        test = self.test_batches()
        teacher, teacher_note = (self._teacher(top.path, resume) if self._needs_teacher() else (None, "none"))
        results: dict[str, Any] = {"task": {"name": task.name, "description": task.description,
                                            "sizes": task.data.sizes(), "headline": task.headline,
                                            "higher_is_better": task.higher_is_better},
                                   "seeds": self.seeds, "arms": {}}
        example = task.example_batch(1)
        calibration: dict[str, Any] = {}
        if teacher is not None:
            scorer = task.teacher_evaluator
            results["teacher"] = {"test": self._score(teacher, test, scorer),
                                  "val": self._score(teacher, self.val_batches(), scorer),
                                  "source": teacher_note,
                                  "cost": model_cost(teacher, example, self.latency_iterations, task.forward)}
            if task.classification:
                calibration["teacher"] = classification_outputs(teacher, test, task.forward)
        for name, arm in self.arms.items():
            per_seed: dict[str, dict[str, float]] = {}
            for seed in self.seeds:
                student, run = self._train_arm(name, arm, seed, teacher, top.path, resume)
                if task.save is not None and self.backend.is_main:
                    task.save(student, run.out / "model")
                per_seed[str(seed)] = {**self._score(student, test), **run.metrics}
                if seed == self.seeds[0]:
                    cost = model_cost(student, example, self.latency_iterations, task.forward)
                    if task.classification:
                        calibration[name] = classification_outputs(student, test, task.forward)
            results["arms"][name] = {"role": arm.role, "description": arm.description, "seeds": per_seed,
                                     "cost": cost}
        comparisons = self.comparisons(results)
        results["comparisons"] = [c.as_dict() for c in comparisons]
        if self.backend.is_main:
            from kd_core.study_report import write_study_report

            write_study_report(self, top, results, comparisons, calibration)  # (sections may add to results)
            top.write_json("results.json", results)
        return StudyResult(run=top, results=results, comparisons=comparisons)

    def comparisons(self, results: Mapping[str, Any]) -> list[PairedComparison]:
        """The paired comparisons of ``results`` on the headline metric, in ``compare`` order."""
        task = self.task
        scale = 100.0 if task.headline in task.percent else 1.0
        found = [compare_arms(results, a, b, task.headline, higher_is_better=task.higher_is_better, scale=scale)
                 for a, b in self.compare]
        return [c for c in found if c is not None]

    def load_student(self, run: str | Path, arm: str, seed: int) -> nn.Module:
        """The final student of ``arm`` on ``seed`` from a finished study's run directory."""
        if arm not in self.arms:
            raise ConfigError("arm", f"one of {sorted(self.arms)}", arm)
        model = (self.arms[arm].student or self.task.student)(seed)
        return load_weights(model, Path(run) / f"{arm}-seed{seed}" / "checkpoints" / "final.safetensors")
