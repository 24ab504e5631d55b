"""``kd-edge`` answers ``--help`` and ``recipes``."""

from __future__ import annotations

import pytest
from kd_edge.cli import main


def test_help_names_distill(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: kd-edge" in out
    assert "distill" in out


def test_recipes_lists_and_succeeds() -> None:
    assert main(["recipes"]) == 0


def test_help_loads_no_heavy_library() -> None:
    """``kd-edge --help`` (and ``prune --help``) build every parser without importing torch, ONNX, ORT,
    Torch-Pruning or matplotlib: a fresh interpreter shows which modules the parser pulled in."""
    import subprocess
    import sys

    code = ("import sys\nfrom kd_edge.cli import build_parser\nparser = build_parser()\n"
            "parser.parse_args(['prune', '--model', 'x:y'])\n"
            "heavy = ('torch', 'onnx', 'onnxruntime', 'torch_pruning', 'matplotlib', 'numpy')\n"
            "print(sorted(m for m in heavy if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_prune_command_record_name_matches_the_record_module() -> None:
    from kd_edge.prune import command, record

    assert command.RECORD == record.RECORD


@pytest.mark.parametrize("command", ["quantize", "bench"])
def test_mixed_precision_keeps_layers_in_fp16_unless_told(command: str) -> None:
    from kd_edge.cli import build_parser

    parser = build_parser()
    assert parser.parse_args([command, "--model", "mlp"]).keep == "fp16"
    assert parser.parse_args([command, "--model", "mlp", "--keep", "fp32"]).keep == "fp32"
    with pytest.raises(SystemExit):
        parser.parse_args([command, "--model", "mlp", "--keep", "int4"])
    assert parser.parse_args([command, "--model", "mlp"]).int8_ops == "all"
    assert parser.parse_args([command, "--model", "mlp", "--int8-ops", "kernels"]).int8_ops == "kernels"
    with pytest.raises(SystemExit):
        parser.parse_args([command, "--model", "mlp", "--int8-ops", "convtranspose"])
