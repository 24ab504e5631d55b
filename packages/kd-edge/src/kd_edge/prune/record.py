"""Save and reload a pruned model with no pickle anywhere: an architecture record plus safetensors.

A pruned-model directory holds ``architecture.json`` and ``model.safetensors``. The record says how
to rebuild the module tree:

- ``builder``: ``"package.module:function"`` and its JSON ``kwargs``: the model *before* pruning;
- ``edits``: structural edits replayed in order on the fresh model (``drop_layers``: remove blocks of
  a stack; ``cut_inner_levels``: remove a U-Net's innermost encoders and decoders), noted on the model by
  the pruning functions themselves;
- ``attributes``: every plain attribute (int, float, bool, str, tuples of them) of a module that
  differs from the rebuilt model, e.g. ``in_channels`` of a pruned conv or ``num_attention_heads`` of
  a head-pruned attention module;
- ``shapes``: the shape of every tensor of the state dict; parameters and buffers of the rebuilt
  model are replaced by empty tensors of these shapes, then the weights are loaded strictly.

Builders are imported only from trusted packages (kd's own, by default; Hugging Face classes go
through ``kd_edge.prune.builders:hf_model``), so a record cannot name an arbitrary callable.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from kd_core import specs
from kd_core.checkpoint import load_weights, save_weights
from kd_core.errors import CheckpointError, ConfigError
from torch import nn

__all__ = ["RECORD", "TRUSTED_PREFIXES", "WEIGHTS", "attach_source", "build", "conform", "encode_attribute",
           "load_pruned", "make_record", "module_attributes", "note_edit", "read_record", "resolve_builder",
           "save_pruned", "source_of"]

RECORD = "architecture.json"
WEIGHTS = "model.safetensors"
FORMAT = "kd-edge-pruned/1"
TRUSTED_PREFIXES = specs.DEFAULT_TRUSTED  # the packages whose builders a record may name
_SOURCE = "_kd_edge_source"
_SIMPLE = (bool, int, float, str, type(None))


# -- where a model came from ---------------------------------------------------------------------------

def _json_copy(value: Any, argument: str) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        raise ConfigError(argument, "JSON-serialisable values (numbers, strings, lists, dicts)", value) from None


def attach_source(model: nn.Module, builder: str, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """Remember on ``model`` that ``builder(**kwargs)`` built it (a JSON copy, taken now); clears edits."""
    if not isinstance(builder, str) or ":" not in builder:
        raise ConfigError("builder", "a reference 'package.module:function'", builder)
    model.__dict__[_SOURCE] = {"builder": builder, "kwargs": _json_copy(kwargs or {}, "kwargs"), "edits": []}
    return model


def source_of(model: nn.Module) -> dict[str, Any] | None:
    """The builder, kwargs and structural edits noted on ``model`` (a copy), or None."""
    source = model.__dict__.get(_SOURCE)
    return copy.deepcopy(source) if source is not None else None


def note_edit(model: nn.Module, edit: dict[str, Any]) -> None:
    """Append a structural edit (replayed by ``load_pruned``) to the model's source, if it has one."""
    source = model.__dict__.get(_SOURCE)
    if source is not None:
        source["edits"].append(_json_copy(edit, "edit"))


def resolve_builder(reference: str, trusted: Iterable[str] = ()) -> Callable[..., nn.Module]:
    """The function named by ``"package.module:function"``, imported only from a trusted package
    (``kd_core.specs.resolve_builder``; an untrusted one named in a record is a ``CheckpointError``)."""
    return specs.resolve_builder(reference, "builder", trusted, untrusted=CheckpointError,
                                 hint="pass trusted=('your_package.',) if you wrote this record yourself")


def build(builder: str, trusted: Iterable[str] = (), **kwargs: Any) -> nn.Module:
    """``builder(**kwargs)``, with its source attached so a pruned copy can be saved and rebuilt."""
    model = resolve_builder(builder, trusted)(**kwargs)
    if not isinstance(model, nn.Module):
        raise ConfigError("builder", "a function that returns an nn.Module", f"{builder} -> {type(model).__name__}")
    return attach_source(model, builder, kwargs)


# -- the record ----------------------------------------------------------------------------------------

def _simple(value: Any) -> bool:
    if isinstance(value, _SIMPLE):
        return True
    return isinstance(value, tuple | list) and all(_simple(v) for v in value)


def encode_attribute(value: Any) -> Any:
    """A plain attribute value as JSON (tuples tagged, so they come back as tuples)."""
    if isinstance(value, tuple):
        return {"__tuple__": [encode_attribute(v) for v in value]}
    if isinstance(value, list):
        return [encode_attribute(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "__tuple__" in value:
        return tuple(_decode(v) for v in value["__tuple__"])
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def module_attributes(model: nn.Module) -> dict[str, dict[str, Any]]:
    """``{module name: {attribute: value}}`` for every plain public attribute of every module."""
    out: dict[str, dict[str, Any]] = {}
    for name, module in model.named_modules():
        out[name] = {k: v for k, v in vars(module).items()
                     if not k.startswith("_") and k != "training" and _simple(v)}
    return out


def _rebuild(record: dict[str, Any], trusted: Iterable[str]) -> nn.Module:
    """The model before pruning, with the record's structural edits replayed."""
    model = build(record["builder"], trusted, **record["kwargs"])
    for edit in record.get("edits", []):
        if edit.get("op") == "drop_layers":
            from kd_edge.prune.layers import apply_drop  # here: layers imports this module

            apply_drop(model, edit["container"], edit["indices"])
        elif edit.get("op") == "cut_inner_levels":
            from kd_edge.prune.unet_cut import remove_trailing  # here: unet_cut imports this module

            remove_trailing(model, edit["paths"])
        else:
            raise CheckpointError("edits", "known edits ('drop_layers', 'cut_inner_levels')", edit.get("op"))
        note_edit(model, edit)
    return model


def conform(model: nn.Module, shapes: dict[str, list[int]], attributes: dict[str, dict[str, Any]] | None = None
            ) -> nn.Module:
    """Give ``model`` the recorded plain attributes, and parameters/buffers of the recorded shapes
    (empty: load the weights next). An unknown module or tensor name is a ``CheckpointError``."""
    modules = dict(model.named_modules())
    for name, values in (attributes or {}).items():
        if name not in modules:
            raise CheckpointError("attributes", "module names of the rebuilt model", name)
        for key, value in values.items():
            setattr(modules[name], key, _decode(value))
    state = model.state_dict()
    for name, shape in shapes.items():
        if name not in state:
            raise CheckpointError("shapes", "tensor names of the rebuilt model", name)
        if list(state[name].shape) == list(shape):
            continue
        owner_name, _, attr = name.rpartition(".")
        owner = modules[owner_name]
        old = getattr(owner, attr)
        fresh = torch.empty(tuple(shape), dtype=old.dtype, device=old.device)
        if isinstance(old, nn.Parameter):
            setattr(owner, attr, nn.Parameter(fresh, requires_grad=old.requires_grad))
        else:
            owner._buffers[attr] = fresh
    return model


def make_record(model: nn.Module, builder: str | None = None, kwargs: dict[str, Any] | None = None,
                trusted: Iterable[str] = (), extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The architecture record of ``model`` (see the module docstring), checked by rebuilding it."""
    source = source_of(model)
    if builder is not None:
        source = {"builder": builder, "kwargs": _json_copy(kwargs or {}, "kwargs"),
                  "edits": source["edits"] if source else []}
    if source is None:
        raise ConfigError("builder", "a builder reference (or a model made by kd_edge.prune.record.build)", None,
                          hint="pass builder='package.module:function' and kwargs=")
    record = {"format": FORMAT, **source, "attributes": {}, "shapes": {}, "extra": _json_copy(extra or {}, "extra")}
    reference = _rebuild(record, trusted)
    fresh, final = module_attributes(reference), module_attributes(model)
    missing = sorted(set(final) - set(fresh))
    if missing:
        raise CheckpointError("model", "a module tree the builder and the recorded edits rebuild", missing[:5],
                              hint="structural changes other than channel pruning, drop_layers and U-Net cuts "
                                   "are not recorded")
    for name, values in final.items():
        changed = {k: encode_attribute(v) for k, v in values.items() if fresh[name].get(k, object()) != v}
        if changed:
            record["attributes"][name] = changed
    record["shapes"] = {k: list(v.shape) for k, v in model.state_dict().items()}
    return record


def save_pruned(model: nn.Module, path: str | os.PathLike, builder: str | None = None,
                kwargs: dict[str, Any] | None = None, trusted: Iterable[str] = (),
                extra: dict[str, Any] | None = None) -> Path:
    """Write ``architecture.json`` + ``model.safetensors`` under ``path`` (a directory) and return it.

    The builder comes from ``builder``/``kwargs`` or from the model's attached source; ``extra`` (JSON)
    is stored alongside, e.g. the example input's shape. The record is verified before anything is
    written: the rebuilt model must accept the weights.
    """
    record = make_record(model, builder, kwargs, trusted, extra)
    check = conform(_rebuild(record, trusted), record["shapes"], record["attributes"])
    try:
        check.load_state_dict(model.state_dict())
    except RuntimeError as err:
        raise CheckpointError("model", "a pruned model the record rebuilds", type(model).__name__,
                              hint=str(err).splitlines()[0]) from None
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    save_weights(model, out / WEIGHTS, metadata={"format": FORMAT})
    tmp = out / f".{RECORD}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, out / RECORD)
    return out


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """The architecture record of a pruned-model directory (or of its ``architecture.json``)."""
    folder = Path(path)
    if folder.name == RECORD:
        folder = folder.parent
    if not (folder / RECORD).is_file() or not (folder / WEIGHTS).is_file():
        raise CheckpointError("path", f"a pruned-model directory holding {RECORD} and {WEIGHTS}", str(path))
    try:
        record = json.loads((folder / RECORD).read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError("path", f"a readable {RECORD}", str(path), hint=str(err)) from None
    if record.get("format") != FORMAT:
        raise CheckpointError("path", f"a record of format {FORMAT}", record.get("format"))
    return record


def load_pruned(path: str | os.PathLike, trusted: Iterable[str] = ()) -> nn.Module:
    """Rebuild a model saved by ``save_pruned`` and load its weights (safetensors; no pickle), in eval mode."""
    record = read_record(path)
    folder = Path(path).parent if Path(path).name == RECORD else Path(path)
    model = conform(_rebuild(record, trusted), record["shapes"], record["attributes"])
    load_weights(model, folder / WEIGHTS)
    return model.eval()
