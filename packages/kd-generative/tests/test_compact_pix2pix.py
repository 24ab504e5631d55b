"""The pix2pix-compact method: its loss by hand, arms that differ only where they should, and a tiny CLI run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from kd_core.objective import Objective
from kd_core.recipes import RunContext, load_recipe
from kd_generative.cli import main
from kd_generative.methods.compact import CompactConfig, LossConfig, arms, kd_terms, student_widths, task
from kd_generative.methods.features import ProjectedL1, decoder_taps
from kd_generative.methods.pix2pix import pix2pix_lr

PHOTOS = "[skimage/chelsea,skimage/coffee,skimage/rocket]"
TINY = ["data.size=16", "data.crops=2", f"data.photos={PHOTOS}", "teacher.depth=2", "teacher.base=8",
        "teacher.epochs=1", "teacher.batch_size=4", "student.epochs=1", "student.batch_size=4", "gan.n_layers=1",
        "metrics.feature_steps=2", "metrics.grid_rows=2", "seeds=[0]", "latency_iterations=0"]


def _config(*extra: str) -> CompactConfig:
    """The shipped recipe with the tiny overrides (validated like ``--set``)."""
    config = load_recipe("pix2pix-compact", [*TINY, *extra], domain="generative")[1]
    assert isinstance(config, CompactConfig)
    return config


def test_the_kd_loss_by_hand() -> None:
    loss = LossConfig(rec=0.5, output=2.0, feature=3.0)
    terms = kd_terms(loss, {"f": (2, 4)})
    objective = Objective(*terms)
    projection = next(t.loss for t in terms if isinstance(t.loss, ProjectedL1)).projection
    with torch.no_grad():
        projection.weight.copy_(torch.arange(8.0).reshape(4, 2, 1, 1) / 10)
    s, t, y = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 1.0]]), torch.tensor([[0.5, -1.0]])
    fs = torch.tensor([1.0, -1.0]).reshape(1, 2, 1, 1)
    ft = torch.zeros(1, 4, 1, 1)
    result = objective({"logits": s, "f": fs}, {"logits": t, "f": ft}, {"target": y}, 0.0)
    rec = (0.5 + 2.0) / 2  # |0 − 0.5|, |1 − (−1)|
    out = (1.0 + 0.0) / 2
    projected = [(w0 - w1) / 10 for w0, w1 in ((0, 1), (2, 3), (4, 5), (6, 7))]  # W·[1, −1]: all −0.1
    feat = sum(abs(v) for v in projected) / 4
    assert result.terms["rec"].item() == pytest.approx(rec)
    assert result.terms["out"].item() == pytest.approx(out)
    assert result.terms["feat.f"].item() == pytest.approx(feat)
    assert result.total.item() == pytest.approx(0.5 * rec + 2.0 * out + 3.0 * feat)


def test_default_taps_and_widths() -> None:
    assert decoder_taps(4) == ["up.1.2", "up.2.2", "up.3.2"]
    config = CompactConfig(teacher={"depth": 5, "base": 32})
    assert student_widths(config) == [8, 16, 32, 64, 64]  # teacher 32, 64, 128, 256, 256 ÷ 4


def test_pix2pix_lr_holds_then_decays_linearly_to_zero() -> None:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    schedule = pix2pix_lr(optimizer, 10)
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[:6] == [1.0] * 6 and rates[6:] == pytest.approx([0.8, 0.6, 0.4, 0.2])


def test_arms_share_the_student_and_differ_only_in_their_terms(data_home: Path) -> None:
    config = _config()
    built_task = task(config, RunContext(out=Path("unused")))
    built = arms(config, built_task)
    assert list(built) == ["kd", "scratch", "scratch-gan", "kd-gan"]
    assert {a: built[a].role for a in built} == {"kd": "kd", "scratch": "scratch", "scratch-gan": "baseline",
                                                  "kd-gan": "variant"}
    kd = {t.name: t for t in built["kd"].phases()[0].objective.terms}
    scratch = {t.name: t for t in built["scratch"].phases()[0].objective.terms}
    assert set(kd) == {"rec", "out", "feat.up.1.2"} and set(scratch) == {"rec"}
    assert kd["rec"].weight(0.0) == scratch["rec"].weight(0.0) == 1.0
    assert not built["scratch-gan"].uses_teacher and built["kd-gan"].uses_teacher
    a, b, c = built_task.student(0), built_task.student(0), built_task.student(1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert not torch.equal(a.down[0][0].weight, c.down[0][0].weight)
    assert [m.out_channels for m in a.modules() if isinstance(m, torch.nn.Conv2d)] == [2, 4]  # 8, 16 ÷ 4


def _logged_terms(run: Path, arm: str) -> set[str]:
    keys: set[str] = set()
    for line in (run / f"{arm}-seed0" / "metrics.jsonl").read_text().splitlines():
        keys |= {k for k in json.loads(line) if "loss/" in k}
    return keys


def test_a_tiny_cli_run_trains_every_arm_and_reports(tmp_path: Path, data_home: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["distill", "--recipe", "pix2pix-compact", "--out", str(out),
                 *(arg for s in TINY for arg in ("--set", s))]) == 0
    printed = capsys.readouterr().out
    assert f"run directory: {out}" in printed and f"report: {out / 'report.md'}" in printed
    results = json.loads((out / "results.json").read_text())
    assert set(results["arms"]) == {"kd", "scratch", "scratch-gan", "kd-gan"}
    assert results["task"]["headline"] == "psnr" and results["task"]["higher_is_better"]
    assert {"psnr", "ssim", "perceptual", "frechet"} <= set(results["teacher"]["test"])
    scores = results["arms"]["kd"]["seeds"]["0"]
    assert {"psnr", "ssim", "psnr_teacher", "ssim_teacher", "frechet_teacher"} <= set(scores)
    assert results["arms"]["kd"]["cost"]["params"] < results["teacher"]["cost"]["params"] / 4
    report = (out / "report.md").read_text()
    assert "Image quality (test split)" in report and "plots/samples.png" in report
    assert (out / "plots" / "samples.png").is_file()
    assert list((data_home / "teachers").glob("pix2pix-teacher-*.safetensors"))  # the teacher is cached
    # each arm's objective as logged: the discriminator only in the GAN arms, the teacher only in the KD arms
    assert _logged_terms(out, "scratch") == {"loss/total", "loss/rec"}
    assert _logged_terms(out, "kd") == {"loss/total", "loss/rec", "loss/out", "loss/feat.up.1.2"}
    assert _logged_terms(out, "scratch-gan") == {"loss/total", "loss/rec", "loss/gan", "teacher_loss/total",
                                                 "teacher_loss/discriminator/real", "teacher_loss/discriminator/fake"}
    assert _logged_terms(out, "kd-gan") == _logged_terms(out, "kd") | _logged_terms(out, "scratch-gan")
    # eval re-scores the saved students with the cached teacher (no retraining)
    assert main(["eval", str(out)]) == 0
    assert "kd/seed0/psnr" in capsys.readouterr().out
