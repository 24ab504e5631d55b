"""Reproduce reinforced multi-teacher selection on the WordNet gloss task (Yuan et al., AAAI 2021).

The shipped ``rl-multi-teacher`` study over 3 seeds: a 2-layer BERT student distilled from MiniLM-L6 and two
small BERT teachers with label noise on different class groups, by CE alone, the best single teacher (plain KD),
uniform teacher weights, an oracle selection and the REINFORCE policy. Writes
``docs/results/nlu-rl-multi-teacher.md``: the teachers' quality, whether plain KD beats CE, the policy against
every control with 95 % intervals, and what the policy selected.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python tools/repro/nlu_rl_multi_teacher.py
"""

from __future__ import annotations

from nlu_repro import study_script

INTRO = """Yuan, Shou, Pei, Lin, Gong, Fu and Jiang, "Reinforced Multi-Teacher Selection for Knowledge
Distillation", AAAI 2021, arXiv:2012.06048; method: `kd_nlu.methods.rl_multi_teacher`, policy and reward
`kd_core.reinforced` (state and reward reconstructed from the paper's description). Arms from the same student
initialisation per seed: **ce**, **best-single** (Hinton KD from the teacher best on validation), **uniform**,
**oracle** (the teachers that are right on each text) and **rl** (the policy's selection)."""


def main(argv: list[str] | None = None) -> int:
    """Run the study over the seeds and write the results page."""
    study_script(__doc__, "rl-multi-teacher", title="Reinforced multi-teacher selection on the WordNet gloss task",
                 intro=INTRO, script="nlu_rl_multi_teacher.py", argv=argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
