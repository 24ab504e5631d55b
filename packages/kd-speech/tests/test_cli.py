"""``kd-speech`` answers ``--help`` and ``recipes``."""

from __future__ import annotations

import pytest
from kd_speech.cli import main


def test_help_names_distill(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: kd-speech" in out
    assert "distill" in out


def test_recipes_lists_and_succeeds() -> None:
    assert main(["recipes"]) == 0


def test_data_build_writes_a_report_with_voice_disjoint_splits(tmp_path, monkeypatch, capsys) -> None:
    import json
    import shutil

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (tools/setup.sh installs it as root)")
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path / "home"))
    out = tmp_path / "run"
    assert main(["data", "build", "--voices", "3", "--flite-voices", "0", "--intents", "2", "--out", str(out)]) == 0
    assert f"report: {out / 'report.md'}" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert [row["utterances"] for row in results["splits"]] == [2, 2, 2]  # one voice each, 2 intents
    voices = results["voices"]
    assert not set(voices["train"]) & set(voices["test"]) and (out / "plots" / "durations.png").is_file()
    assert "Splits are by voice" in (out / "report.md").read_text()


@pytest.mark.parametrize(("argv", "flag"), [(["--voices", "2"], "--voices"),
                                             (["--val-voices", "2", "--test-voices", "2"], "--val-voices"),
                                             (["--per-intent", "9"], "--per-intent"), (["--seed", "-1"], "--seed")])
def test_data_build_refuses_bad_flags_in_one_line_before_any_work(tmp_path, capsys, argv, flag) -> None:
    assert main(["data", "build", *argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {flag}") and not (tmp_path / "run").exists()
