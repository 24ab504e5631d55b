"""TinyBERT: Transformer distillation of a MiniLM teacher into a small BERT student, general then task.

Jiao, Yin, Shang, Jiang, Chen, Li, Wang and Liu, "TinyBERT: Distilling BERT for Natural Language
Understanding", Findings of EMNLP 2020, arXiv:1909.10351.

- ``tinybert-general``: the pre-trained (not fine-tuned) MiniLM teacher, unlabelled transfer text
  (fortunes and WordNet example sentences), embedding + pre-softmax attention + hidden-state MSE over
  a uniform layer map g(m) = m·N/M, a learned projection W_h for the width gap. The student is saved
  with ``save_pretrained`` (and the teacher's tokenizer) so ``AutoModel`` reloads it.
- ``tinybert-task``: the MiniLM teacher fine-tuned on the WordNet gloss task; the training texts grow by
  word-replacement augmentation (neighbours in the teacher's input-embedding space: no GloVe or MLM head
  offline, see ``kd_nlu.tinybert.augment``); phase 1 distils the intermediate layers, phase 2 the
  prediction layer (soft cross-entropy at temperature t). The student may start from a general one.

The losses and the layer map are in ``kd_nlu.tinybert.objectives``; both plans train through
``kd_core.Distiller`` (``kd_nlu.methods.common.fit_text``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from kd_core import Backend, Phase, adamw, cosine_lr
from kd_core.errors import ConfigError
from kd_core.metrics import count_parameters, measure_latency
from kd_core.plots import plot_loss_curves
from kd_core.progress import console, progress_bar
from kd_core.recipes import Method, RecipeConfig, RunContext
from kd_core.report import command_line, markdown_table, write_report
from kd_core.runs import RunDir
from pydantic import Field, model_validator
from torch import nn

from kd_nlu.data.text import TextDataset
from kd_nlu.methods.common import Strict, TrainConfig, classifier_metrics, fit_text, open_run, text_loader
from kd_nlu.models.student import (
    build_student,
    init_embeddings_from_teacher,
    load_student,
    save_student,
    student_config,
)
from kd_nlu.models.teacher import GlossTeacherConfig
from kd_nlu.tinybert.augment import EmbeddingNeighbours, augment
from kd_nlu.tinybert.objectives import (
    PARTS,
    check_tokenizers,
    hidden_forward,
    intermediate_objective,
    objective_values,
    prediction_objective,
)

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
Part = Literal["embeddings", "attention", "hidden"]


class StudentConfig(Strict):
    """The student's shape: depth, width, FFN width and heads (default: the teacher's head count).

    ``embeddings``: ``random`` (the paper) or ``teacher-svd`` (the teacher's embedding tables projected onto
    their top singular directions: small embeddings that start with the teacher's token geometry).
    """

    layers: Annotated[int, Field(gt=0)] = 4
    hidden: Annotated[int, Field(gt=0)] = 312
    intermediate: Annotated[int, Field(gt=0)] = 1200
    heads: Annotated[int, Field(gt=0)] | None = None
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.1
    embeddings: Literal["random", "teacher-svd"] = "random"


class LayerConfig(Strict):
    """Intermediate-layer distillation: the layer map (default uniform), the projection and the parts."""

    layer_map: list[int] | None = None
    projection: bool = True
    parts: Annotated[list[Part], Field(min_length=1)] = Field(default_factory=lambda: list(PARTS))
    mask_padding: bool = True
    average_heads: bool = False


class GeneralData(Strict):
    """Unlabelled transfer text: how many sentences, of which a held-out part, and the token budget.

    ``text_file``: your own corpus (UTF-8, one sentence per line) instead of fortunes + WordNet examples.
    """

    text_file: str | None = None
    limit: Annotated[int, Field(gt=1)] = 4000
    held_out: Annotated[int, Field(gt=0)] = 200
    max_length: Annotated[int, Field(ge=4, le=512)] = 64
    seed: int = 0


class GeneralConfig(RecipeConfig):
    """The ``tinybert-general`` recipe."""

    method: Literal["tinybert-general"] = "tinybert-general"
    data: GeneralData = GeneralData()
    student: StudentConfig = StudentConfig()
    layers: LayerConfig = LayerConfig()
    train: TrainConfig = TrainConfig(epochs=3, lr=5e-4, batch_size=32, weight_decay=0.01)


class AugmentConfig(Strict):
    """Word replacement: p per word, top-M neighbours, N augmented copies per training text."""

    enabled: bool = True
    p: Annotated[float, Field(ge=0, le=1)] = 0.4
    top_m: Annotated[int, Field(gt=0)] = 15
    copies: Annotated[int, Field(ge=0)] = 4
    seed: int = 0


class TaskConfig(RecipeConfig):
    """The ``tinybert-task`` recipe; ``teacher`` is N1's ``GlossTeacherConfig`` (data and fine-tuning)."""

    method: Literal["tinybert-task"] = "tinybert-task"
    teacher: GlossTeacherConfig = GlossTeacherConfig()
    reuse_teacher: bool = True
    student: StudentConfig = StudentConfig()
    init_from: str | None = None
    layers: LayerConfig = LayerConfig()
    augment: AugmentConfig = AugmentConfig()
    intermediate: TrainConfig = TrainConfig(epochs=10, lr=5e-4, batch_size=32, weight_decay=0.01)
    prediction: TrainConfig = TrainConfig(epochs=3, lr=3e-4, batch_size=32, weight_decay=0.01)
    temperature: Annotated[float, Field(gt=0)] = 1.0
    latency_iterations: Annotated[int, Field(gt=0)] = 20

    @model_validator(mode="after")
    def _one_batch_size(self) -> TaskConfig:
        # one Distiller runs both phases, with one batch size
        if self.prediction.batch_size != self.intermediate.batch_size:
            raise ValueError(f"prediction.batch_size must equal intermediate.batch_size "
                             f"({self.intermediate.batch_size}), received {self.prediction.batch_size}")
        return self


def layer_objective(student: nn.Module, teacher: nn.Module, layers: LayerConfig):
    """The intermediate-layer objective of a ``LayerConfig``."""
    return intermediate_objective(student, teacher, layer_map=layers.layer_map, projection=layers.projection,
                                  parts=layers.parts, mask_padding=layers.mask_padding,
                                  average_heads=layers.average_heads)


def save_with_tokenizer(model: nn.Module, tokenizer: Any, directory: Path) -> Path:
    """``save_pretrained`` the model and its tokenizer into ``directory``."""
    save_student(model, directory)
    tokenizer.save_pretrained(str(directory))
    return directory


def augmented_train(train: TextDataset, teacher: nn.Module, tokenizer: Any, config: AugmentConfig) -> TextDataset:
    """``train`` plus ``config.copies`` word-replacement copies of each text (neighbours in ``teacher``'s
    input embeddings), or ``train``'s texts alone when augmentation is off."""
    texts, labels = list(train.texts), list(train.labels)
    if config.enabled and config.copies:
        neighbours = EmbeddingNeighbours.from_model(teacher, tokenizer, config.top_m)
        texts, labels = augment(texts, labels, neighbours, config.copies, config.p, config.seed)
    return TextDataset(texts, labels, tokenizer, train.max_length)


def cost(model: nn.Module, vocab_size: int, iterations: int, length: int = 64) -> dict[str, float]:
    """Parameters and CPU latency (p50 ms) at batch 1 and 32, sequence ``length``, of a CPU copy of ``model``."""
    cpu = copy.deepcopy(model).cpu().eval()
    generator = torch.Generator().manual_seed(0)
    result: dict[str, float] = {"params": count_parameters(cpu)}
    for batch in (1, 32):
        ids = torch.randint(1000, vocab_size, (batch, length), generator=generator)
        result[f"latency_ms_b{batch}"] = measure_latency(cpu, ids, warmup=3, iterations=iterations).p50_ms
    return result


def _curves(run: Path, keys: list[str]) -> list[dict[str, Any]]:
    return [r for r in RunDir(run).metrics() if any(k in r for k in keys)]


class GeneralPlan:
    """General distillation on unlabelled text; reports the held-out intermediate loss before and after."""

    def __init__(self, config: GeneralConfig) -> None:
        self.config = config

    def run(self, context: RunContext) -> Path:
        """Distil, save the student and write the report under ``context.out``."""
        from kd_nlu.data.transfer import read_text_file, unlabelled_texts
        from kd_nlu.models.teacher import load_minilm

        c = self.config
        texts = (read_text_file(c.data.text_file, "data.text_file", c.data.limit, c.data.seed) if c.data.text_file
                 else unlabelled_texts(c.data.limit, c.data.seed))  # bad data fails before the run folder exists
        if c.data.held_out >= len(texts):
            raise ConfigError("data.held_out", f"fewer than the {len(texts)} sentences", c.data.held_out)
        backend = Backend(device=context.device, precision=context.precision)
        top = open_run(context, c.model_dump(), c.seed, backend)
        teacher, tokenizer = load_minilm(None)
        torch.manual_seed(c.seed)
        student = build_student(student_config(teacher.config, c.student.layers, c.student.hidden,
                                               c.student.intermediate, c.student.heads, dropout=c.student.dropout),
                                head=False)
        if c.student.embeddings == "teacher-svd":
            init_embeddings_from_teacher(student, teacher)
        objective = layer_objective(student, teacher, c.layers)
        train = TextDataset(texts[c.data.held_out:], None, tokenizer, c.data.max_length)
        held = TextDataset(texts[: c.data.held_out], None, tokenizer, c.data.max_length)
        held_batches = list(text_loader(held, 64, tokenizer.pad_token_id))
        before = objective_values(objective, student, teacher, held_batches)
        phases = [Phase("general", objective, epochs=c.train.epochs, optimizer=adamw(c.train.lr, c.train.weight_decay),
                        scheduler=cosine_lr)]
        with progress_bar() as progress:
            student = fit_text(student, phases, train, None, top.path / "distill", backend, seed=c.seed,
                               batch_size=c.train.batch_size, config={"recipe": c.model_dump()}, label="general",
                               progress=progress, teacher=teacher, resume=context.resume,
                               pad_token_id=tokenizer.pad_token_id, forward=hidden_forward)
        student.cpu()
        after = objective_values(objective, student, teacher.cpu(), held_batches)
        saved = save_with_tokenizer(student, tokenizer, top.path / "student")
        results = {"held_out_before": before, "held_out_after": after, "student_dir": str(saved),
                   "train_texts": len(train), "held_out_texts": len(held),
                   "params": {"teacher": count_parameters(teacher), "student": count_parameters(student)}}
        top.write_json("results.json", results)
        rows = [{"term": k, "before": before[k], "after": after[k]} for k in before]
        png = plot_loss_curves(_curves(top.path / "distill", ["loss/total"]), top.plots / "loss_curves.png",
                               keys=["loss/total"])
        write_report(top, "TinyBERT general distillation (MiniLM-L6 teacher)", [
            ("Summary", f"Held-out intermediate loss {before['total']:.4f} → **{after['total']:.4f}** over "
                        f"{len(held)} unseen sentences; {len(train)} training sentences, {c.train.epochs} epochs. "
                        f"Student {c.student.layers} layers × {c.student.hidden} "
                        f"({results['params']['student']:,} parameters; teacher {results['params']['teacher']:,}). "
                        f"Saved to `{saved}` (reload with `AutoModel.from_pretrained`).\n"),
            ("Held-out loss per term", markdown_table(rows)),
            ("Reproduce", f"```\n{command_line()}\n```\n"),
        ], plots=[("Training loss", png)])
        console.print(f"student saved to {saved}")
        return top.path


class TaskPlan:
    """Task distillation on the gloss task: intermediate phase, then prediction phase; compare with the teacher."""

    def __init__(self, config: TaskConfig) -> None:
        self.config = config

    def student(self, teacher: nn.Module, tokenizer: Any, num_labels: int) -> tuple[nn.Module, str]:
        """The student this config describes (fresh, seeded by ``seed``, or ``init_from``) and its origin."""
        c = self.config
        if c.init_from:
            from transformers import AutoTokenizer

            directory = Path(c.init_from)
            student_tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True) \
                if (directory / "tokenizer_config.json").is_file() else tokenizer
            check_tokenizers(tokenizer, student_tokenizer)
            return load_student(directory, num_labels=num_labels), f"initialised from `{directory}`"
        torch.manual_seed(c.seed)
        config = student_config(teacher.config, c.student.layers, c.student.hidden, c.student.intermediate,
                                c.student.heads, num_labels=num_labels, dropout=c.student.dropout)
        student = build_student(config, head=True)
        if c.student.embeddings == "teacher-svd":
            kept = init_embeddings_from_teacher(student, teacher)["energy_kept"]
            return student, (f"random layers, embeddings from the teacher's top-{c.student.hidden} singular "
                             f"directions ({100 * kept:.1f}% of the word-embedding energy)")
        return student, "randomly initialised"

    def run(self, context: RunContext) -> Path:
        """Fine-tune (or reuse) the teacher, distil in two phases, evaluate, save, report."""
        from kd_nlu.models.teacher import gloss_teacher

        c = self.config
        backend = Backend(device=context.device, precision=context.precision)
        top = open_run(context, c.model_dump(), c.seed, backend)
        with progress_bar() as progress:
            gt = gloss_teacher(c.teacher, out=top.path / "teacher", backend=backend, progress=progress,
                               reuse=c.reuse_teacher, resume=context.resume)
            teacher, tokenizer = gt.model, gt.tokenizer
            num_labels = len(gt.task.label_names)
            student, origin = self.student(teacher, tokenizer, num_labels)
            train = gt.splits["train"]
            augmented = augmented_train(train, teacher, tokenizer, c.augment)
            objective = layer_objective(student, teacher, c.layers)
            phases = [
                Phase("intermediate", objective, epochs=c.intermediate.epochs,
                      optimizer=adamw(c.intermediate.lr, c.intermediate.weight_decay), scheduler=cosine_lr),
                Phase("prediction", prediction_objective(c.temperature), epochs=c.prediction.epochs,
                      optimizer=adamw(c.prediction.lr, c.prediction.weight_decay), scheduler=cosine_lr),
            ]
            student = fit_text(student, phases, augmented, gt.splits.get("val"), top.path / "distill", backend,
                               seed=c.seed, batch_size=c.intermediate.batch_size,
                               config={"recipe": c.model_dump()}, label="task", progress=progress, teacher=teacher,
                               resume=context.resume, pad_token_id=tokenizer.pad_token_id)
        results = self._evaluate(teacher, student, tokenizer, gt.splits["test"], backend, top.path)
        results.update({"teacher_note": gt.note, "student_origin": origin, "train_texts": len(train),
                        "augmented_texts": len(augmented), "classes": num_labels})
        top.write_json("results.json", results)
        self._report(top, results, context)
        return top.path

    def evaluate(self, run: Path, device: str = "auto") -> dict[str, float]:
        """Test metrics of the saved student of a finished run (``kd-nlu eval RUN``), reloaded with AutoModel."""
        from kd_core.errors import RunDirError
        from transformers import AutoTokenizer

        from kd_nlu.models.teacher import gloss_datasets

        directory = Path(run) / "student"
        if not (directory / "config.json").is_file():
            raise RunDirError("RUN", "a finished tinybert-task run with a saved student/ folder", str(run))
        backend = Backend(device=device)
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        task, splits = gloss_datasets(self.config.teacher.data, tokenizer)
        student = load_student(directory, num_labels=len(task.label_names)).to(backend.device)
        metrics, _ = classifier_metrics(student, splits["test"], backend, pad_token_id=tokenizer.pad_token_id)
        return {f"student/{k}": v for k, v in metrics.items()} | {"student/params": count_parameters(student)}

    def _evaluate(self, teacher: nn.Module, student: nn.Module, tokenizer: Any, test: TextDataset,
                  backend: Backend, out: Path) -> dict[str, Any]:
        pad = tokenizer.pad_token_id
        s_metrics, _ = classifier_metrics(student, test, backend, pad_token_id=pad)
        t_metrics, _ = classifier_metrics(teacher, test, backend, pad_token_id=pad)
        saved = save_with_tokenizer(student.cpu(), tokenizer, out / "student")
        reloaded = load_student(saved, num_labels=int(student.config.num_labels))
        batch = next(iter(text_loader(test, 16, pad)))
        student.eval()
        with torch.no_grad():
            keys = {k: batch[k] for k in ("input_ids", "attention_mask")}
            diff = float((student(**keys).logits - reloaded(**keys).logits).abs().max())
        vocab = int(teacher.config.vocab_size)
        iterations = self.config.latency_iterations
        t_cost, s_cost = cost(teacher, vocab, iterations), cost(student, vocab, iterations)
        return {"teacher": {**t_metrics, **t_cost}, "student": {**s_metrics, **s_cost},
                "ratios": {"params": t_cost["params"] / s_cost["params"],
                           "latency_b1": t_cost["latency_ms_b1"] / s_cost["latency_ms_b1"],
                           "latency_b32": t_cost["latency_ms_b32"] / s_cost["latency_ms_b32"],
                           "accuracy": s_metrics["accuracy"] / max(t_metrics["accuracy"], 1e-12)},
                "student_dir": str(saved), "reload_max_abs_logit_diff": diff}

    def _report(self, top: RunDir, results: dict[str, Any], context: RunContext) -> Path:
        c = self.config
        rows = [{"model": name, "accuracy %": 100 * r["accuracy"], "ECE %": 100 * r["ece"], "params": r["params"],
                 "CPU ms (b1, seq 64)": r["latency_ms_b1"], "CPU ms (b32, seq 64)": r["latency_ms_b32"]}
                for name, r in (("MiniLM teacher", results["teacher"]), ("TinyBERT student", results["student"]))]
        ratio = results["ratios"]
        summary = (f"Student/teacher: **{ratio['params']:.1f}× fewer parameters**, **{ratio['latency_b1']:.1f}×** "
                   f"(batch 1) and **{ratio['latency_b32']:.1f}×** (batch 32) lower CPU latency, "
                   f"**{100 * ratio['accuracy']:.1f}%** of the teacher's test accuracy "
                   f"(paper: 7.5×, 9.4×, 96.8%). {results['classes']} gloss classes; "
                   f"{results['train_texts']} training glosses → {results['augmented_texts']} with augmentation "
                   f"(p = {c.augment.p}, M = {c.augment.top_m}, N = {c.augment.copies}, teacher-embedding "
                   f"neighbours). Phases: intermediate {c.intermediate.epochs} epochs, prediction "
                   f"{c.prediction.epochs} epochs (T = {c.temperature}). Student {c.student.layers} × "
                   f"{c.student.hidden}, {results['student_origin']}. Teacher: {results['teacher_note']}. "
                   f"Saved student reloads with identical logits (max |Δ| = "
                   f"{results['reload_max_abs_logit_diff']:.2e}).\n")
        keys = ["loss/total"]
        png = plot_loss_curves(_curves(top.path / "distill", keys), top.plots / "loss_curves.png", keys=keys)
        return write_report(top, "TinyBERT task distillation on WordNet glosses", [
            ("Summary", summary),
            ("Results (test split)", markdown_table(rows, digits=2)),
            ("Reproduce", f"```\n{command_line()}\n```\nDevice: {context.device}.\n"),
            ("Results JSON", f"```json\n{json.dumps(results['ratios'], indent=1)}\n```\n"),
        ], plots=[("Training loss (both phases)", png)])


def build_general(config: GeneralConfig) -> GeneralPlan:
    """The plan for a validated ``tinybert-general`` config."""
    return GeneralPlan(config)


def build_task(config: TaskConfig) -> TaskPlan:
    """The plan for a validated ``tinybert-task`` config."""
    return TaskPlan(config)


GENERAL = Method(name="tinybert-general", config_model=GeneralConfig, build=build_general, domain="nlu",
                 recipes=RECIPES, summary="TinyBERT general distillation: MiniLM-L6 -> small BERT on unlabelled text")
TASK = Method(name="tinybert-task", config_model=TaskConfig, build=build_task, domain="nlu", recipes=RECIPES,
              summary="TinyBERT task distillation on WordNet glosses: augmented intermediate, then prediction layer")
