"""The wav2lip-compact method: its loss by hand (output, feature and sync terms), bad settings refused before any
data or training, the compact student's size at 96 px, and a tiny study run end to end. The data-backed tests
need flite, espeak-ng and pocketsphinx: skipped where missing, failed on CI (``CI=true``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from kd_core.errors import ConfigError
from kd_core.objective import Objective
from kd_core.recipes import RunContext, load_recipe
from kd_generative.methods.features import ProjectedL1
from kd_generative.methods.wav2lip_compact import LossConfig, Wav2LipCompactConfig, arms, kd_terms, task
from kd_generative.methods.wav2lip_losses import LowerHalfCritic, SyncLoss
from kd_generative.talking.generator import TalkingFaceGenerator, build_generator, compression_ratios
from kd_generative.talking.megamind import check_tracks, read_megamind
from kd_generative.tasks.talking import student_generator
from kd_generative.tasks.talking_config import TalkingTeacher
from torch import nn

#: A tiny setting: 4 sentences (2 train, 1 val, 1 test), the test voice held out, small models, one epoch.
TINY = ["data.size=24", "data.sentences=[0,1,2,3]", "data.voices=[flite/slt,flite/awb]", "data.test_voices=[flite/awb]",
        "data.faces_per_utterance=1", "data.stride=6", "data.eval_stride=10", "teacher.width=4",
        "teacher.audio_width=8", "teacher.residuals=1", "teacher.epochs=1", "teacher.batch_size=8",
        "expert.steps=10", "expert.width=4", "expert.audio_width=4", "expert.embed=8", "student.epochs=1",
        "student.batch_size=8", "gan.n_layers=1", "gan.base=4", "metrics.max_offset=2", "metrics.strip_frames=3",
        "seeds=[0]", "latency_iterations=0"]


def _config(*extra: str) -> Wav2LipCompactConfig:
    """The shipped recipe with the tiny overrides (validated like ``--set``)."""
    config = load_recipe("wav2lip-compact", [*TINY, *extra], domain="generative")[1]
    assert isinstance(config, Wav2LipCompactConfig)
    return config


class _Expert(nn.Module):
    """A stand-in expert whose embeddings are the first two values of its inputs, normalised."""

    frames = 1

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def embed_face(self, lower: torch.Tensor) -> torch.Tensor:
        return F.normalize(lower.flatten(1)[:, :2], dim=1)

    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:
        return F.normalize(mel.flatten(1)[:, :2], dim=1)


def test_the_kd_loss_by_hand() -> None:
    loss = LossConfig(rec=0.5, output=2.0, feature=3.0, sync=0.1)
    terms = kd_terms(loss, {"f": (2, 4)}, _Expert())  # type: ignore[arg-type]
    assert [t.name for t in terms] == ["rec", "out", "feat.f", "sync"]
    projection = next(t.loss for t in terms if isinstance(t.loss, ProjectedL1)).projection
    with torch.no_grad():
        projection.weight.copy_(torch.arange(8.0).reshape(4, 2, 1, 1) / 10)
    s = torch.zeros(1, 1, 3, 2, 2)  # (B, T, 3, S, S): 12 values
    s[0, 0, 0, 1] = torch.tensor([1.0, 0.0])  # lower half, channel 0: what the expert reads
    s[0, 0, 0, 0] = torch.tensor([0.0, 1.0])  # upper half: must not be read
    mel = torch.tensor([2.0, 1.0]).reshape(1, 1, 2, 1)
    fs, ft = torch.tensor([1.0, -1.0]).reshape(1, 2, 1, 1), torch.zeros(1, 4, 1, 1)
    result = Objective(*terms)({"logits": s, "f": fs}, {"logits": torch.ones_like(s), "f": ft},
                               {"target": torch.zeros_like(s), "mel": mel}, 0.0)
    rec = 2 / 12  # two ones against zeros
    out = 10 / 12  # ten zeros against ones
    feat = sum(abs((w0 - w1) / 10) for w0, w1 in ((0, 1), (2, 3), (4, 5), (6, 7))) / 4  # W·[1, −1] = −0.1 each
    sync = -math.log(2 / math.sqrt(5))  # cos([1, 0], [2, 1]); the upper half would give 1/√5
    for name, value in (("rec", rec), ("out", out), ("feat.f", feat), ("sync", sync)):
        assert result.terms[name].item() == pytest.approx(value, rel=1e-5), name
    assert result.total.item() == pytest.approx(0.5 * rec + 2.0 * out + 3.0 * feat + 0.1 * sync, rel=1e-5)


def test_the_sync_loss_trains_the_generator_and_never_the_expert() -> None:
    from kd_generative.talking.expert import SyncExpert

    torch.manual_seed(2)  # a seed whose embeddings are not orthogonal (the probability is not clamped)
    expert = SyncExpert(size=24, width=4, audio_width=4, embed=8)
    frames = torch.rand(2, 5, 3, 24, 24, requires_grad=True)
    value = SyncLoss(expert)(frames, torch.randn(2, 1, 80, 16))
    value.backward()
    assert 0 < value.item() < -math.log(1e-6) and frames.grad is not None and frames.grad[:, :, :, :12].abs().sum() == 0
    assert frames.grad[:, :, :, 12:].abs().sum() > 0  # only the lower half reaches the expert
    assert all(p.grad is None and not p.requires_grad for p in expert.parameters())
    with pytest.raises(ConfigError):
        SyncLoss(expert)(torch.rand(2, 3, 3, 24, 24), torch.randn(2, 1, 80, 16))  # 3 frames, expert takes 5


def test_the_critic_judges_lower_halves_conditioned_on_the_reference() -> None:
    critic = LowerHalfCritic(base=4, n_layers=1).eval()
    condition, image = torch.rand(2, 5, 6, 24, 24), torch.rand(2, 5, 3, 24, 24)
    logits = critic(condition, image)
    assert logits.shape[0] == 10  # one map per frame
    changed = image.clone()
    changed[..., :12, :] = 0  # the upper half is not judged
    changed_condition = condition.clone()
    changed_condition[:, :, :3] = 0  # nor the masked input (only the reference, channels 3-5)
    assert torch.equal(critic(changed_condition, changed), logits)


def test_the_compact_student_is_at_least_28x_smaller_at_96_px() -> None:
    teacher = build_generator(96)
    student = student_generator(96, TalkingTeacher(width=16, audio_width=32, residuals=2))
    compact = build_generator(96, compact=True)
    assert sum(p.numel() for p in student.parameters()) == sum(p.numel() for p in compact.parameters())
    ratios = compression_ratios(teacher, student, 96)
    assert ratios["params"] >= 28 and ratios["macs"] >= 28, ratios


@pytest.mark.parametrize(("override", "argument"), [
    ("data.size=50", "data.size"), ("data.size=32", "data.size"),
    ("student.width_multiplier=0", "student.width_multiplier"),
    ("student.width_multiplier=-0.5", "student.width_multiplier"), ("teacher.width=0", "teacher.width"),
    ("data.test_voices=[flite/kal16]", "data.test_voices"), ("gan.n_layers=3", "gan.n_layers"),
])
def test_bad_settings_name_the_field_before_any_data_is_built(override: str, argument: str, data_home: Path) -> None:
    config = _config(override)
    with pytest.raises(ConfigError) as caught:
        task(config, RunContext(out=data_home / "unused", device="cpu"))
    assert caught.value.argument == argument
    assert not (data_home / "talking-speech").exists()  # refused before any speech was synthesized


def test_a_generator_width_must_be_positive() -> None:
    with pytest.raises(ConfigError) as caught:
        TalkingFaceGenerator(24, width=0)
    assert caught.value.argument == "width"


def _write_video(path: Path, video_seconds: float, audio_seconds: float | None) -> None:
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=25)
        video.width = video.height = 64
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("pcm_s16le", rate=16000, layout="mono") if audio_seconds is not None else None
        for i in range(round(video_seconds * 25)):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 5 * i % 255, np.uint8), format="rgb24")
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio is not None:
            n = round(audio_seconds * 16000)
            samples = (np.sin(np.arange(n) / 10) * 8000).astype(np.int16)[None]
            for k in range(0, n, 1600):
                frame = av.AudioFrame.from_ndarray(samples[:, k:k + 1600], format="s16", layout="mono")
                frame.sample_rate = 16000
                for packet in audio.encode(frame):
                    container.mux(packet)
            for packet in audio.encode():
                container.mux(packet)


@pytest.mark.parametrize("audio_seconds", [None, 1.0])
def test_a_video_without_audio_or_with_audio_of_another_length_is_refused(audio_seconds: float | None,
                                                                          tmp_path: Path) -> None:
    (tmp_path / "fruits.jpg").write_bytes(b"")  # marks the folder as opencv-doc's data folder
    _write_video(tmp_path / "Megamind.avi", 2.0, audio_seconds)
    with pytest.raises(ConfigError) as caught:
        read_megamind(tmp_path, size=24)
    assert caught.value.argument == "video"
    check_tracks(2.0, 2.1, "in range")  # within 0.2 s: accepted
    with pytest.raises(ConfigError):
        check_tracks(2.0, 2.3, "out of range")


def test_arms_share_the_student_and_differ_only_in_their_terms(speech_home: Path) -> None:
    config = _config()
    built_task = task(config, RunContext(out=speech_home / "unused", device="cpu"))
    data = built_task.extras["data"]()
    voices = {name: {data.corpus.utterances[data.clips[c].utterance].voice
                     for c, _ in getattr(built_task.data, name).windows.items} for name in ("train", "val", "test")}
    assert voices == {"train": {"flite/slt"}, "val": {"flite/slt"}, "test": {"flite/awb"}}
    built = arms(config, built_task)
    assert {a: built[a].role for a in built} == {"kd": "kd", "scratch": "scratch", "scratch-gan": "baseline",
                                                  "kd-gan": "variant"}
    kd = {t.name: t for t in built["kd"].phases()[0].objective.terms}
    scratch = {t.name: t for t in built["scratch"].phases()[0].objective.terms}
    assert set(scratch) == {"rec", "sync"}
    assert set(kd) == {"rec", "out", "sync", *(f"feat.decoder.{j}" for j in range(5))}  # 24 px: 5 decoder stages
    assert kd["sync"].weight(0.0) == scratch["sync"].weight(0.0) == 0.03
    assert not built["scratch-gan"].uses_teacher and built["kd-gan"].uses_teacher
    a, b = built_task.student(0), built_task.student(0)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_tiny_study_runs_end_to_end(speech_home: Path, tmp_path: Path) -> None:
    from kd_generative.methods.wav2lip_compact import METHOD

    config = _config()
    run = Path(METHOD.build(config).run(RunContext(out=tmp_path / "run", device="cpu", progress=False)))
    results = json.loads((run / "results.json").read_text())
    assert set(results["arms"]) == {"kd", "scratch", "scratch-gan", "kd-gan"}
    scores = results["arms"]["kd"]["seeds"]["0"]
    for metric in ("psnr", "ssim", "psnr_mouth", "sync", "lse_d", "lse_c", "psnr_teacher", "l1_teacher"):
        assert math.isfinite(scores[metric]), metric
    costs = next(iter(results["wav2lip"]["costs"].values()))
    assert costs["params_ratio"] > 4 and costs["macs_ratio"] > 4
    assert {(c["a"], c["b"]) for c in results["comparisons"]} == {("kd", "scratch"), ("kd", "scratch-gan"),
                                                                 ("kd-gan", "kd"), ("scratch-gan", "scratch")}
    report = (run / "report.md").read_text()
    copy = results["wav2lip"]["reference_copy"]
    assert {"psnr", "psnr_mouth", "lse_c", "lse_d"} <= set(copy) and copy["psnr_mouth"] < copy["psnr"]
    assert "## Mouth and lip-sync comparisons" in report and "(plots/frame_strip.png)" in report
    assert "## Gate: the teacher against copying the reference frame" in report and "reference copy" in report
    assert (run / "plots" / "frame_strip.png").stat().st_size > 1000
