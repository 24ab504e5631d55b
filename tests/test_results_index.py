"""docs/results/README.md lists every results page with its gate and paired verdicts, read back from the pages'
own sentences and comparison tables by tools/repro/results_index.py, and stays in step with the pages."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools" / "repro"))

import results_index

PAGE = """# A study

**kd** beats **scratch** by 0.40 in psnr (95 % CI of the difference +0.10 to +0.70, 3 paired seeds): **held**.

**Gate failed**: the teacher ...

| a | b | metric | mean a − b | 95 % CI | seeds | verdict |
|---|---|---|---|---|---|---|
| kd | scratch | psnr | +0.40 | +0.10 to +0.70 | 3 | held |
| kd | scratch | lse_c | -0.0160 | -0.0284 to -0.0036 | 3 | not held |

## Second study

**kd** loses to **scratch** by 0.20 in psnr (95 % CI of the difference -0.50 to +0.10, 5 paired seeds): **inconclusive**
"""


def test_a_page_is_read_back_claim_by_claim(tmp_path: Path) -> None:
    (tmp_path / "study.md").write_text(PAGE, encoding="utf-8")
    (tmp_path / "old.md").write_text("# An old page\n\nkd 91 %, scratch 90 %.\n", encoding="utf-8")
    page = results_index.read_page(tmp_path / "study.md")
    assert page.title == "A study" and page.gate == "**failed**"
    # the table row repeating the sentence counts once; the second study's claim on the same pair counts too
    assert [(c.metric, c.low, c.high, c.n, c.verdict) for c in page.claims] == [
        ("psnr", "+0.10", "+0.70", 3, "held"), ("psnr", "-0.50", "+0.10", 5, "inconclusive"),
        ("lse_c", "-0.0284", "-0.0036", 3, "not held")]
    assert page.counts() == {"held": 1, "not held": 1, "inconclusive": 1}
    text = results_index.build(tmp_path)
    assert "| [A study](study.md) | **failed** | 1 | 1 | 1 |" in text
    assert "| [An old page](old.md) | — | not yet regenerated with paired intervals | | |" in text


def test_the_gates_are_read_from_the_study_reports_sentences() -> None:
    one = "**Teacher gate**: passed (teacher ...).\n\n**KD gate**: **failed**: plain KD does not ..."
    assert results_index.gates(one) == "teacher passed · KD **failed**"
    two_studies = one + "\n**Teacher gate**: passed (...)\n**KD gate**: passed (kd − scratch ...)"
    assert results_index.gates(two_studies) == "teacher passed · KD **failed** in 1 of 2 studies"
    assert results_index.gates("**Gate failed**: ... Gate passed") == "**failed** in 1 of 2 studies"
    assert results_index.gates("# A page without gates") == ""


def test_the_committed_index_matches_the_pages() -> None:
    assert results_index.main(["--check"]) == 0, "run: .venv/bin/python tools/repro/results_index.py"
