"""Specs a user writes wherever a recipe names data or a model: ``scheme:rest`` strings, ``module:function``
builders (imported only from trusted packages), and weights files loaded with errors that say what does not
fit. Each domain turns these into its own datasets and models; the checks here are shared."""

from __future__ import annotations

import importlib
import inspect
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from kd_core.errors import ConfigError, KDError

__all__ = ["DEFAULT_TRUSTED", "call_with_accepted", "check_trust", "is_builder_spec", "load_weights_into",
           "resolve_builder", "split_spec"]

#: Packages whose ``module:function`` builders are imported without ``--trust``.
DEFAULT_TRUSTED = ("kd_core", "kd_vision", "kd_nlu", "kd_speech", "kd_generative", "kd_edge", "torchvision.models")


def split_spec(value: Any, argument: str, schemes: Sequence[str]) -> tuple[str, str]:
    """``"imagefolder:DIR"`` -> ``("imagefolder", "DIR")``; ``ConfigError`` naming ``argument`` for a scheme
    outside ``schemes`` or an empty rest."""
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(argument, f"a spec '<scheme>:<value>' with scheme one of {list(schemes)}", value)
    scheme, _, rest = value.partition(":")
    if scheme not in schemes or not rest:
        raise ConfigError(argument, f"a spec '<scheme>:<value>' with scheme one of {list(schemes)}", value)
    return scheme, rest


def is_builder_spec(value: str) -> bool:
    """Whether ``value`` reads as ``package.module:function`` (a dotted module path, one colon, a name)."""
    module, sep, function = value.partition(":")
    return bool(sep) and function.isidentifier() and all(part.isidentifier() for part in module.split("."))


_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\.?")


def check_trust(prefixes: Iterable[str] | None, argument: str = "--trust") -> tuple[str, ...]:
    """``prefixes`` (``--trust``) as a tuple, each a dotted Python package name such as ``my_models`` or
    ``my_pkg.nets``; an empty or malformed one (which would trust nothing, or everything) is a ``ConfigError``."""
    out = tuple(prefixes or ())
    for prefix in out:
        if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
            raise ConfigError(argument, "a package name such as my_models or my_pkg.nets", prefix)
    return out


def _trusted(module: str, prefixes: Iterable[str]) -> bool:
    return any(module == p.rstrip(".") or module.startswith(p.rstrip(".") + ".") for p in prefixes)


def resolve_builder(reference: str, argument: str, trusted: Iterable[str] = (), *,
                    untrusted: type[KDError] = ConfigError, hint: str | None = None) -> Callable[..., Any]:
    """The callable named by ``"package.module:function"``, imported only from ``DEFAULT_TRUSTED`` or
    ``trusted`` packages (the CLI's ``--trust PREFIX``): importing runs the module's code. An untrusted
    module is an ``untrusted`` error (e.g. ``CheckpointError`` for a builder named in a file), with ``hint``
    (default: how to add it with ``--trust``)."""
    if not isinstance(reference, str) or not is_builder_spec(reference):
        raise ConfigError(argument, "a builder 'package.module:function'", reference)
    module_name, _, function = reference.partition(":")
    prefixes = (*DEFAULT_TRUSTED, *trusted)
    if not _trusted(module_name, prefixes):
        advice = f"importing runs its code: add --trust {module_name.split('.')[0]} if you trust it"
        raise untrusted(argument, f"a builder in a trusted package {list(prefixes)}", reference, hint=hint or advice)
    try:
        target = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as err:
        raise ConfigError(argument, "an importable 'package.module:function'", reference, hint=str(err)) from None
    if not callable(target):
        raise ConfigError(argument, "a callable that returns an nn.Module", reference)
    return target


def call_with_accepted(function: Callable[..., Any], offered: dict[str, Any], through_kwargs: Sequence[str] = ()
                       ) -> Any:
    """``function(**kwargs)`` with the entries of ``offered`` that its signature names, plus those listed in
    ``through_kwargs`` when it takes ``**kwargs`` (e.g. ``num_classes`` for torchvision's builders, which
    forward their keyword arguments to the model class)."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return function()
    var_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    return function(**{k: v for k, v in offered.items() if k in parameters or (var_keyword and k in through_kwargs)})


def load_weights_into(model: nn.Module, path: str | os.PathLike[str], argument: str) -> nn.Module:
    """Load a safetensors state dict into ``model``; a file that is missing, unreadable or does not fit the
    architecture is a ``ConfigError`` naming ``argument``, with the missing, unexpected and mis-shaped keys."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    file = Path(path)
    if file.suffix != ".safetensors" or not file.is_file():
        raise ConfigError(argument, "an existing .safetensors weights file", str(path))
    try:
        state = load_file(str(file))
    except (SafetensorError, OSError, ValueError) as err:
        raise ConfigError(argument, "a readable safetensors file", str(path), hint=str(err)) from None
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in set(own) & set(state)
                    if state[k].shape != own[k].shape)
    if missing or unexpected or shapes:
        problems = [f"{len(missing)} missing (e.g. {missing[:3]})" if missing else "",
                    f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})" if unexpected else "",
                    f"{len(shapes)} of another shape (file vs model, e.g. {shapes[:2]})" if shapes else ""]
        raise ConfigError(argument, f"weights that fit the model ({type(model).__name__}, {len(own)} tensors)",
                          f"{path}: " + "; ".join(p for p in problems if p))
    model.load_state_dict(state)
    return model
