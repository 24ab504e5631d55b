"""A results page's closing "Claims" section (tools/repro/repro_common.py): one line per paper claim read from the
study's results.json, a warning when a gate failed, the scale tested and what the paper's scale needs."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools" / "repro"))

from repro_common import PaperClaim, claims_section

RESULTS = {
    "task": {"headline": "accuracy"},
    "arms": {"kd": {"role": "kd"}, "scratch": {"role": "scratch"}, "akd": {"role": "variant"}},
    "teacher": {"gate": [{"name": "lead", "passed": True, "detail": ""}]},
    "kd_gate": {"name": "kd-beats-scratch", "passed": True, "detail": ""},
    "comparisons": [
        {"a": "kd", "b": "scratch", "metric": "accuracy", "mean": 1.234, "low": 0.5, "high": 1.968, "n": 10,
         "verdict": "held"},
        {"a": "akd", "b": "kd", "metric": "accuracy", "mean": -0.2, "low": -0.9, "high": 0.5, "n": 10,
         "verdict": "inconclusive"},
        {"a": "akd", "b": "kd", "metric": "ece", "mean": -1.0, "low": None, "high": None, "n": 1,
         "verdict": "inconclusive"}],
}
CLAIMS = [PaperClaim("akd", "kd", "Annealing-KD beats KD"), PaperClaim("akd", "kd", "and is better calibrated", "ece"),
          PaperClaim("takd", "kd", "TAKD beats KD")]


def test_one_line_per_claim_with_its_interval_and_the_scales() -> None:
    text = claims_section(RESULTS, CLAIMS, "MNIST-5k, MLP students", "CIFAR-100 and GLUE, ResNets and BERT")
    lines = text.splitlines()
    assert lines[0] == ("- Annealing-KD beats KD (akd − kd, accuracy): -0.20, 95 % CI [-0.90, +0.50], 10 paired seeds: "
                        "**inconclusive**.")
    assert lines[1] == "- and is better calibrated (akd − kd, ece): -1.00, no interval (n = 1), 1 paired seed: " \
                       "**inconclusive**."
    assert lines[2] == "- TAKD beats KD (takd − kd): not compared in this run."
    assert "gates did not pass" not in text
    assert "**Scale tested**: MNIST-5k, MLP students" in text
    assert "**At the paper's scale**: CIFAR-100 and GLUE, ResNets and BERT" in text


def test_a_failed_gate_turns_the_lines_into_a_description() -> None:
    failed = {**RESULTS, "kd_gate": {"name": "kd-beats-scratch", "passed": False, "detail": ""},
              "teacher": {"gate": [{"name": "confidence", "passed": False, "detail": ""}]}}
    text = claims_section(failed, CLAIMS[:1], "s", "p")
    assert ("The gates did not pass (the teacher gate failed; plain KD did not beat scratch): the lines above describe "
            "this run") in text
