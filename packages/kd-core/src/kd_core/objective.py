"""The objective: a weighted sum of named loss terms over student taps, teacher taps and batch targets.

It returns the total and each term (for logging), and works inside any loop::

    objective = Objective(
        Term("kd", kl_divergence, student="logits", teacher="logits", weight=0.9, temperature=4.0),
        Term("ce", cross_entropy, student="logits", target="label", weight=0.1),
    )
    result = objective(student_out, teacher_out, batch, progress=0.3)
    result.total.backward()

A term can also weigh samples (``sample_weight=``: a batch key or a ``SampleWeights`` provider; the loss is
then asked for ``reduction="none"``) and read extra batch entries as loss keywords (``inputs={"mask":
"attention_mask"}``). A term's options and inputs are checked against its loss's signature when it is built.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

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


class SampleWeights(Protocol):
    """A per-sample weight provider for ``Term(..., sample_weight=provider)``.

    Called once per step with the batch, the student's and the teacher's outputs (``None`` without a teacher)
    and the training progress; returns one weight per sample (``[B]``). The term returns
    ``mean_i(w_i · ℓ_i)`` = Σ w_i ℓ_i / B, so a provider that wants Σ w_i ℓ_i / Σ w_i returns ``w · B / Σ w``.
    """

    def __call__(self, batch: Mapping[str, Any], student_out: Mapping[str, Any],
                 teacher_out: Mapping[str, Any] | None, progress: float) -> torch.Tensor:
        """The batch's per-sample weights ``[B]``."""
        ...


class Term:
    """One loss term: ``weight(progress) * loss(student[tap], reference, **options(progress), **inputs)``.

    The reference is a teacher tap (``teacher=``) or a batch entry (``target=``), or nothing for
    terms over the student alone. Options may be numbers or schedules (e.g. a temperature schedule).
    A loss that is an ``nn.Module`` (e.g. ``HiddenMSE``) is trained along with the student.

    ``inputs`` maps loss keywords to batch keys: ``inputs={"mask": "attention_mask"}`` passes
    ``mask=batch["attention_mask"]`` every step. ``sample_weight`` weighs each sample: a batch key holding
    one weight per sample, or a ``SampleWeights`` provider; the loss is then called with ``reduction="none"``
    (axes after the batch axis are averaged) and the term is Σ_i w_i ℓ_i / B.

    Every option and input must be a keyword the loss accepts (checked here, against the signature of the
    loss, or of its ``forward`` for an ``nn.Module``), unless the loss takes ``**kwargs``.
    """

    def __init__(self, name: str, loss: Callable[..., torch.Tensor], student: str = LOGITS,
                 teacher: str | None = None, target: str | None = None,
                 weight: float | Schedule = 1.0, sample_weight: str | SampleWeights | None = None,
                 inputs: Mapping[str, str] | None = None, **options: Any) -> None:
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
        self.inputs = _check_inputs(name, inputs, self.options)
        self.sample_weight = _check_sample_weight(name, sample_weight, self.options)
        _check_signature(name, loss, 1 if teacher is None and target is None else 2, self.options, self.inputs,
                         sample_weight is not None)
        # decided once: checking the Schedule protocol on every option every step is slow
        self._scheduled = [k for k, v in self.options.items()
                           if isinstance(v, Schedule) and not isinstance(v, nn.Module)]
        self._inputs = tuple(self.inputs.items())
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
        """The unweighted loss value of this term (weighted per sample when it has ``sample_weight``)."""
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
        options = self.resolved_options(progress) if self._scheduled else self.options
        if self._inputs:
            options = {**options, **self._batch_inputs(batch)}
        if self.sample_weight is None:
            return self.loss(*args, **options)
        per_sample = self.loss(*args, reduction="none", **options)
        return self._weigh(per_sample, self._weights(batch, student_out, teacher_out, progress))

    def _batch_inputs(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """``{loss keyword: batch entry}`` for this step."""
        try:
            return {keyword: batch[key] for keyword, key in self._inputs}
        except KeyError:
            keyword, key = next((k, v) for k, v in self._inputs if v not in batch)
            raise ConfigError(f"{self.name}.inputs.{keyword}", f"a batch key among {sorted(batch)}", key) from None

    def _weights(self, batch: Mapping[str, Any], student_out: Mapping[str, Any],
                 teacher_out: Mapping[str, Any] | None, progress: float) -> Any:
        """This batch's per-sample weights, from the batch or the provider."""
        provider = self.sample_weight
        if isinstance(provider, str):
            if provider not in batch:
                raise ConfigError(f"{self.name}.sample_weight", f"a batch key among {sorted(batch)}", provider)
            return batch[provider]
        return provider(batch, student_out, teacher_out, progress)  # type: ignore[misc]

    def _weigh(self, per_sample: torch.Tensor, weights: Any) -> torch.Tensor:
        """Σ_i w_i ℓ_i / B over per-sample losses (axes after the first averaged)."""
        if not isinstance(per_sample, torch.Tensor) or per_sample.ndim == 0:
            raise ConfigError(f"{self.name}.sample_weight", "a loss returning one value per sample with "
                              "reduction='none'", getattr(per_sample, "shape", per_sample))
        if per_sample.ndim > 1:
            per_sample = per_sample.flatten(1).mean(1)
        w = torch.as_tensor(weights)
        if w.shape != per_sample.shape:
            raise ConfigError(f"{self.name}.sample_weight", f"one weight per sample, shape {tuple(per_sample.shape)}",
                              tuple(w.shape))
        return (w.to(per_sample.device, per_sample.dtype) * per_sample).mean()


def _check_inputs(name: str, inputs: Mapping[str, str] | None, options: Mapping[str, Any]) -> dict[str, str]:
    """``inputs`` as a plain dict of loss keyword -> batch key, or a ``ConfigError`` naming the bad entry."""
    if inputs is None:
        return {}
    if not isinstance(inputs, Mapping):
        raise ConfigError(f"{name}.inputs", "a mapping {loss keyword: batch key}", inputs)
    for keyword, key in inputs.items():
        if not isinstance(keyword, str) or not keyword.isidentifier() or not isinstance(key, str):
            raise ConfigError(f"{name}.inputs", "a mapping {loss keyword: batch key} of strings", {keyword: key})
        if keyword in options:
            raise ConfigError(f"{name}.inputs.{keyword}", "a keyword not also given as an option", keyword)
    return dict(inputs)


def _check_sample_weight(name: str, sample_weight: Any, options: Mapping[str, Any]) -> Any:
    """``sample_weight`` if it is None, a batch key or a callable provider; else a ``ConfigError``."""
    if sample_weight is None:
        return None
    if not (isinstance(sample_weight, str) and sample_weight) and not callable(sample_weight):
        raise ConfigError(f"{name}.sample_weight", "None, a batch key, or a provider "
                          "(batch, student_out, teacher_out, progress) -> one weight per sample", sample_weight)
    if "reduction" in options:
        raise ConfigError(f"{name}.reduction", "no reduction option with sample_weight (the term asks the loss "
                          "for reduction='none' and weighs the samples itself)", options["reduction"])
    return sample_weight


def _check_signature(name: str, loss: Callable[..., Any], positional: int, options: Mapping[str, Any],
                     inputs: Mapping[str, str], weighted: bool) -> None:
    """Raise ``ConfigError`` unless ``loss`` accepts the term's positional arguments, options and inputs.

    Losses whose signature cannot be read (builtins) or that take ``**kwargs`` accept any keyword.
    """
    target = loss.forward if isinstance(loss, nn.Module) else loss
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return
    params = list(signature.parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    filled = [p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                                   inspect.Parameter.POSITIONAL_OR_KEYWORD)][:positional]
    accepted = [p.name for p in params if p.name not in filled and p.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    expected = f"one of {accepted}" if accepted else "no keyword (the loss takes none)"
    if weighted and "reduction" not in accepted:
        raise ConfigError(f"{name}.sample_weight", "a loss that takes reduction='none' (per-sample values)",
                          getattr(loss, "__name__", type(loss).__name__),
                          hint="give the loss a reduction argument, or drop sample_weight")
    for argument, keyword in [*((o, o) for o in options), *((f"inputs.{k}", k) for k in inputs)]:
        if keyword not in accepted:
            close = difflib.get_close_matches(keyword, accepted, n=1)
            raise ConfigError(f"{name}.{argument}", expected, keyword,
                              hint=f"did you mean {close[0]!r}?" if close else "")
    try:
        signature.bind(*range(positional), **dict.fromkeys([*options, *inputs, *(["reduction"] if weighted else [])]))
    except TypeError as err:
        what = {1: "the student's value", 2: "the student's value and a reference"}[positional]
        raise ConfigError(f"{name}.loss", f"a loss called with {what} and the term's options and inputs",
                          getattr(loss, "__name__", type(loss).__name__), hint=str(err)) from None


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


def hinton_objective(temperature: float | Schedule = 4.0, alpha: float = 0.9, sample_weight: Any = None,
                     label: str = "label") -> Objective:
    """Hinton, Vinyals and Dean (arXiv:1503.02531): α·T²·KL(p_t^T ‖ p_s^T) + (1 − α)·CE(y, p_s) over logits;
    ``sample_weight`` (a ``SampleWeights`` provider or batch key) weighs the KD term per sample."""
    from kd_core.losses import cross_entropy, kl_divergence

    return Objective(
        Term("kd", kl_divergence, student=LOGITS, teacher=LOGITS, weight=alpha, temperature=temperature,
             direction="forward", sample_weight=sample_weight),
        Term("ce", cross_entropy, student=LOGITS, target=label, weight=1.0 - alpha))


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
