"""Reproduce reinforced multi-teacher selection on the WordNet gloss task (Yuan et al., AAAI 2021).

The shipped ``rl-multi-teacher`` recipe over 3 seeds: the fine-tuned MiniLM-L6 and two small teachers each
trained with heavy label noise on one third of the classes; a small BERT student learns by CE only, from the
best single teacher, from all teachers with uniform weights, or with per-instance teacher weights chosen by a
policy trained with REINFORCE on the student's feedback. Writes ``docs/results/nlu-rl-multi-teacher.md``.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python tools/repro/nlu_rl_multi_teacher.py
"""

from __future__ import annotations

from nlu_repro import compare, parse, per_seed_rows, run_recipe, write_page


def main(argv: list[str] | None = None) -> int:
    """Run the arms over the seeds and write the results page."""
    args = parse(__doc__, "rl-multi-teacher")(argv)
    run, results, c, minutes = run_recipe("rl-multi-teacher", [f"seeds={args.seeds}"], args)
    arms = results["seeds"]
    claims = []
    for reference, text in (("uniform", "RL selection beats equal-weight multi-teacher KD"),
                            ("best-single", "RL selection beats the best single teacher"),
                            ("ce", "RL selection beats CE alone")):
        if {"rl", reference} <= arms.keys():
            claims.append(compare(text, arms, "rl", reference, "accuracy", higher_is_better=True))
    notes = ("\nCorrelation of the policy's selection rate with each teacher's per-class reliability: "
             f"{results.get('selection_vs_reliability')}.\n")
    setting = (f"WordNet 3.0 glosses, {c.teacher.data.num_classes} classes, {c.teacher.data.train_size} train / "
               f"{c.teacher.data.test_size} test. Teachers: MiniLM-L6 fine-tuned, plus "
               f"{', '.join(t.name for t in c.extra_teachers)} (label noise on one class group each). Student: "
               f"{c.student.layers} × {c.student.hidden} BERT ({c.student.init} init), {c.student.train.epochs} "
               f"epochs. Arms: {c.arms}. Paper: Yuan et al., AAAI 2021, GLUE students from BERT/RoBERTa teachers; no "
               f"per-task numbers retrieved, so only directions are checked.")
    write_page(args, title="Reinforced multi-teacher selection (WordNet glosses)",
               citation=("Yuan, Shou, Pei, Lin, Gong, Fu and Jiang, \"Reinforced Multi-Teacher Selection for Knowledge "
                         "Distillation\", AAAI 2021, arXiv:2012.06048; method: `kd_nlu.methods.rl_multi_teacher`, "
                         "policy and REINFORCE in `kd_core.reinforced`."),
               setting=setting, run=run, claims=claims,
               per_seed=per_seed_rows(arms, [("accuracy", 100), ("ece", 100), ("nll", 1)]),
               script="nlu_rl_multi_teacher.py", argv=argv, minutes=minutes, notes=notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
