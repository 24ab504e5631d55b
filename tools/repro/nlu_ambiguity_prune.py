"""Reproduce S2, layer pruning for label ambiguity, on VADER's human ratings (Park and Park, ACL 2023).

The shipped ``ambiguity-prune`` recipe over 3 seeds: fine-tune MiniLM-L6 (the full model, CE), probe every
layer, find where validation accuracy plateaus, drop the layers above it, distil the lower layer's
distribution into the pruned model; the pruned model trained by CE alone is the control. Writes
``docs/results/nlu-ambiguity-prune.md``.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python tools/repro/nlu_ambiguity_prune.py
"""

from __future__ import annotations

from nlu_repro import Claim, arm_mean, compare, parse, per_seed_rows, run_recipe, write_page

FULL, PRUNED_KD, PRUNED_CE = "full model, CE", "pruned + lower-layer KD", "pruned, CE only"


def main(argv: list[str] | None = None) -> int:
    """Run the arms over the seeds and write the results page."""
    args = parse(__doc__, "ambiguity-prune")(argv)
    run, results, c, minutes = run_recipe("ambiguity-prune", [f"seeds={args.seeds}", "compare_pruned_ce=true"], args)
    arms = results["arms"]
    drop = 100 * (arm_mean(arms, FULL, "accuracy") - arm_mean(arms, PRUNED_KD, "accuracy"))
    claims = [compare("pruned + lower-layer KD: lower JSD to the human distributions than the full model", arms,
                      PRUNED_KD, FULL, "jsd", higher_is_better=False),
              compare("pruned + lower-layer KD: lower KL(human ‖ model) than the full model", arms, PRUNED_KD, FULL,
                      "kl", higher_is_better=False),
              compare("the lower-layer KD matters: lower JSD than the pruned model trained by CE", arms, PRUNED_KD,
                      PRUNED_CE, "jsd", higher_is_better=False),
              compare("a smaller model (parameters)", arms, PRUNED_KD, FULL, "params", higher_is_better=False),
              Claim("accuracy within 1 point of the full model (drop in points)", drop, 1.0, drop <= 1.0)]
    setting = (f"VADER lexicon tokens with 10 human ratings each (negative/neutral/positive): {c.data.train_size} "
               f"train / {c.data.val_size} val / {c.data.test_size} test. The real MiniLM-L6, fine-tuned "
               f"{c.finetune.epochs} epochs; linear probes on frozen features of every layer ({c.probes.pooling} "
               f"pooling, {c.probes.epochs} epochs), plateau tolerance {c.probes.tolerance}; KD from layer "
               f"ℓ* − {c.distill.offset}, λ = {c.distill.lam}, τ = {c.distill.temperature}, "
               f"{c.distill.train.epochs} epochs. Paper: Park and Park, ACL 2023; no table numbers were retrieved, "
               f"so only directions are checked. Chosen plateau layers per seed: {results.get('layers')}.")
    write_page(args, title="S2: layer pruning for label ambiguity (VADER, MiniLM-L6)",
               citation=("Park and Park, \"Deep Model Compression Also Helps Models Capture Ambiguity\", ACL 2023, "
                         "arXiv:2306.07061; method: `kd_nlu.methods.ambiguity` (S2), probes in `kd_nlu.ambiguity`."),
               setting=setting, run=run, claims=claims,
               per_seed=per_seed_rows(arms, [("accuracy", 100), ("jsd", 1), ("kl", 1), ("confidence_wrong", 1),
                                             ("params", 1)]),
               script="nlu_ambiguity_prune.py", argv=argv, minutes=minutes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
