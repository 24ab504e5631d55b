"""Reproduce Annealing-KD for text classification on the WordNet gloss task (Jafari et al., EACL 2021).

The shipped kd-nlu ``annealing-kd`` recipe over 3 seeds: a small BERT student from the fine-tuned MiniLM-L6
teacher by annealing-KD (annealed logit MSE, then CE), by the same two phases without annealing, by vanilla
Hinton KD and from scratch. Writes ``docs/results/nlu-annealing-kd.md``.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python tools/repro/nlu_annealing_kd.py
"""

from __future__ import annotations

from nlu_repro import compare, parse, per_seed_rows, run_recipe, write_page


def main(argv: list[str] | None = None) -> int:
    """Run the arms over the seeds and write the results page."""
    args = parse(__doc__, "annealing-kd")(argv)
    run, results, c, minutes = run_recipe("annealing-kd", [f"seeds={args.seeds}"], args)
    arms = results["seeds"]
    claims = [compare(f"annealing-KD beats {label} (test accuracy)", arms, "annealing-kd", arm, "accuracy",
                      higher_is_better=True)
              for arm, label in (("hinton-kd", "vanilla KD"), ("mse-kd", "the same phases without annealing"),
                                 ("scratch", "training from scratch")) if arm in arms]
    a = c.annealing
    setting = (f"WordNet 3.0 glosses, {c.teacher.data.num_classes} classes, {c.teacher.data.train_size} train / "
               f"{c.teacher.data.test_size} test; teacher MiniLM-L6 fine-tuned {c.teacher.train.epochs} epochs. "
               f"Student {c.student.layers} × {c.student.hidden} BERT ({c.student.init} init): phase I "
               f"{a.phase1_epochs} epochs of MSE(z_s, Φ(T)·z_t) with τ_max = {a.tau_max}, phase II "
               f"{a.phase2_epochs} epochs of CE; vanilla KD at T = {c.kd.temperature}, α = {c.kd.alpha}; every arm "
               f"{c.student.train.epochs} epochs. Paper: Jafari et al., arXiv:2104.07163 (GLUE with BERT students).")
    write_page(args, title="Annealing-KD for text classification (WordNet glosses)",
               citation=("Jafari, Rezagholizadeh, Sharma and Ghodsi, \"Annealing Knowledge Distillation\", EACL "
                         "2021, arXiv:2104.07163; method: "
                         "`kd_nlu.methods.annealing`, schedule `kd_core.annealing`."),
               setting=setting, run=run, claims=claims,
               per_seed=per_seed_rows(arms, [("accuracy", 100), ("ece", 100), ("nll", 1)]),
               script="nlu_annealing_kd.py", argv=argv, minutes=minutes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
