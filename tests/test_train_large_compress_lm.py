"""The S24 language-model experiment's own rules (tools/repro/train_large_compress.py) by hand: the Pareto frontier,
the matched point fixed before the run, the learning-rate schedule and the page's point labels."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

REPRO = Path(__file__).resolve().parents[1] / "tools" / "repro"


@pytest.fixture(scope="module")
def lm():
    sys.path.insert(0, str(REPRO))
    try:
        spec = importlib.util.spec_from_file_location("train_large_compress", REPRO / "train_large_compress.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses resolve their annotations through sys.modules
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("train_large_compress", None)
        sys.path.remove(str(REPRO))


def _row(model: str, sparsity: float, bits: int, size: float, val: float, test: float) -> dict:
    return {"model": model, "sparsity": sparsity, "bits": bits, "bytes": size, "val_ppl": val, "test_ppl": test}


ROWS = [_row("d64", 0.0, 32, 100, 80, 81), _row("d64", 0.5, 8, 20, 90, 92), _row("d128", 0.0, 32, 300, 70, 71),
        _row("d128", 0.0, 8, 80, 71, 72), _row("d128", 0.8, 4, 15, 120, 125), _row("d128", 0.5, 4, 40, 75, 90)]


def test_the_pareto_frontier_keeps_only_points_no_smaller_point_beats(lm) -> None:
    front = [(r["model"], r["bytes"]) for r in lm.pareto(ROWS)]
    # by bytes: 15 (125), 20 (92: better), 40 (90: better), 80 (72: better), 100 (81: worse), 300 (71: better)
    assert front == [("d128", 15), ("d64", 20), ("d128", 40), ("d128", 80), ("d128", 300)]


def test_the_matched_point_is_the_best_on_validation_within_the_budget_and_compressed(lm) -> None:
    # within 100 bytes, d128's compressed points are 8-bit (val 71), 80 %+4-bit (120) and 50 %+4-bit (75)
    assert lm.matched_point(ROWS, "d128", 100)["bytes"] == 80
    assert lm.matched_point(ROWS, "d128", 39)["sparsity"] == 0.8  # only the 15-byte point fits
    assert lm.matched_point(ROWS, "d128", 10) is None
    assert lm.matched_point(ROWS, "d64", 1000)["bits"] == 8  # the uncompressed point is never the match


def test_learning_rate_warms_up_linearly_then_decays_by_cosine_to_a_tenth(lm) -> None:
    assert lm.learning_rate(0, 100, 1e-3, 10) == pytest.approx(1e-4)
    assert lm.learning_rate(9, 100, 1e-3, 10) == pytest.approx(1e-3)
    assert lm.learning_rate(55, 100, 1e-3, 10) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2))))
    assert lm.learning_rate(100, 100, 1e-3, 10) == pytest.approx(1e-4)


def test_point_labels(lm) -> None:
    assert lm.label("d256", 0.8, 4) == "d256 pruned 80 % + 4-bit"
    assert lm.label("d256", 0.0, 32) == "d256" and lm.label("d64", 0.0, 8) == "d64 8-bit"
