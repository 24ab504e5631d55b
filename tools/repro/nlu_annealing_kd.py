"""Reproduce Annealing-KD for text classification on the WordNet gloss task (Jafari et al., EACL 2021).

The shipped kd-nlu ``annealing-kd`` study over 3 seeds: a small BERT student from the fine-tuned MiniLM-L6
teacher by annealing-KD (annealed logit MSE, then CE), by the same two phases without annealing, by vanilla
Hinton KD and from scratch. Writes ``docs/results/nlu-annealing-kd.md``: the teacher's quality, whether vanilla
KD beats scratch, and every paired comparison with its 95 % t-interval and verdict.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python tools/repro/nlu_annealing_kd.py
"""

from __future__ import annotations

from nlu_repro import study_script

INTRO = """Jafari, Rezagholizadeh, Sharma and Ghodsi, "Annealing Knowledge Distillation", EACL 2021,
arXiv:2104.07163 (GLUE with BERT students); method: `kd_nlu.methods.annealing`, phases and Φ(T) schedule in
`kd_core.annealing`. Arms from the same student initialisation per seed and the same epoch budget:
**annealing-kd** (phase I MSE(z_s, Φ(T)·z_t), the best phase-I student restored, phase II cross-entropy with a
fresh AdamW), **mse-kd** (the same with Φ ≡ 1), **hinton-kd** (vanilla KD) and **scratch**."""


def main(argv: list[str] | None = None) -> int:
    """Run the study over the seeds and write the results page."""
    study_script(__doc__, "annealing-kd", title="Annealing-KD for text classification (WordNet glosses)",
                 intro=INTRO, script="nlu_annealing_kd.py", argv=argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
