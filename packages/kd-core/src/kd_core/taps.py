"""Feature taps: named intermediate outputs captured with forward hooks, never by editing a model.

A tap path names a module by its dotted path on the *unwrapped* model (DDP, FSDP and
``torch.compile`` wrappers are stripped), optionally with a kind prefix:

- ``encoder.layer.3`` or ``out:encoder.layer.3``: the module's output (the first element of a tuple);
- ``in:head``: the module's first positional input (or, without one, its first tensor keyword argument);
- ``attn:encoder.layer.3.attention.self``: the attention weights a module returns as the second
  element of its output tuple (the Hugging Face convention with ``output_attentions=True``).

The reserved name ``logits`` is the model's own return value (``.logits`` of a model output object,
or the first element of a tuple).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kd_core.errors import TapError

LOGITS = "logits"
_KINDS = ("out", "in", "attn")


def unwrap(model: nn.Module) -> nn.Module:
    """Strip DDP/FSDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers, recursively."""
    seen = 0
    while seen < 16:
        seen += 1
        if hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        elif type(model).__name__ in {"DistributedDataParallel", "DataParallel",
                                      "FullyShardedDataParallel"} and isinstance(
                getattr(model, "module", None), nn.Module):
            model = model.module
        else:
            break
    return model


@dataclass(frozen=True)
class TapPath:
    """A parsed tap path: which module, and which of its values (``out``, ``in`` or ``attn``)."""

    kind: str
    module: str

    @classmethod
    def parse(cls, path: str) -> TapPath:
        """Parse ``"kind:module.path"`` (kind defaults to ``out``)."""
        if not isinstance(path, str) or not path:
            raise TapError("tap", "a non-empty module path such as 'layer1.0' or 'attn:encoder.layer.3'", path)
        kind, sep, rest = path.partition(":")
        if not sep:
            return cls("out", path)
        if kind not in _KINDS:
            raise TapError("tap", f"a kind prefix among {list(_KINDS)}", kind, hint=f"in tap {path!r}")
        return cls(kind, rest)


def module_names(model: nn.Module) -> list[str]:
    """Every tappable module path of ``model`` (unwrapped), in registration order."""
    return [name for name, _ in unwrap(model).named_modules() if name]


def resolve(model: nn.Module, path: str) -> nn.Module:
    """Return the submodule that ``path`` names, or raise a ``TapError`` listing the nearest names."""
    tap = TapPath.parse(path)
    modules = dict(unwrap(model).named_modules())
    if tap.module in modules and tap.module:
        return modules[tap.module]
    names = [n for n in modules if n]
    nearest = difflib.get_close_matches(tap.module, names, n=5, cutoff=0.3)
    hint = f"nearest names: {nearest}" if nearest else f"the model has {len(names)} modules, e.g. {names[:5]}"
    raise TapError("tap", f"a module path of {type(unwrap(model)).__name__}", path, hint=hint)


def select_logits(output: Any) -> torch.Tensor:
    """The logits inside a model's return value (a tensor, an object with ``.logits``, or a tuple)."""
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, dict) and LOGITS in output:
        return output[LOGITS]
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TapError("logits", "a tensor, an object with .logits, a dict with 'logits' or a tuple",
                   type(output).__name__)


def _first_tensor(value: Any) -> Any:
    if isinstance(value, tuple | list) and value:
        return value[0]
    if hasattr(value, "last_hidden_state"):
        return value.last_hidden_state
    return value


class TapSet:
    """Forward hooks that capture a fixed set of tap paths while the ``capture()`` context is open.

    >>> taps = TapSet(model, ["layer1", "in:fc"])
    >>> with taps.capture() as features:
    ...     logits = model(x)
    >>> features["layer1"].shape
    """

    def __init__(self, model: nn.Module, paths: Iterable[str]) -> None:
        self.model = model
        self.paths = [p for p in dict.fromkeys(paths) if p != LOGITS]
        self._targets = {p: (TapPath.parse(p), resolve(model, p)) for p in self.paths}

    @contextmanager
    def capture(self) -> Iterator[dict[str, torch.Tensor]]:
        """Open the hooks; the yielded dict fills as the model runs and is left intact afterwards."""
        captured: dict[str, torch.Tensor] = {}
        handles = []
        for path, (tap, module) in self._targets.items():
            handles.append(module.register_forward_hook(self._hook(path, tap.kind, captured), with_kwargs=True))
        try:
            yield captured
        finally:
            for handle in handles:
                handle.remove()

    @staticmethod
    def _hook(path: str, kind: str, captured: dict[str, torch.Tensor]):
        def hook(module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
            if kind == "in":
                # the first positional input, or the first tensor passed by keyword (hidden_states=...)
                inputs = [*args, *(v for v in kwargs.values() if isinstance(v, torch.Tensor))]
                if not inputs:
                    raise TapError("tap", "a module called with at least one input", path)
                captured[path] = inputs[0]
            elif kind == "attn":
                if not (isinstance(output, tuple) and len(output) > 1 and output[1] is not None):
                    raise TapError("tap", "a module returning (output, attention_weights)", path,
                                   hint="enable output_attentions (or attn_implementation='eager')")
                captured[path] = output[1]
            else:
                captured[path] = _first_tensor(output)
        return hook

    def run(self, forward, *args, **kwargs) -> dict[str, Any]:
        """Call ``forward(*args, **kwargs)`` with hooks open; return ``{"logits": ..., path: ...}``.

        With taps open, a model that returns no logits (a bare encoder's hidden states) is fine: the result
        then has the taps only, and a term that reads ``logits`` says so when it runs."""
        if not self._targets:  # logits only: no hooks to open
            return {LOGITS: select_logits(forward(*args, **kwargs))}
        with self.capture() as captured:
            output = forward(*args, **kwargs)
        result: dict[str, Any] = {}
        with suppress(TapError):  # e.g. a bare encoder: its taps are what is distilled, no term may read logits
            result[LOGITS] = select_logits(output)
        result.update(captured)
        missing = [p for p in self.paths if p not in result]
        if missing:
            raise TapError("tap", "modules that run during the forward pass", missing)
        return result
