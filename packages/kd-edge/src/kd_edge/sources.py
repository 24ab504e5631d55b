"""Where a kd-edge command's model and data come from: one resolver for ``export``, ``quantize``, ``bench`` and
``prune``.

Model sources (exactly one):

- ``--run DIR``: a run directory of any domain whose method runs as a kd-core ``Study`` (``config.yaml`` names
  the recipe; the method is found through kd-core's registry, never by importing a domain package). ``--arm``
  picks the arm (default ``kd``, else the first non-scratch arm), ``--seed`` the seed (default the first);
- ``--model``: a built-in digit student (``cnn``, ``mlp``, ...), a pruned-model directory written by
  ``kd-edge prune``, or a ``package.module:function`` builder (``--model-kwargs`` JSON, ``--weights`` from
  safetensors; imported from trusted packages only, ``--trust PREFIX`` to add one);
- ``--hf DIR``: a local Hugging Face ``*ForImageClassification`` or ``*ForSequenceClassification`` directory
  (local files only), wrapped to return its logits;
- ``--onnx FILE`` (``quantize`` and ``bench``): an FP32 ONNX model with one input.

Data (calibration, evaluation and, for ``prune``, fine-tuning): the run's task; ``--data imagefolder:DIR``
(one sub-folder per class; ``train/`` and ``val/`` sub-folders are used as splits, otherwise a deterministic
stratified split), ``--data tensors:FILE`` (``.safetensors``/``.npz`` with ``inputs`` and integer ``labels``),
``--data digits`` (the 8x8 sklearn digits) or ``--data RUN_DIR`` (the task of a run); the data a pruned-model
directory records; or, for the built-in digit students and ONNX files, the digits.

Every check (trust, paths, the model taking the data's inputs, an ONNX input shape that fits the data) runs in
``resolve``, before a command creates its run directory.
"""

from __future__ import annotations

import argparse
import contextvars
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kd_core.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    import torch
    from kd_core.study import Study
    from kd_core.task import Task
    from torch import nn

__all__ = ["EdgeData", "Source", "add_data_arguments", "add_source_arguments",
           "hf_classifier", "resolve", "run_student", "spec_data", "task_data", "trusted_builders"]

#: Built-in digit students (``kd_edge.models.small.model_names()``), repeated so that ``--help`` needs no torch.
MODEL_NAMES = ("cnn", "cnn-wide", "mlp", "mlp-wide")
SMALL_BUILDER = "kd_edge.models.small:build_model"
RUN_BUILDER = "kd_edge.sources:run_student"
HF_CLASSIFIER = "kd_edge.sources:hf_classifier"
SCHEMES = ("imagefolder", "tensors")

_TRUST: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("kd_edge_trust", default=())


@contextmanager
def trusted_builders(prefixes: Iterable[str]) -> Iterator[None]:
    """While active, ``run_student`` may import builders from ``prefixes`` (the command's ``--trust``): a record
    never carries trust of its own."""
    token = _TRUST.set(tuple(prefixes))
    try:
        yield
    finally:
        _TRUST.reset(token)


# -- arguments ---------------------------------------------------------------------------------------------------

def add_source_arguments(parser: argparse.ArgumentParser, onnx: bool, required: bool = True) -> None:
    """``--run`` / ``--model`` / ``--hf`` (/ ``--onnx``) and the options that go with them."""
    source = parser.add_mutually_exclusive_group(required=required)
    source.add_argument("--run", help="a run directory of any domain (its config.yaml names a study recipe)")
    source.add_argument("--model", help=f"a built-in digit student ({', '.join(MODEL_NAMES)}), a pruned-model "
                                        "directory written by kd-edge prune, or a builder 'package.module:function'")
    source.add_argument("--hf", metavar="DIR", help="a local Hugging Face *ForImageClassification or "
                                                    "*ForSequenceClassification directory (needs --data)")
    if onnx:
        source.add_argument("--onnx", help="an FP32 .onnx model with one input that fits the data")
    parser.add_argument("--arm", default=None, help="--run: the arm whose student to take (default kd, else the "
                                                    "first non-scratch arm)")
    parser.add_argument("--seed", type=int, default=None,
                        help="--run: the seed of the student (default the run's first); otherwise the seed of the "
                             "data split and of any training done here (default 0)")
    parser.add_argument("--model-kwargs", default="{}", help="JSON keyword arguments for a --model builder")
    parser.add_argument("--weights", default=None,
                        help="safetensors weights for a built-in student or a builder (default: train it here)")
    parser.add_argument("--trust", action="append", default=[], metavar="PREFIX",
                        help="also import builders from this package prefix (importing runs its code)")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data`` and ``--image-size``."""
    parser.add_argument("--data", default=None,
                        help="imagefolder:DIR, tensors:FILE, digits or a run directory (default: the run's task, "
                             "the data a pruned model records, or the 8x8 digits)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="imagefolder: images resized to this side (default: the HF model's, else 32)")


# -- data --------------------------------------------------------------------------------------------------------

@dataclass
class EdgeData:
    """Inputs ``[N, ...]`` (float32) and integer labels of the train, val and test splits; the calibration inputs
    (the first ``calibration_size`` of train, never test); a description; and ``record``, the JSON that rebuilds
    this data (stored with a pruned model)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    calib_x: torch.Tensor
    source: str
    record: dict[str, Any]
    val_x: torch.Tensor | None = None
    val_y: torch.Tensor | None = None
    classes: int = 0

    def __post_init__(self) -> None:
        if not self.classes:
            self.classes = int(max(int(self.train_y.max()), int(self.test_y.max()))) + 1

    def calibrate(self, size: int, argument: str = "--calibration-size") -> EdgeData:
        """Set the calibration inputs to the first ``size`` training inputs."""
        if not 0 < size <= len(self.train_x):
            raise ConfigError(argument, f"an integer in [1, {len(self.train_x)}] (the train split's size)", size)
        self.calib_x = self.train_x[:size]
        return self


def _digits(calibration_size: int, seed: int) -> EdgeData:
    from kd_edge.data.digits import demo_data

    demo = demo_data(calibration_size=calibration_size, seed=seed)
    return EdgeData(demo.train_x, demo.train_y, demo.test_x, demo.test_y, demo.calib_x, demo.source,
                    {"kind": "digits", "seed": seed}, classes=10)


def _stacked(dataset: Any) -> tuple[Any, Any]:
    """A dataset of ``{"input", "label"}`` items as two tensors (inputs, labels)."""
    import torch

    items = [dataset[i] for i in range(len(dataset))]
    return torch.stack([item["input"] for item in items]), torch.stack([item["label"] for item in items])


def spec_data(spec: str, image_size: int | None = None, calibration_size: int = 128,
              argument: str = "--data") -> EdgeData:
    """The data a ``imagefolder:DIR`` or ``tensors:FILE`` spec names (see the module doc); ``image_size`` for
    image folders (default 32)."""
    from kd_core.data_specs import image_folder_splits, tensor_splits
    from kd_core.specs import split_spec

    scheme, rest = split_spec(spec, argument, SCHEMES)
    path = Path(rest).expanduser()
    size = int(image_size or 32)
    if scheme == "imagefolder":
        parts, names = image_folder_splits(path, size, 0.15, 0.15, argument)
        what = f"image folder {path} ({len(names)} classes, {size}×{size} RGB, scaled to [-1, 1])"
        record = {"kind": "spec", "spec": f"imagefolder:{path.resolve()}", "image_size": size}
    else:
        parts, names, shape = tensor_splits(path, 0.15, 0.15, argument)
        what = f"tensors from {path.name} (inputs {shape}, {len(names)} classes)"
        record = {"kind": "spec", "spec": f"tensors:{path.resolve()}"}
    classes = len(names)
    split = {name: _stacked(dataset) for name, dataset in parts.items()}
    (tx, ty), (vx, vy), (ex, ey) = split["train"], split["val"], split["test"]
    return EdgeData(tx, ty, ex, ey, tx[:0], what, record, val_x=vx, val_y=vy,
                    classes=classes).calibrate(min(calibration_size, len(tx)))


def _materialise(task: Task, dataset: Any, argument: str) -> tuple[Any, Any]:
    """A split as ``(inputs, labels)`` tensors: the ``input`` tensors, or for a text task (batches of
    ``input_ids``) the token ids as float32 ``[N, L]`` padded with the task's pad token (see ``_TokenIds``)."""
    import torch
    from torch.utils.data import DataLoader

    inputs, labels = [], []
    for batch in DataLoader(dataset, batch_size=256, collate_fn=task.collate):
        x = batch.get("input", batch.get("input_ids")) if isinstance(batch, dict) else None
        if not isinstance(x, torch.Tensor) or "label" not in batch:
            received = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
            raise ConfigError(argument, "a task whose batches hold one 'input' tensor (or 'input_ids') and a 'label'",
                              received, hint="kd-edge feeds models one input tensor (export, ONNX Runtime, INT8)")
        inputs.append(x)
        labels.append(batch["label"].long())
    if inputs[0].dtype != torch.long:
        return torch.cat([x.float() for x in inputs]), torch.cat(labels)
    pad = getattr(task.collate, "pad_token_id", 0)
    width = max(x.shape[1] for x in inputs)
    padded = [torch.nn.functional.pad(x, (0, width - x.shape[1]), value=pad) for x in inputs]
    return torch.cat(padded).float(), torch.cat(labels)


def is_text_task(task: Task) -> bool:
    """Whether the task's batches are token ids (``input_ids``) rather than one ``input`` tensor."""
    batch = task.example_batch(1)
    return isinstance(batch, dict) and "input_ids" in batch and "input" not in batch


def task_data(task: Task, calibration_size: int = 128, record: dict[str, Any] | None = None,
              argument: str = "--run") -> EdgeData:
    """A kd-core ``Task``'s train / val / test splits as tensors: one ``input`` tensor per sample, or a text task's
    token ids as float32 ``[N, L]`` padded to the longest text of all three splits."""
    import torch
    from kd_core.signals import default_forward

    text = is_text_task(task)
    if task.forward is not default_forward and not text:
        raise ConfigError(argument, "a task whose models take batch['input'] (kd-core's default forward) or token "
                          "ids", f"task {task.name} with its own forward")
    splits = task.data
    parts = [_materialise(task, split, argument) for split in (splits.train, splits.val, splits.test)]
    if text:  # one sequence length for every split: the exported graph and the calibration share it
        pad = float(getattr(task.collate, "pad_token_id", 0))
        width = max(x.shape[1] for x, _ in parts)
        parts = [(torch.nn.functional.pad(x, (0, width - x.shape[1]), value=pad), y) for x, y in parts]
    (train_x, train_y), (val_x, val_y), (test_x, test_y) = parts
    classes = len(task.class_names) if task.class_names else 0
    what = f"{task.description or task.name} (the run's task{', token ids' if text else ''})"
    return EdgeData(train_x, train_y, test_x, test_y, train_x[:0], what, record or {"kind": "task"}, val_x=val_x,
                    val_y=val_y, classes=classes).calibrate(min(calibration_size, len(train_x)))


# -- runs --------------------------------------------------------------------------------------------------------

def _recipe_of(run: Path, argument: str) -> dict[str, Any]:
    import yaml

    config = run / "config.yaml"
    if not run.is_dir() or not config.is_file():
        raise ConfigError(argument, "a run directory holding config.yaml (written by kd-<domain> distill)", str(run))
    try:
        recipe = (yaml.safe_load(config.read_text()) or {}).get("recipe")
    except (yaml.YAMLError, AttributeError) as err:
        raise ConfigError(argument, "a readable config.yaml", str(config), hint=str(err)) from None
    if not isinstance(recipe, dict) or "method" not in recipe:
        raise ConfigError(argument, "the config.yaml of a study run (with 'recipe:' naming a method)", str(config))
    return recipe


_STUDIES: dict[str, Study] = {}


def _study(recipe: dict[str, Any], out: Path, trust: tuple[str, ...], argument: str) -> Study:
    """The ``Study`` a run's recipe describes, through kd-core's registry (every domain's methods); built once
    per recipe and trust in a process (building a task reads its data)."""
    key = json.dumps([recipe, sorted(trust)], sort_keys=True, default=str)
    if key not in _STUDIES:
        _STUDIES[key] = _build_study(recipe, out, trust, argument)
    return _STUDIES[key]


def _method_config(recipe: dict[str, Any], argument: str) -> tuple[Any, Any]:
    """The registered method a recipe names and its validated config. Only the entry points of that name are
    loaded (importing every domain's methods costs seconds); a name two domains register (``annealing-kd``)
    resolves to the method whose config model accepts the recipe."""
    from importlib import metadata

    from kd_core.errors import KDError
    from kd_core.recipes import METHODS_GROUP, Method, methods, validate

    name = recipe["method"]
    candidates = [m for m in (e.load() for e in metadata.entry_points(group=METHODS_GROUP) if e.name == name)
                  if isinstance(m, Method) and m.name == name]
    if not candidates:
        found = methods()
        candidates = [found[name]] if name in found else []
        if not candidates:
            raise ConfigError(argument, f"a run of an installed method ({sorted(found)})", name,
                              hint="install the domain package that registers it")
    errors: list[str] = []
    for method in candidates:
        try:
            return method, validate(method, dict(recipe))
        except KDError as err:
            errors.append(f"{method.domain}: {err}")
    raise ConfigError(argument, f"a recipe the {name} method accepts", "; ".join(errors))


def _build_study(recipe: dict[str, Any], out: Path, trust: tuple[str, ...], argument: str) -> Study:
    from kd_core.recipes import RunContext
    from kd_core.study_recipe import StudyPlan

    method, config = _method_config(recipe, argument)
    plan = method.build(config)
    if not isinstance(plan, StudyPlan):
        raise ConfigError(argument, "a run of a method that runs as a kd-core Study", recipe["method"])
    return plan.study(RunContext(out=out, device="cpu", trust=trust))


def _pick_arm(study: Study, arm: str | None) -> str:
    if arm is not None:
        if arm not in study.arms:
            raise ConfigError("--arm", f"one of the run's arms {sorted(study.arms)}", arm)
        return arm
    if "kd" in study.arms:
        return "kd"
    return next((name for name, a in study.arms.items() if a.role != "scratch"), next(iter(study.arms)))


def run_student(recipe: dict[str, Any], arm: str, seed: int) -> nn.Module:
    """The (untrained) student of ``arm``/``seed`` of a study recipe, rebuilt through kd-core's registry: the
    builder a pruned run student's record names. Builders in the recipe are imported from kd's packages and
    from the prefixes of ``trusted_builders`` (the command's ``--trust``)."""
    study = _study(recipe, Path("."), _TRUST.get(), "recipe")
    model = (study.arms[_pick_arm(study, arm)].student or study.task.student)(seed)
    return _wrappers()[1](model) if is_text_task(study.task) else model


# -- Hugging Face ------------------------------------------------------------------------------------------------

def _nn() -> Any:
    from torch import nn

    return nn


def _wrappers() -> tuple[type, type]:
    """The two wrappers (classes made once, on first use, so that importing this module needs no torch)."""
    if _WRAPPERS:
        return _WRAPPERS[0]
    nn = _nn()

    class _HFLogits(nn.Module):
        """A Hugging Face image classifier as ``pixel_values -> logits``."""

        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return self.model(pixel_values=pixel_values).logits

    class _TokenIds(nn.Module):
        """A Hugging Face sequence classifier as ``float token ids [N, L] -> logits``: ids arrive as float32 (exact
        below 2**24) so that export, calibration and latency, which feed float32, work unchanged; they are
        rounded and clamped to the vocabulary, and the attention mask marks every non-padding token."""

        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model
            self.vocab_size = int(model.config.vocab_size)
            self.pad_token_id = model.config.pad_token_id if model.config.pad_token_id is not None else -1

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            tokens = ids.round().long().clamp(0, self.vocab_size - 1)
            mask = (tokens != self.pad_token_id).long()
            return self.model(input_ids=tokens, attention_mask=mask).logits

    _WRAPPERS.append((_HFLogits, _TokenIds))
    return _HFLogits, _TokenIds


_WRAPPERS: list[tuple[type, type]] = []


def _hf_kind(architectures: list[str], argument: str, received: Any) -> str:
    if any(a.endswith("ForImageClassification") for a in architectures):
        return "image"
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return "tokens"
    raise ConfigError(argument, "a Hugging Face *ForImageClassification or *ForSequenceClassification model",
                      received)


def hf_classifier(model_class: str, config: dict[str, Any]) -> nn.Module:
    """A randomly initialised Hugging Face classifier (``"transformers:BertForSequenceClassification"``) from its
    config dict, wrapped to take one float tensor (pixels, or token ids) and return logits: the builder a pruned
    Hugging Face model's record names (its weights come from the record)."""
    from kd_edge.prune.builders import hf_model

    model = hf_model(model_class, config)
    image, tokens = _wrappers()
    return image(model) if _hf_kind([model_class], "model_class", model_class) == "image" else tokens(model)


def _load_hf(directory: str) -> tuple[nn.Module, str, dict[str, Any]]:
    """The wrapped model of a local HF directory, its kind (``image``/``tokens``) and its config."""
    path = Path(directory)
    if not (path / "config.json").is_file():
        raise ConfigError("--hf", "a local Hugging Face model directory (holding config.json)", directory)
    try:
        import transformers
    except ImportError:
        raise ConfigError("--hf", "the transformers package installed", "not installed") from None
    try:
        config = transformers.AutoConfig.from_pretrained(str(path), local_files_only=True)
        kind = _hf_kind(list(config.architectures or []), "--hf", f"{directory}: architectures "
                                                                   f"{config.architectures}")
        auto = (transformers.AutoModelForImageClassification if kind == "image"
                else transformers.AutoModelForSequenceClassification)
        model = auto.from_pretrained(str(path), local_files_only=True)
    except ConfigError:
        raise
    except Exception as err:  # any loading failure is a bad --hf, in one line
        raise ConfigError("--hf", "a loadable local Hugging Face classifier", directory,
                          hint=f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None
    from kd_edge.prune.record import attach_source

    image, tokens = _wrappers()
    wrapped = (image if kind == "image" else tokens)(model.eval())
    attach_source(wrapped, HF_CLASSIFIER, {"model_class": f"transformers:{type(model).__name__}",
                                           "config": model.config.to_dict()})
    return wrapped, kind, model.config.to_dict()


# -- the resolver ------------------------------------------------------------------------------------------------

@dataclass
class Source:
    """A resolved model source: the PyTorch ``model`` (None for ``--onnx``) or the ``onnx`` path; its ``data``
    (None when a prune has none); ``argument`` (the option that named it); ``label`` for titles; ``train``:
    whether the model still needs training here (a built model without ``--weights``); ``notes`` for reports."""

    model: nn.Module | None
    onnx: Path | None
    data: EdgeData | None
    argument: str
    label: str
    train: bool = False
    notes: list[str] = field(default_factory=list)
    data_argument: str = ""


def _kwargs(args: argparse.Namespace) -> dict[str, Any]:
    text = getattr(args, "model_kwargs", "{}") or "{}"
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError:
        raise ConfigError("--model-kwargs", "a JSON object such as '{\"depth\": 4}'", text) from None
    if not isinstance(kwargs, dict):
        raise ConfigError("--model-kwargs", "a JSON object", text)
    return kwargs


def _data_from_record(record: dict[str, Any], calibration_size: int, trust: tuple[str, ...]) -> EdgeData | None:
    """The data a pruned model recorded (``extra.data``), or None."""
    kind = record.get("kind")
    if kind == "digits":
        return _digits(calibration_size, int(record.get("seed", 0)))
    if kind == "spec":
        return spec_data(record["spec"], record.get("image_size"), calibration_size, "--model (its recorded data)")
    if kind == "run":
        study = _study(record["recipe"], Path("."), trust, "--model (its recorded data)")
        return task_data(study.task, calibration_size, record, "--model (its recorded data)")
    return None


def _explicit_data(args: argparse.Namespace, calibration_size: int, seed: int, trust: tuple[str, ...],
                   image_size: int | None) -> EdgeData | None:
    spec = getattr(args, "data", None)
    if spec is None:
        return _digits(calibration_size, seed) if getattr(args, "digits", False) else None
    if spec == "digits":
        return _digits(calibration_size, seed)
    if ":" not in spec and Path(spec).is_dir():
        recipe = _recipe_of(Path(spec), "--data")
        study = _study(recipe, Path(spec), trust, "--data")
        return task_data(study.task, calibration_size, {"kind": "run", "recipe": recipe}, "--data")
    if spec.partition(":")[0] not in SCHEMES:
        raise ConfigError("--data", "imagefolder:DIR, tensors:FILE, digits or a run directory", spec)
    return spec_data(spec, image_size, calibration_size)


def _probe(model: nn.Module, data: EdgeData, argument: str) -> None:
    """One eval-mode forward of two test inputs: a model that cannot take the data's inputs, or whose logits do
    not cover its labels, is refused before any work."""
    import torch
    from kd_core.taps import select_logits

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = select_logits(model(data.test_x[:2]))
    except Exception as err:  # the model refusing the data's inputs: one line naming the option
        shape = ", ".join(map(str, data.test_x.shape[1:]))
        raise ConfigError(argument, f"a model that takes the data's inputs [N, {shape}]",
                          f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None
    finally:
        model.train(was_training)
    if out.ndim != 2 or out.shape[-1] < data.classes:
        raise ConfigError(argument, f"logits [N, {data.classes}] over the data's {data.classes} classes",
                          f"output of shape {tuple(out.shape)}")


_QUANTIZED_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger")


def check_onnx_input(path: Path, data: EdgeData, argument: str = "--onnx") -> EdgeData:
    """The data shaped for the ONNX model's one float input: the same per-sample shape, or (for a flat input
    of the same number of values, e.g. an MLP on 8x8 digits) reshaped; anything else is a ``ConfigError``."""
    import math

    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as err:  # not an ONNX file
        raise ConfigError(argument, "a readable .onnx file", str(path), hint=str(err).splitlines()[0]) from None
    quantized = sorted({n.op_type for n in graph.node
                        if n.op_type in _QUANTIZED_OPS or n.op_type.startswith("QLinear")})
    if quantized:
        raise ConfigError(argument, "an FP32 ONNX model (kd-edge quantizes it)", f"{path.name}, already quantized "
                          f"({', '.join(quantized)})", hint="pass the FP32 model.onnx that kd-edge export wrote")
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    want = [int(d) for d in data.test_x.shape[1:]]
    if len(inputs) != 1:
        raise ConfigError(argument, f"a model with one input (per-sample shape {want})",
                          f"{len(inputs)} inputs: {[i.name for i in inputs]}")
    tensor = inputs[0].type.tensor_type
    if tensor.elem_type != onnx.TensorProto.FLOAT:
        raise ConfigError(argument, f"a float32 input of per-sample shape {want}",
                          f"input {inputs[0].name!r} of type {onnx.TensorProto.DataType.Name(tensor.elem_type)}")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim[1:]]
    if len(dims) == len(want) and all(d is None or d == w for d, w in zip(dims, want, strict=True)):
        return data
    if dims and None not in dims and math.prod(dims) == math.prod(want):
        for name in ("train_x", "test_x", "calib_x", "val_x"):
            value = getattr(data, name)
            if value is not None:
                setattr(data, name, value.reshape(len(value), *dims))
        return data
    shown = ["?" if d is None else d for d in dims]
    raise ConfigError(argument, f"an input of per-sample shape {want} (the data's: {data.source})",
                      f"input {inputs[0].name!r} of per-sample shape {shown}",
                      hint="export the model for this data, or pass data of the shape it takes (--data, "
                           "--image-size)")


def resolve(args: argparse.Namespace, default_data: bool = True) -> Source:
    """The model and data the arguments name, every check done (see the module doc); nothing is written.

    ``default_data``: fall back to the 8x8 digits when no data is named (export, quantize, bench); ``prune``
    passes False and runs without task data (e.g. a U-Net) unless some is named.
    """
    from kd_core.specs import is_builder_spec, load_weights_into, resolve_builder

    trust = tuple(getattr(args, "trust", None) or ())
    calibration = int(getattr(args, "calibration_size", 128))
    image_size = getattr(args, "image_size", None)
    if image_size is not None and not 8 <= image_size <= 4096:
        raise ConfigError("--image-size", "an integer in [8, 4096]", image_size)
    seed = args.seed
    weights = getattr(args, "weights", None)
    data_argument = "--data" if getattr(args, "data", None) else ("--digits" if getattr(args, "digits", False)
                                                                  else "")
    if weights is not None and not Path(weights).is_file():
        raise CheckpointError("--weights", "an existing safetensors file", weights, hint="the path does not exist")
    if getattr(args, "arm", None) is not None and not getattr(args, "run", None):
        raise ConfigError("--arm", "--arm only with --run", args.arm)
    if weights is not None and getattr(args, "model", None) is None:
        given = next(f"--{o}" for o in ("run", "hf", "onnx") if getattr(args, o, None))
        raise ConfigError("--weights", f"no --weights with {given} (it holds its weights)", weights)
    kwargs = _kwargs(args)
    if kwargs and not is_builder_spec(str(getattr(args, "model", None) or "")):
        given = next((f"--{o}" for o in ("run", "hf", "onnx") if getattr(args, o, None)), f"--model {args.model}")
        raise ConfigError("--model-kwargs", "keyword arguments only for a --model builder 'package.module:function'",
                          f"{getattr(args, 'model_kwargs', '')} with {given}")

    if getattr(args, "run", None):
        run = Path(args.run)
        recipe = _recipe_of(run, "--run")
        study = _study(recipe, run, trust, "--run")
        arm = _pick_arm(study, args.arm)
        seed = study.seeds[0] if seed is None else seed
        if seed not in study.seeds:
            raise ConfigError("--seed", f"one of the run's seeds {study.seeds}", seed)
        checkpoint = run / f"{arm}-seed{seed}" / "checkpoints" / "final.safetensors"
        if not checkpoint.is_file():
            raise ConfigError("--run", f"a finished run holding {checkpoint.relative_to(run)}", str(run),
                              hint="the study has not finished this arm and seed")
        model = study.load_student(run, arm, seed).eval()
        if is_text_task(study.task):  # a Hugging Face text student: one float tensor of token ids in
            model = _wrappers()[1](model).eval()
        from kd_edge.prune.record import attach_source

        attach_source(model, RUN_BUILDER, {"recipe": recipe, "arm": arm, "seed": seed})
        data = _explicit_data(args, calibration, 0, trust, image_size)
        if data is None:
            data = task_data(study.task, calibration, {"kind": "run", "recipe": recipe}, "--run")
        source = Source(model, None, data, "--run", f"{run.name} ({arm}, seed {seed})",
                        notes=[f"Model: the `{arm}` student of seed {seed} of the {recipe['method']} run `{run}`."])
    elif getattr(args, "hf", None):
        model, kind, _ = _load_hf(args.hf)
        size = image_size
        if kind == "image" and size is None:
            side = getattr(getattr(model, "model", None), "config", None)
            size = getattr(side, "image_size", None) if side is not None else None
            size = size if isinstance(size, int) else None
        data = _explicit_data(args, calibration, seed or 0, trust, size)
        if data is None:
            raise ConfigError("--data", "data for the Hugging Face model: imagefolder:DIR (images) or tensors:FILE "
                              "(token ids [N, L] for a sequence classifier)", None)
        source = Source(model, None, data, "--hf", Path(args.hf).name,
                        notes=[f"Model: the Hugging Face {type(model.model).__name__} in `{args.hf}` "
                               f"({'pixels' if kind == 'image' else 'float token ids'} -> logits)."])
    elif getattr(args, "onnx", None):
        path = Path(args.onnx)
        if not path.is_file():
            raise ConfigError("--onnx", "an existing .onnx file", args.onnx)
        data = _explicit_data(args, calibration, seed or 0, trust, image_size) or _digits(calibration, seed or 0)
        data = check_onnx_input(path, data)
        source = Source(None, path, data, "--onnx", path.name)
    else:
        name = str(args.model)
        if name in MODEL_NAMES:
            from kd_edge.prune.record import build

            model = build(SMALL_BUILDER, name=name, seed=seed or 0)
            label, data = name, _explicit_data(args, calibration, seed or 0, trust, image_size)
            if data is None and default_data:
                data = _digits(calibration, seed or 0)
        elif Path(name).exists():
            from kd_edge.prune.record import load_pruned, read_record

            if weights is not None:
                raise ConfigError("--weights", "no --weights with a pruned-model directory (it holds its weights)",
                                  weights)
            try:
                record = read_record(name)
            except CheckpointError as err:
                raise CheckpointError("--model", err.expected, err.received, hint=err.hint) from None
            with trusted_builders(trust):
                model = load_pruned(name, trusted=trust)
            label = Path(name).name if Path(name).name != "model" else Path(name).resolve().parent.name
            data = _explicit_data(args, calibration, seed or 0, trust, image_size)
            recorded = record.get("extra", {}).get("data")
            if data is None and isinstance(recorded, dict):
                data = _data_from_record(recorded, calibration, trust)
            if data is None and default_data:
                data = _digits(calibration, seed or 0)
            source = Source(model, None, data, "--model", label,
                            notes=[f"Model: the pruned model in `{name}` (its own weights)."])
        elif is_builder_spec(name):
            resolve_builder(name, "--model", trust)  # trust and importability, before any work
            from kd_edge.prune.record import build

            try:
                model = build(name, trusted=trust, **kwargs)
            except ConfigError:
                raise
            except Exception as err:  # the user's builder failing is a bad --model, in one line
                raise ConfigError("--model", "a builder that returns an nn.Module with --model-kwargs",
                                  f"{name}: {type(err).__name__}: {err}") from None
            label, data = name, _explicit_data(args, calibration, seed or 0, trust, image_size)
            if data is None and default_data:
                data = _digits(calibration, seed or 0)
        else:
            raise CheckpointError("--model", f"one of {list(MODEL_NAMES)}, a pruned-model directory (holding "
                                  "architecture.json) or a builder 'package.module:function'", name,
                                  hint="no such name, directory or builder")
        if not Path(name).exists():
            source = Source(model.eval(), None, data, "--model", label)
            if weights is not None:
                load_weights_into(model, weights, "--weights")
                source.notes.append(f"Weights: {weights}.")
            else:
                source.train = True
    source.data_argument = data_argument
    if source.model is not None and source.data is not None:
        _probe(source.model, source.data, data_argument or source.argument)
    return source
