"""``kd-nlu`` answers ``--help`` and ``recipes``."""

from __future__ import annotations

import pytest
from kd_nlu.cli import main


def test_help_names_distill(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: kd-nlu" in out
    assert "distill" in out


def test_recipes_lists_and_succeeds() -> None:
    assert main(["recipes"]) == 0


def test_recipes_lists_the_study_recipes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("tinybert-task", "tinybert-general", "teacher-finetune"))


def test_eval_of_a_folder_without_a_run_is_a_one_line_error(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(tmp_path)]) == 2
    assert "RUN" in capsys.readouterr().err
