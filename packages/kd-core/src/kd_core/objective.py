"""The objective: a weighted sum of named loss terms over student taps, teacher taps and batch targets.

It returns the total and each term (for logging), and works inside any loop::

    objective = Objective(
        Term("kd", kl_divergence, student="logits", teacher="logits", weight=0.9, temperature=4.0),
        Term("ce", cross_entropy, student="logits", target="label", weight=0.1),
    )
    result = objective(student_out, teacher_out, batch, progress=0.3)
    result.total.backward()
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kd_core.errors import ConfigError, TapError
from kd_core.losses import check_temperature
from kd_core.schedules import Constant, Schedule, as_schedule
from kd_core.taps import LOGITS, resolve

_SCHEDULE_PROBES = tuple(i / 100 for i in range(101))


def _probes(schedule: Any) -> list[float]:
    """Progress values at which to check a schedule: a fine grid plus its step boundaries, if any."""
    extra = [float(b) for b in getattr(schedule, "boundaries", ()) or ()]
    return sorted({*_SCHEDULE_PROBES, *extra})


def _module_key(name: str) -> str:
    """A term name as a submodule name (``nn.Module`` forbids dots: ``hidden.3`` -> ``hidden/3``)."""
    return name.replace(".", "/")


class Term:
    """One loss term: ``weight(progress) * loss(student[tap], reference, **options(progress))``.

    The reference is a teacher tap (``teacher=``) or a batch entry (``target=``), or nothing for
    terms over the student alone. Options may be numbers or schedules (e.g. a temperature schedule).
    A loss that is an ``nn.Module`` (e.g. ``HiddenMSE``) is trained along with the student.
    """

    def __init__(self, name: str, loss: Callable[..., torch.Tensor], student: str = LOGITS,
                 teacher: str | None = None, target: str | None = None,
                 weight: float | Schedule = 1.0, **options: Any) -> None:
        if not name or not isinstance(name, str):
            raise ConfigError("name", "a non-empty term name", name)
        if not callable(loss):
            raise ConfigError(f"{name}.loss", "a callable loss", loss)
        if teacher is not None and target is not None:
            raise ConfigError(f"{name}.target", "either a teacher tap or a batch target, not both",
                              {"teacher": teacher, "target": target})
        self.name, self.loss, self.student, self.teacher, self.target = name, loss, student, teacher, target
        self.weight = as_schedule(weight, f"{name}.weight")
        self.options = dict(options)
        # decided once: checking the Schedule protocol on every option every step is slow
        self._scheduled = [k for k, v in self.options.items()
                           if isinstance(v, Schedule) and not isinstance(v, nn.Module)]
        if "temperature" in self.options:
            temperature = self.options["temperature"]
            for p in _probes(temperature) if callable(temperature) else (0.0,):
                check_temperature(temperature(p) if callable(temperature) else temperature,
                                  f"{name}.temperature")

    def resolved_options(self, progress: float) -> dict[str, Any]:
        """Options with every schedule evaluated at ``progress``."""
        if not self._scheduled:
            return self.options
        options = dict(self.options)
        for key in self._scheduled:
            options[key] = options[key](progress)
        return options

    def __call__(self, student_out: Mapping[str, Any], teacher_out: Mapping[str, Any] | None,
                 batch: Mapping[str, Any], progress: float) -> torch.Tensor:
        """The unweighted loss value of this term."""
        try:
            prediction = student_out[self.student]
        except KeyError:
            raise _missing(student_out, self.student, f"{self.name}.student", "student") from None
        if self.teacher is not None:
            if teacher_out is None:
                raise ConfigError(f"{self.name}.teacher", "a teacher signal for this term", None)
            try:
                args: tuple = (prediction, teacher_out[self.teacher])
            except KeyError:
                raise _missing(teacher_out, self.teacher, f"{self.name}.teacher", "teacher") from None
        elif self.target is not None:
            if self.target not in batch:
                raise ConfigError(f"{self.name}.target", f"a batch key among {sorted(batch)}", self.target)
            args = (prediction, batch[self.target])
        else:
            args = (prediction,)
        return self.loss(*args, **(self.resolved_options(progress) if self._scheduled else self.options))


def _missing(outputs: Mapping[str, Any], tap: str, argument: str, whose: str) -> TapError:
    """The error for a term reading a tap that ``outputs`` lacks: the term's argument and the taps there are."""
    hint = (f"the {whose}'s forward returned no logits (a bare encoder?): read a tap instead, or give the "
            "model a head") if tap == LOGITS else f"declare {tap!r} among the objective's taps"
    return TapError(argument, f"one of the {whose}'s outputs {sorted(outputs)}", tap, hint=hint)


_LOG_NAMES: dict[tuple[str, ...], list[str]] = {}  # (prefix, term names...) -> logged names


@dataclass
class ObjectiveResult:
    """The weighted total and each term's unweighted value."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor]

    def log_values(self, prefix: str = "loss/", extra: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
        """Plain floats for logging: the total and every term (and ``extra`` scalars, under their own names),
        read from the device in one transfer."""
        names = _LOG_NAMES.get((prefix, *self.terms))
        if names is None:  # built once per prefix and set of term names: this runs every step
            names = _LOG_NAMES[(prefix, *self.terms)] = [f"{prefix}total", *(f"{prefix}{k}" for k in self.terms)]
        tensors = [self.total, *self.terms.values()]
        if extra:
            names, tensors = [*names, *extra], [*tensors, *extra.values()]
        if self.total.is_cpu:  # no transfer to save: plain reads are the cheapest
            return dict(zip(names, map(torch.Tensor.item, tensors), strict=True))
        stacked = torch.stack([t.detach().float().reshape(()) for t in tensors])
        return dict(zip(names, stacked.tolist(), strict=True))


class Objective(nn.Module):
    """A weighted sum of ``Term``s. Holds trainable losses (projections) as submodules."""

    def __init__(self, *terms: Term) -> None:
        super().__init__()
        if not terms:
            raise ConfigError("terms", "at least one Term", "none")
        names = [t.name for t in terms]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError("terms", "unique term names", duplicates)
        keys = [_module_key(n) for n in names]
        clashes = sorted({n for n, k in zip(names, keys) if keys.count(k) > 1})
        if clashes:
            raise ConfigError("terms", "term names that stay distinct with '.' read as '/'", clashes)
        self.terms = list(terms)
        self.trainable = nn.ModuleDict({_module_key(t.name): t.loss for t in terms
                                        if isinstance(t.loss, nn.Module)})

    @property
    def student_taps(self) -> list[str]:
        """The student taps the terms read."""
        return list(dict.fromkeys(t.student for t in self.terms))

    @property
    def teacher_taps(self) -> list[str]:
        """The teacher taps the terms read (empty when no term needs a teacher)."""
        return list(dict.fromkeys(t.teacher for t in self.terms if t.teacher is not None))

    @property
    def needs_teacher(self) -> bool:
        """Whether any term reads the teacher."""
        return bool(self.teacher_taps)

    def validate(self, student: nn.Module, teacher: nn.Module | None = None) -> None:
        """Resolve every tap now, so that a wrong path fails before training starts."""
        for path in self.student_taps:
            if path != LOGITS:
                resolve(student, path)
        if teacher is not None:
            for path in self.teacher_taps:
                if path != LOGITS:
                    resolve(teacher, path)

    def forward(self, student_out: Mapping[str, Any], teacher_out: Mapping[str, Any] | None,
                batch: Mapping[str, Any], progress: float = 0.0) -> ObjectiveResult:
        """Evaluate every term at ``progress`` and return the weighted total and the parts."""
        values: dict[str, torch.Tensor] = {}
        total: torch.Tensor | None = None
        for term in self.terms:
            value = values[term.name] = term(student_out, teacher_out, batch, progress)
            weight = term.weight
            weight = weight.value if type(weight) is Constant else weight(progress)  # (a constant: no call per step)
            if weight != 0.0:
                if total is None:
                    total = value * weight
                elif isinstance(weight, int | float):  # the multiply and the sum in one op
                    total = torch.add(total, value, alpha=weight)
                else:
                    total = total + value * weight
        if total is None:
            total = sum(values.values()) * 0.0
        return ObjectiveResult(total=total, terms=values)
