"""ONNX export through torch's dynamo exporter, and the parity check that always follows it.

``export_onnx`` writes one self-contained ``.onnx`` file (weights inside, batch axis dynamic). If the dynamo
exporter fails, the TorchScript exporter is tried once and the result says which exporter wrote the file
and why the first one failed. If both fail, an :class:`ExportError` names the operator that has no ONNX
lowering. ``parity`` runs the same inputs through PyTorch and ONNX Runtime and reports the max absolute
error and, given labels, the task-metric delta.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import re
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from kd_core.errors import ConfigError, KDError
from kd_core.metrics import accuracy
from torch import nn

__all__ = ["ExportError", "ExportResult", "ParityResult", "export_onnx", "file_size", "node_module_paths",
           "onnx_session", "parity", "run_onnx"]

DEFAULT_OPSET = 18
#: The ONNX opset versions an export may ask for (inclusive).
OPSETS = (7, 23)


class ExportError(KDError, RuntimeError):
    """A model cannot be exported to ONNX (the ``received`` value names the operator)."""


@dataclass
class ExportResult:
    """Where the ONNX file went, which exporter wrote it (``dynamo`` or ``torchscript``) and why a fallback
    happened (``dynamo_error``, empty when dynamo succeeded)."""

    path: str
    exporter: str
    opset: int
    dynamic_batch: bool
    seconds: float
    size_bytes: int
    input_names: list[str]
    output_names: list[str]
    dynamo_error: str = ""


@dataclass
class ParityResult:
    """PyTorch vs ONNX Runtime on the same inputs.

    ``max_abs_error`` / ``mean_abs_error`` are over every output element; ``torch_metric``, ``onnx_metric`` and
    ``metric_delta`` (onnx − torch) are set only when labels were given. ``passed``: ``max_abs_error <= atol``.
    """

    max_abs_error: float
    mean_abs_error: float
    samples: int
    atol: float
    passed: bool
    metric_name: str | None = None
    torch_metric: float | None = None
    onnx_metric: float | None = None
    metric_delta: float | None = None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write this result as JSON (atomically) and return the path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        os.replace(tmp, target)
        return target


# --------------------------------------------------------------------------------------------------
# helpers shared by the other modules


def file_size(path: str | os.PathLike[str]) -> int:
    """Bytes on disk of an ONNX model, including an external-data file beside it if there is one."""
    path = Path(path)
    size = path.stat().st_size
    data = path.with_name(path.name + ".data")
    return size + (data.stat().st_size if data.is_file() else 0)


def check_model_path(path: Any, argument: str = "model_path") -> Path:
    """``path`` as a ``Path`` to an existing ``.onnx`` file, else a ``ConfigError`` naming ``argument``."""
    if not isinstance(path, str | os.PathLike):
        raise ConfigError(argument, "a path to an .onnx file", type(path).__name__)
    path = Path(path)
    if not path.is_file():
        raise ConfigError(argument, "an existing .onnx file", str(path))
    return path


def onnx_session(path: str | os.PathLike[str], threads: int | None = None) -> ort.InferenceSession:
    """A CPU ONNX Runtime session; ``threads`` sets intra-op threads (inter-op 1, sequential execution)."""
    path = check_model_path(path)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def run_onnx(session: ort.InferenceSession, inputs: torch.Tensor | np.ndarray, batch_size: int = 256) -> np.ndarray:
    """First output of ``session`` over ``inputs`` (one input tensor), in batches of ``batch_size``."""
    array = inputs.detach().cpu().numpy() if isinstance(inputs, torch.Tensor) else np.asarray(inputs)
    name = session.get_inputs()[0].name
    outputs = [session.run(None, {name: array[i:i + batch_size]})[0] for i in range(0, len(array), batch_size)]
    return np.concatenate(outputs, axis=0)


def node_module_paths(model: onnx.ModelProto) -> dict[str, str]:
    """ONNX node name -> the PyTorch module path it came from (``layers.3``), read from the dynamo
    exporter's ``pkg.torch.onnx.name_scopes`` metadata; nodes without it are left out."""
    paths = {}
    for node in model.graph.node:
        for prop in node.metadata_props:
            if prop.key == "pkg.torch.onnx.name_scopes":
                with contextlib.suppress(ValueError, SyntaxError):
                    scopes = [s for s in ast.literal_eval(prop.value)[:-1] if s]
                    if scopes:
                        paths[node.name] = scopes[-1]
    return paths


# --------------------------------------------------------------------------------------------------
# export

_OPERATOR_PATTERNS = (
    re.compile(r"OpOverload\(op='([^']+)'"),
    re.compile(r"target=torch\.ops\.([\w.]+?)(?:\.default)?\]?\("),
    re.compile(r"unrecognized namespace ([\w:.]*\w)"),
    re.compile(r"export of operator ([\w:.]*\w)"),
    re.compile(r"\b(aten::\w+|prim::\w+)"),
    re.compile(r"\b([a-z_]\w*::\w+)"),
)


def failing_operator(*messages: str) -> str | None:
    """The operator named in an exporter's error message (``aten::foo``, ``my_lib.op``), if any."""
    for pattern in _OPERATOR_PATTERNS:
        for message in messages:
            found = pattern.search(message)
            if found:
                return found.group(1)
    return None


def _as_tuple(example_inputs: Any) -> tuple[torch.Tensor, ...]:
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else example_inputs
    if not isinstance(inputs, tuple | list) or not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise ConfigError("example_inputs", "a tensor or a non-empty tuple of tensors",
                          type(example_inputs).__name__)
    return tuple(inputs)


def _quiet(call: Callable[[], Any]) -> Any:
    """Run ``call`` with the exporters' progress lines and warnings kept off the console."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return call()


def export_onnx(model: nn.Module, example_inputs: torch.Tensor | Sequence[torch.Tensor], path: str | os.PathLike[str],
                *, opset: int = DEFAULT_OPSET, dynamic_batch: bool = True,
                input_names: Sequence[str] | None = None, output_names: Sequence[str] = ("logits",)) -> ExportResult:
    """Export ``model`` (in eval mode; its training flags are restored) to a single ``.onnx`` file at ``path``.

    The dynamo exporter (``torch.onnx.export(..., dynamo=True)``) runs first; on failure the TorchScript
    exporter runs, and ``ExportResult.exporter`` / ``dynamo_error`` record it. With ``dynamic_batch`` the
    first axis of every input is symbolic (``batch``). Raises :class:`ExportError` naming the operator when
    neither exporter can translate the model.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError("model", "a torch.nn.Module", type(model).__name__)
    inputs = _as_tuple(example_inputs)
    if isinstance(opset, bool) or not isinstance(opset, int) or not OPSETS[0] <= opset <= OPSETS[1]:
        raise ConfigError("opset", f"an ONNX opset version in [{OPSETS[0]}, {OPSETS[1]}]", opset)
    if not isinstance(path, str | os.PathLike) or not str(path).endswith(".onnx"):
        raise ConfigError("path", "a file path ending in .onnx", path)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(input_names or (["input"] if len(inputs) == 1 else [f"input_{i}" for i in range(len(inputs))]))
    if len(names) != len(inputs):
        raise ConfigError("input_names", f"{len(inputs)} names (one per input)", names)
    outputs = list(output_names)

    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    start = time.perf_counter()
    dynamo_error = ""
    try:
        try:
            batch = torch.export.Dim("batch")
            shapes = tuple({0: batch} for _ in inputs) if dynamic_batch else None
            _quiet(lambda: torch.onnx.export(model, inputs, str(path), dynamo=True, external_data=False,
                                             opset_version=opset, dynamic_shapes=shapes, input_names=names,
                                             output_names=outputs, verbose=False))
            exporter = "dynamo"
        except Exception as err:  # any exporter failure: try the fallback, then a KDError
            dynamo_error = f"{type(err).__name__}: {err}"
            axes = {name: {0: "batch"} for name in names + outputs} if dynamic_batch else None
            try:
                _quiet(lambda: torch.onnx.export(model, inputs, str(path), dynamo=False, opset_version=opset,
                                                 dynamic_axes=axes, input_names=names, output_names=outputs))
                exporter = "torchscript"
            except Exception as fallback:
                operator = failing_operator(dynamo_error, str(fallback))
                path.unlink(missing_ok=True)
                raise ExportError(
                    "model", "operators that have an ONNX lowering",
                    f"operator {operator}" if operator else "an untranslatable graph",
                    hint=f"neither the dynamo nor the TorchScript exporter could translate it; dynamo said: "
                         f"{_summary(dynamo_error)}") from None
    finally:
        for module, flag in flags:
            module.training = flag
    return ExportResult(path=str(path), exporter=exporter, opset=opset, dynamic_batch=dynamic_batch,
                        seconds=time.perf_counter() - start, size_bytes=file_size(path), input_names=names,
                        output_names=outputs, dynamo_error=_summary(dynamo_error))


def _summary(message: str, limit: int = 300) -> str:
    """The most telling line of an exporter error (the exception summary if there is one)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if "No ONNX function found" in line or "Unsupported" in line or "unrecognized" in line:
            return line[:limit]
    return (lines[0] if lines else "")[:limit]


# --------------------------------------------------------------------------------------------------
# parity


def _batches(inputs: Any) -> torch.Tensor:
    if isinstance(inputs, np.ndarray):
        inputs = torch.from_numpy(inputs)
    if isinstance(inputs, torch.Tensor):
        if inputs.dim() == 0 or len(inputs) == 0:
            raise ConfigError("inputs", "a non-empty batch of inputs [N, ...]", tuple(inputs.shape))
        return inputs.float()
    if isinstance(inputs, Iterable):
        parts = [b if isinstance(b, torch.Tensor) else torch.as_tensor(np.asarray(b)) for b in inputs]
        if not parts:
            raise ConfigError("inputs", "a non-empty batch of inputs", "an empty iterable")
        return torch.cat(parts).float()
    raise ConfigError("inputs", "a tensor [N, ...] or an iterable of batches", type(inputs).__name__)


def parity(model: nn.Module, onnx_path: str | os.PathLike[str], inputs: torch.Tensor | Iterable[torch.Tensor],
           labels: torch.Tensor | None = None, *, metric: Callable[[torch.Tensor, torch.Tensor], float] | None = None,
           metric_name: str | None = None, atol: float = 1e-4, batch_size: int = 256,
           save_to: str | os.PathLike[str] | None = None) -> ParityResult:
    """Compare ``model`` (PyTorch, eval mode) with the ONNX model at ``onnx_path`` (ONNX Runtime, CPU) on
    ``inputs``. With ``labels`` the task metric (``metric(logits, labels)``, default accuracy) is computed on
    both sides. ``save_to``: also write the result as JSON there.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError("model", "a torch.nn.Module", type(model).__name__)
    onnx_path = check_model_path(onnx_path, "onnx_path")
    x = _batches(inputs)
    if labels is not None and (not isinstance(labels, torch.Tensor) or len(labels) != len(x)):
        raise ConfigError("labels", f"a tensor of {len(x)} labels (one per input)",
                          tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__)
    if not atol > 0:
        raise ConfigError("atol", "a tolerance > 0", atol)
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        with torch.inference_mode():
            reference = torch.cat([model(x[i:i + batch_size].to(device)).float().cpu()
                                   for i in range(0, len(x), batch_size)])
    finally:
        for module, flag in flags:
            module.training = flag
    onnx_out = torch.from_numpy(run_onnx(onnx_session(onnx_path), x, batch_size)).float()
    if onnx_out.shape != reference.shape:
        raise ConfigError("onnx_path", f"a model whose output has shape {tuple(reference.shape)}",
                          tuple(onnx_out.shape))
    diff = (onnx_out - reference).abs()
    result = ParityResult(max_abs_error=float(diff.max()), mean_abs_error=float(diff.double().mean()),
                          samples=len(x), atol=float(atol), passed=bool(float(diff.max()) <= atol))
    if labels is not None:
        score = metric or accuracy
        result.metric_name = metric_name or getattr(score, "__name__", "metric")
        result.torch_metric = float(score(reference, labels))
        result.onnx_metric = float(score(onnx_out, labels))
        result.metric_delta = result.onnx_metric - result.torch_metric
    if save_to is not None:
        result.save(save_to)
    return result
