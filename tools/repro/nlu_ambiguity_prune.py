"""Reproduce S2, layer pruning for label ambiguity, on VADER's human ratings (Park and Park, ACL 2023).

The shipped ``ambiguity-prune`` study over 3 seeds: the teacher is MiniLM-L6 fine-tuned by CE; its layers are
probed, the layers above the validation-accuracy plateau dropped, and the pruned model trained by distilling the
lower layer's probe (the method), by distilling the full teacher's output (plain KD), by CE alone (the scratch
twin); the full model fine-tuned per seed is the reference the paper beats, and the full teacher trained the
pruned arms' extra epochs with CE separates pruning from extra training. Writes
``docs/results/nlu-ambiguity-prune.md``: the teacher's quality, whether plain KD beats the CE twin, the method
against every control with 95 % intervals (JSD to the human distributions, overall and on the ambiguous tokens),
the per-layer probes, the parameters per seed and the claims.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python tools/repro/nlu_ambiguity_prune.py
"""

from __future__ import annotations

from nlu_repro import PaperClaim, study_script

INTRO = """Park and Park, "Deep Model Compression Also Helps Models Capture Ambiguity", ACL 2023,
arXiv:2306.07061; method: `kd_nlu.methods.ambiguity` (S2), building blocks in `kd_nlu.ambiguity`; data: the
VADER lexicon's ten human ratings per token binned into negative/neutral/positive, gold = majority label. The
plateau rule and λ are our reading of the paper. Arms: **lower-kd** (pruned, distilled from the lower-layer
probe), **top-kd** (pruned, distilled from the full teacher), **pruned-ce**, **full-ce** and **full-extra** (the
full teacher, the same extra CE epochs as the pruned arms)."""
CLAIMS = [PaperClaim("lower-kd", "full-ce", "the pruned, lower-layer-distilled model captures the human distributions "
                                            "better than the full fine-tuned model (JSD)"),
          PaperClaim("lower-kd", "full-extra", "and better than the full model given the same extra epochs"),
          PaperClaim("lower-kd", "pruned-ce", "distilling the lower layer, not pruning alone, is the cause"),
          PaperClaim("lower-kd", "top-kd", "the lower layer is a better source than the top layer")]


def main(argv: list[str] | None = None) -> int:
    """Run the study over the seeds and write the results page."""
    study_script(__doc__, "ambiguity-prune", title="S2: layer pruning with lower-layer distillation for label "
                 "ambiguity (VADER)", intro=INTRO, script="nlu_ambiguity_prune.py", argv=argv, claims=CLAIMS,
                 scale="4,000 VADER lexicon tokens (10 human ratings each), MiniLM-L6 (22 M parameters, 6 layers),",
                 paper_scale="ChaosNLI (SNLI/MNLI items with 100 labels each) and SemEval-2007 emotion headlines, "
                             "BERT-base-class encoders trained on SNLI/MNLI, on a GPU.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
