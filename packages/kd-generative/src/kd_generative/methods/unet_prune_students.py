"""The pruned copies of the Pix2Pix teacher that the ``unet-inner``/``unet-global`` arms fine-tune, and the teacher's
sensitivity scan, following B.-K. Kim, S. Choi and H. Park, "Cut Inner Layers: A Structured Pruning Strategy for
Efficient U-Net GANs" (arXiv:2206.14658, 2022).

Every pruning step is a ``kd.unet_pruning`` plugin (``kd_core.unet_pruning``; kd-edge publishes them), passed in as
a dict, so this package never imports kd-edge. Each pruned model is built once, from a copy of the teacher, the first
time an arm asks for its student; every seed of an arm then starts from the same pruned weights.

- ``inner``: ``ratio`` of the filters of every layer of the innermost ``levels`` levels, L1 (the paper's step 2);
- ``cut``: the innermost ``levels`` levels removed, the removed branch's mean folded into the new innermost decoder,
  measured on the first ``calibration`` train inputs (step 3);
- ``global``: global L1 filter pruning (ranked across layers) at the ``inner`` model's parameter count, or at a
  fraction of the teacher's (the paper's baseline); ``uniform``: every layer by one ratio, at the same count.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import torch
from kd_core.metrics import count_parameters
from kd_core.task import Task
from torch import nn

__all__ = ["PrunedStudents"]


class PrunedStudents:
    """Builds (once) and hands out the arms' pruned copies of ``task``'s teacher with ``plugins`` (name -> the
    ``kd.unet_pruning`` plugin). ``settings``: per arm name, the keyword settings of its step (see the module doc)."""

    def __init__(self, task: Task, plugins: Mapping[str, Callable[..., Any]], settings: Mapping[str, dict[str, Any]],
                 *, sensitivity: Mapping[str, Any] | None = None) -> None:
        self.task, self.plugins, self.settings = task, dict(plugins), {k: dict(v) for k, v in settings.items()}
        self.sensitivity_settings = dict(sensitivity) if sensitivity is not None else None
        self._models: dict[str, nn.Module] = {}
        self._summaries: dict[str, dict[str, Any]] = {}
        self._scan: list[dict[str, Any]] | None = None

    # -- inputs -----------------------------------------------------------------------------------
    def teacher(self) -> nn.Module:
        """The task's trained teacher (shared: never modified here)."""
        return self.task.teacher()

    def _device(self) -> torch.device:
        return next(self.teacher().parameters()).device

    def inputs(self, split: str, count: int) -> torch.Tensor:
        """The first ``count`` inputs of the ``split`` split (``train``/``val``), on the teacher's device."""
        data = getattr(self.task.data, split)
        items = [data[i]["input"] for i in range(min(count, len(data)))]
        return torch.stack(items).to(self._device())

    def _copy(self) -> nn.Module:
        """An eval-mode copy of the teacher whose parameters require gradients again: a study freezes its teacher,
        and a frozen copy would neither be traced by the pruning (it follows autograd) nor train as a student."""
        model = copy.deepcopy(self.teacher()).eval()
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        return model

    # -- the pruned models ------------------------------------------------------------------------
    def _build(self, arm: str) -> tuple[nn.Module, Any]:
        settings = self.settings[arm]
        example = self.inputs("train", 2)
        if arm == "inner":
            model = self._copy()
            return model, self.plugins["inner"](model, example, ratio=settings["ratio"], levels=settings["levels"])
        if arm == "cut":
            calibration = self.inputs("train", settings["calibration"])
            return self.plugins["cut"](self._copy(), levels=settings["levels"], example_inputs=calibration)
        if arm in ("global", "uniform"):
            fraction = settings.get("params_fraction")
            target = self.params("inner") if fraction is None else round(fraction * count_parameters(self.teacher()))
            model = self._copy()
            return model, self.plugins["global"](model, example, target, tolerance=settings["tolerance"],
                                                 global_pruning=arm == "global")
        raise KeyError(arm)

    def model(self, arm: str) -> nn.Module:
        """The pruned model of ``arm`` (built on first use; do not train it: ``student`` gives copies)."""
        if arm not in self._models:
            model, summary = self._build(arm)
            self._models[arm] = model.eval()
            self._summaries[arm] = {**summary.as_dict(), "params": count_parameters(model)}
        return self._models[arm]

    def prepare(self) -> None:
        """Build every arm's pruned model and run the teacher's scan (before any arm trains)."""
        for arm in self.settings:
            self.model(arm)
        self.scan()

    def student(self, arm: str) -> nn.Module:
        """A fresh copy of ``arm``'s pruned model, on the CPU, for one run to fine-tune (the first call prepares
        everything: every arm's model and the scan)."""
        self.prepare()
        return copy.deepcopy(self.model(arm)).cpu()

    def params(self, arm: str) -> int:
        """The parameter count of ``arm``'s pruned model."""
        return count_parameters(self.model(arm))

    def summary(self, arm: str) -> dict[str, Any]:
        """What ``arm``'s pruning step reported (JSON-ready), with its ``params``."""
        self.model(arm)
        return self._summaries[arm]

    # -- the teacher's sensitivity ----------------------------------------------------------------
    def scan(self) -> list[dict[str, Any]]:
        """The teacher's per-layer sensitivity rows (``layer``, ``ratio``, ``score``, ``params_kept``), computed once
        on the first ``inputs`` val inputs; [] when the scan is off."""
        if self.sensitivity_settings is None:
            return []
        if self._scan is None:
            s = self.sensitivity_settings
            inputs = self.inputs("val", s["inputs"])
            score = self._frechet_score(inputs) if s["score"] == "frechet" else None
            self._scan = self.plugins["sensitivity"](self._copy(), inputs, ratios=tuple(s["ratios"]), score_fn=score)
        return self._scan

    def _frechet_score(self, inputs: torch.Tensor) -> Callable[[nn.Module, Any], float]:
        """The task's Fréchet distance between a pruned model's images and the teacher's, on ``inputs``."""
        with torch.no_grad():
            batch = {"input": inputs, "target": self.teacher().eval()(inputs).clamp(-1.0, 1.0)}

        def score(model: nn.Module, _example: Any) -> float:
            return float(self.task.evaluator(model, [batch], self.task.forward)["frechet_teacher"])

        return score
