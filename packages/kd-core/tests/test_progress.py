"""Without a terminal, progress is printed as plain lines (phase, epoch, loss, ETA), at most every few seconds."""

from __future__ import annotations

import io

import pytest
from kd_core import Backend, Distiller, Objective, Phase, Term, cross_entropy
from kd_core.progress import PlainProgress, ProgressCallback, progress_bar
from kd_core.testing import BlobDataset, tiny_mlp


def _fit(tmp_path, callback: ProgressCallback, epochs: int = 2) -> None:
    phases = [Phase("warmup", Objective(Term("ce", cross_entropy, target="label")), epochs=epochs)]
    Distiller(tiny_mlp(seed=0), phases=phases, backend=Backend("cpu"), batch_size=16,
              callbacks=[callback]).fit(BlobDataset(64), BlobDataset(32, seed=1), out=tmp_path / "run")


def test_fit_prints_plain_lines_with_phase_epoch_and_loss(tmp_path) -> None:
    stream = io.StringIO()  # not a terminal
    _fit(tmp_path, ProgressCallback("student", stream=stream, interval=0))
    lines = stream.getvalue().splitlines()
    assert lines, "no progress line printed"
    for line in lines:
        assert line.startswith("student warmup: "), line
        assert "loss " in line and "ETA " in line and "epoch " in line, line
    assert any("epoch 1/2" in line for line in lines) and any("epoch 2/2" in line for line in lines)
    assert "\x1b[" not in stream.getvalue()  # no terminal escapes in logs
    # one line per epoch end names the validation metric; the last says the phase is done
    assert sum("val/accuracy" in line for line in lines) == 2
    assert lines[-1].startswith("student warmup: 8/8") and "ETA 0:00:00" in lines[-1]


def test_lines_wait_for_the_interval_but_epoch_ends_always_print(tmp_path) -> None:
    stream = io.StringIO()
    _fit(tmp_path, ProgressCallback("student", stream=stream, interval=1e9), epochs=3)
    lines = stream.getvalue().splitlines()
    assert [line.split("  ")[1].split(" loss")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]


def test_plain_progress_prints_at_most_every_interval_on_its_clock() -> None:
    now = [0.0]
    stream = io.StringIO()
    progress = progress_bar(stream=stream, interval=10.0, get_time=lambda: now[0])
    assert isinstance(progress, PlainProgress)
    with progress:
        task = progress.add_task("latency", total=100, info="")
        for step in range(100):
            now[0] += 1.0  # one second a step
            progress.update(task, advance=1, info=f"block {step}")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10  # at 10 s, 20 s, ... 90 s, and when done at 100 s
    assert lines[0].startswith("latency: 10/100  block 9  elapsed 0:00:10  ETA 0:01:30")
    assert lines[-1].startswith("latency: 100/100") and lines[-1].endswith("ETA 0:00:00")


def test_a_negative_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="interval"):
        PlainProgress(stream=io.StringIO(), interval=-1)


def test_a_plain_fit_shows_progress_and_progress_false_keeps_it_silent(tmp_path, capsys) -> None:
    phases = [Phase("warmup", Objective(Term("ce", cross_entropy, target="label")), epochs=2)]
    Distiller(tiny_mlp(seed=0), phases=phases, backend=Backend("cpu"), batch_size=16).fit(
        BlobDataset(64), BlobDataset(32, seed=1), out=tmp_path / "shown")
    err = capsys.readouterr().err  # stderr is not a terminal here: plain lines
    assert "warmup: " in err and "epoch 2/2" in err and "val/accuracy" in err, err
    quiet = Distiller(tiny_mlp(seed=0), phases=phases, backend=Backend("cpu"), batch_size=16, progress=False)
    quiet.fit(BlobDataset(64), BlobDataset(32, seed=1), out=tmp_path / "quiet")
    assert capsys.readouterr().err == "" and quiet.callbacks == []


def test_a_fit_inside_a_shown_display_adds_its_bar_to_it_and_starts_no_second_one(tmp_path) -> None:
    from kd_core import progress as progress_module

    stream = io.StringIO()
    phases = [Phase("inner", Objective(Term("ce", cross_entropy, target="label")), epochs=1)]
    with progress_bar(stream=stream, interval=0) as outer:
        Distiller(tiny_mlp(seed=0), phases=phases, backend=Backend("cpu"), batch_size=16).fit(
            BlobDataset(64), None, out=tmp_path / "run")
        shown = list(progress_module._SHOWN)
    assert shown == [outer]  # still the one display, with the fit's bar in it
    assert not progress_module._SHOWN
    assert "inner: 4/4" in stream.getvalue()
