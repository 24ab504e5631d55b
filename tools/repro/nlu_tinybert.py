"""Reproduce TinyBERT task distillation against a same-size student trained without a teacher (Jiao et al., 2020).

For each seed: the shipped ``tinybert-task`` recipe (the fine-tuned MiniLM-L6 teacher, word-replacement
augmentation, intermediate-layer then prediction-layer distillation) with the student size given here, and
its twin: the same architecture from the same initialisation trained by cross-entropy on the same augmented
texts for the same number of epochs (TinyBERT's "BERT-small trained directly" control). Writes
``docs/results/nlu-tinybert.md``: test accuracy of both, the share of the teacher's accuracy, and whether the
paper's directions held.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python tools/repro/nlu_tinybert.py --student 4x96x384
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch
from kd_core import Backend
from kd_core.metrics import count_parameters, mean_std
from kd_core.recipes import RunContext, load_recipe
from kd_nlu.methods.common import TrainConfig, classifier_metrics, fit_text, single_phase, supervised_objective
from kd_nlu.methods.tinybert import TaskPlan, augmented_train
from kd_nlu.models.teacher import gloss_teacher
from nlu_repro import Claim, parse, per_seed_rows, write_page


def options(parser: argparse.ArgumentParser) -> None:
    """The student size."""
    parser.add_argument("--student", default="4x96x384", help="LAYERSxHIDDENxFFN (hidden a multiple of 12)")


def scratch_twin(config, seed: int, backend: Backend, out) -> dict[str, float]:
    """The twin: same student config and seed, CE on the same augmented texts, same epochs; test metrics."""
    gt = gloss_teacher(config.teacher, backend=backend, reuse=True)
    data = augmented_train(gt.splits["train"], gt.model, gt.tokenizer, config.augment)
    student, _ = TaskPlan(config).student(gt.model, gt.tokenizer, len(gt.task.label_names))
    epochs = config.intermediate.epochs + config.prediction.epochs
    train_config = TrainConfig(epochs=epochs, lr=config.intermediate.lr, batch_size=config.intermediate.batch_size,
                               weight_decay=config.intermediate.weight_decay)
    student = fit_text(student, single_phase(supervised_objective(), train_config), data, gt.splits.get("val"), out,
                       backend, seed=seed, batch_size=train_config.batch_size, config={"twin_of": config.model_dump()},
                       label=f"scratch s{seed}", pad_token_id=gt.tokenizer.pad_token_id)
    metrics, _ = classifier_metrics(student, gt.splits["test"], backend, pad_token_id=gt.tokenizer.pad_token_id)
    return {**metrics, "params": count_parameters(student)}


def main(argv: list[str] | None = None) -> int:
    """Distil and train the twin for every seed, then write the results page."""
    args = parse(__doc__, "tinybert", options)(argv)
    torch.set_num_threads(args.threads)
    layers, hidden, ffn = (int(v) for v in args.student.split("x"))
    backend = Backend(device=args.device)
    arms: dict[str, dict[str, dict[str, float]]] = {"TinyBERT (task distillation)": {}, "scratch twin (CE)": {},
                                                      "MiniLM-L6 teacher": {}}
    start = time.perf_counter()
    run = None
    for seed in args.seeds:
        overrides = [f"seed={seed}", f"student.layers={layers}", f"student.hidden={hidden}",
                     f"student.intermediate={ffn}", *args.overrides]
        method, config = load_recipe("tinybert-task", overrides, domain="nlu")
        run = method.build(config).run(RunContext(out=args.out / f"tinybert-seed{seed}", device=args.device,
                                                  progress=False))
        result = json.loads((run / "results.json").read_text())
        arms["TinyBERT (task distillation)"][str(seed)] = result["student"]
        arms["MiniLM-L6 teacher"][str(seed)] = result["teacher"]
        arms["scratch twin (CE)"][str(seed)] = scratch_twin(copy.deepcopy(config), seed, backend,
                                                            args.out / f"scratch-seed{seed}")
    minutes = (time.perf_counter() - start) / 60
    (args.out / "results.json").write_text(json.dumps(arms, indent=1))

    def mean(arm: str, key: str) -> float:
        return mean_std([float(r[key]) for r in arms[arm].values()])[0]

    tiny, twin, teacher = "TinyBERT (task distillation)", "scratch twin (CE)", "MiniLM-L6 teacher"
    share = mean(tiny, "accuracy") / mean(teacher, "accuracy")
    claims = [Claim("TinyBERT beats the same student trained without a teacher (accuracy)", mean(tiny, "accuracy"),
                    mean(twin, "accuracy"), mean(tiny, "accuracy") > mean(twin, "accuracy")),
              Claim("TinyBERT keeps ≥ 96% of the teacher's accuracy (share)", share, 0.96, share >= 0.96),
              Claim("≥ 7.5× fewer parameters than the teacher (ratio)", mean(teacher, "params") / mean(tiny, "params"),
                    7.5, mean(teacher, "params") / mean(tiny, "params") >= 7.5)]
    c = config
    setting = (f"WordNet 3.0 glosses, {c.teacher.data.num_classes} lexicographer classes, "
               f"{c.teacher.data.train_size} train / {c.teacher.data.test_size} test; teacher: the real MiniLM-L6 "
               f"fine-tuned {c.teacher.train.epochs} epochs (cached, the same for every seed). Student "
               f"{layers} layers × hidden {hidden} × FFN {ffn}, the teacher's 30,522-token vocabulary; augmentation "
               f"p = {c.augment.p}, top-{c.augment.top_m} neighbours, {c.augment.copies} copies; "
               f"{c.intermediate.epochs} intermediate + {c.prediction.epochs} prediction epochs (T = "
               f"{c.temperature}); the twin trains {c.intermediate.epochs + c.prediction.epochs} epochs of CE on "
               f"the same augmented texts at lr {c.intermediate.lr}. Paper (TinyBERT₄ vs BERT-base on GLUE): "
               f"7.5× smaller, 9.4× faster, 96.8% of the teacher; latency is measured by "
               f"`tools/bench/tinybert_vs_minilm.py` (docs/benchmarks.md).")
    write_page(args, title=f"TinyBERT task distillation vs a scratch twin (WordNet glosses, student {args.student})",
               citation=("Jiao et al., \"TinyBERT: Distilling BERT for Natural Language Understanding\", Findings of "
                         "EMNLP 2020, arXiv:1909.10351; method: "
                         "`kd_nlu.methods.tinybert`, losses in `kd_nlu.tinybert.objectives`."),
               setting=setting, run=run, claims=claims,
               per_seed=per_seed_rows(arms, [("accuracy", 100), ("ece", 100), ("params", 1)]),
               script="nlu_tinybert.py", argv=argv, minutes=minutes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
