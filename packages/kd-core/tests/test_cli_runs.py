"""Run directories through the real ``kd-vision`` entry point: resume from the run's own config.yaml, the lock,
``--out`` where no run directory can be made, and Ctrl-C (each run tiny, in a subprocess)."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

KD_VISION = Path(sys.executable).parent / "kd-vision"
pytestmark = pytest.mark.skipif(not KD_VISION.is_file(), reason="kd-vision is not installed beside this Python")

TINY = ["--set", "data.source=sklearn8x8", "--set", "data.train_size=60", "--set", "data.teacher_train_size=60",
        "--set", "data.val_size=30", "--set", "data.test_size=60", "--set", "teacher.epochs=1",
        "--set", "student.epochs=1", "--set", "seeds=[0]", "--set", "latency_iterations=1", "--device", "cpu"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Offline, with a private ``KD_DATA_HOME`` (so the teacher is trained here, not read from a cache)."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "KD_DATA_HOME": str(tmp_path / "kd-home"),
            "OMP_NUM_THREADS": "1"}


def _kd_vision(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(KD_VISION), *args], capture_output=True, text=True, env=env, timeout=300, cwd=cwd)


def _default_sigint() -> None:
    """In the child: SIGINT as a terminal gives it. A shell without job control starts background jobs (``cmd &``)
    with SIGINT ignored, and an ignored signal stays ignored across exec, so a test suite run that way would
    otherwise start a CLI that never sees Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([str(KD_VISION), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, preexec_fn=_default_sigint)


def _wait_for_checkpoint(out: Path, process: subprocess.Popen) -> Path:
    """The first ``checkpoints/last.safetensors`` under ``out`` (the run still going)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        found = list(out.rglob("checkpoints/last.safetensors"))
        if found:
            assert process.poll() is None, process.communicate()
            return found[0]
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    raise AssertionError("no checkpoint within the deadline")


def test_resume_with_no_flags_goes_on_with_the_runs_own_config_and_the_lock_refuses_a_second_process(
        tmp_path: Path, env: dict[str, str]) -> None:
    out = tmp_path / "run"
    first = _start(["distill", "--recipe", "hinton-kd", "--out", str(out), *TINY,
                    "--set", "kd.temperature=2.5", "--set", "kd.alpha=0.7"], env)
    try:
        _wait_for_checkpoint(out, first)
        started = (out / "config.yaml").read_text()
        assert "temperature: 2.5" in started and "train_size: 60" in started and "device: cpu" in started
        second = _kd_vision(["distill", "--recipe", "hinton-kd", "--out", str(out), "--resume"], env)
        assert first.poll() is None  # (the first still trains: the refusal is the lock's)
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and f"process {first.pid} holds" in lines[0] and str(out) in lines[0]
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert first.returncode == -signal.SIGKILL and not (out / "report.md").exists()

    resumed = _kd_vision(["distill", "--recipe", "hinton-kd", "--out", str(out), "--resume"], env)
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "report.md").is_file() and (out / "results.json").is_file()
    assert (out / "config.yaml").read_text() == started  # the run ended with the configuration it began with
    assert "temperature: 2.5" in (out / "kd-seed0" / "config.yaml").read_text()

    # flags given with --resume may repeat the run's configuration, not change it
    changed = _kd_vision(["distill", "--recipe", "hinton-kd", "--out", str(out), "--resume",
                          "--set", "kd.temperature=4.0"], env)
    assert changed.returncode == 2
    assert "--resume: expected the same configuration" in changed.stderr and "2.5 -> 4.0" in changed.stderr
    precision = _kd_vision(["distill", "--recipe", "hinton-kd", "--out", str(out), "--resume",
                            "--precision", "bf16"], env)
    assert precision.returncode == 2 and "precision: 'fp32' -> 'bf16'" in precision.stderr
    assert (out / "config.yaml").read_text() == started


@pytest.mark.parametrize("where", ["proc", "file"])
def test_an_out_where_no_run_directory_can_be_made_is_one_line_exit_2_and_creates_nothing(
        tmp_path: Path, env: dict[str, str], where: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    blocker = work / "a-file"
    blocker.write_text("keep")
    out = Path("/proc/kd-test") if where == "proc" else blocker
    result = _kd_vision(["distill", "--recipe", "hinton-kd", "--out", str(out), *TINY], env, cwd=work)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --out:") and str(out) in lines[0]
    assert "Traceback" not in result.stderr
    # nothing made: not the --out, not a default runs/ folder in the working directory
    assert sorted(p.name for p in work.iterdir()) == ["a-file"] and blocker.read_text() == "keep"
    assert not Path("/proc/kd-test").exists()


def test_ctrl_c_exits_130_naming_the_checkpoint_and_the_command_that_resumes(tmp_path: Path,
                                                                            env: dict[str, str]) -> None:
    out = tmp_path / "run"
    # 30 student epochs: the run goes on after its first checkpoint, so that on a loaded machine the signal still
    # lands while it trains
    process = _start(["distill", "--recipe", "hinton-kd", "--out", str(out), *TINY, "--set", "kd.alpha=0.6",
                      "--set", "student.epochs=30"], env)
    _wait_for_checkpoint(out, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and not (out / "report.md").exists()
    lines = stderr.strip().splitlines()[-2:]
    assert lines[0].startswith("interrupted: the last checkpoint is ") and str(out) in lines[0]
    assert Path(lines[0].removeprefix("interrupted: the last checkpoint is ")).is_file()
    command = shlex.split(lines[1].removeprefix("resume with: "))
    assert command == ["kd-vision", "distill", "--recipe", "hinton-kd", "--out", str(out), "--resume",
                       "--device", "cpu"]
    resumed = _kd_vision(command[1:], env)  # (the same command, through this venv's kd-vision)
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "report.md").is_file() and "alpha: 0.6" in (out / "config.yaml").read_text()


def test_run_command_prints_the_run_or_the_error_and_sets_the_exit_status(tmp_path: Path, capsys) -> None:
    from kd_core.cli import run_command
    from kd_core.errors import ConfigError

    assert run_command(lambda: tmp_path) == 0
    out = capsys.readouterr().out
    assert f"run directory: {tmp_path}" in out and f"report: {tmp_path / 'report.md'}" in out
    assert run_command(lambda: 3) == 3

    def bad() -> Path:
        raise ConfigError("--size", "an even integer >= 12", 7)

    assert run_command(bad) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--size" in err and "7" in err

    def interrupted() -> Path:
        raise KeyboardInterrupt

    assert run_command(interrupted) == 130 and capsys.readouterr().err == "interrupted\n"
