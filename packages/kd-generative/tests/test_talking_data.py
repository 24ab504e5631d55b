"""Talking-face windows from aligned speech on real faces: determinism (same manifest when rebuilt), shapes,
the masked lower half, splits disjoint in identity and sentence. Needs flite, espeak-ng and pocketsphinx:
skipped where missing, failed on CI (``CI=true``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from kd_core.errors import ConfigError
from kd_generative.talking.corpus import sentence_split
from kd_generative.talking.dataset import TalkingConfig, TalkingFaceData

CONFIG = TalkingConfig(size=24, sentences=(0, 1, 2, 3), voices=("flite/slt", "espeak-ng/en-us+f3"),
                       faces=("skimage/astronaut", "lfw/00", "lfw/01", "lfw/02", "lfw/03"), faces_per_utterance=2)


@pytest.fixture(scope="module")
def data(speech_home: Path) -> TalkingFaceData:
    return TalkingFaceData(CONFIG)


def test_the_manifest_is_the_same_when_loaded_and_when_rebuilt(data: TalkingFaceData) -> None:
    assert "built" in data.corpus.note
    again = TalkingFaceData(CONFIG)
    assert "reused" in again.corpus.note and again.manifest() == data.manifest()
    rebuilt = TalkingFaceData(CONFIG, reuse=False)  # synthesis and alignment are deterministic
    assert rebuilt.manifest() == data.manifest()
    first, second = data.split("train")[3], rebuilt.split("train")[3]
    assert all(torch.equal(first[k], second[k]) for k in ("target", "reference", "mel", "frame_mels"))


def test_window_shapes_and_masking(data: TalkingFaceData) -> None:
    item = data.split("train")[0]
    assert item["target"].shape == (5, 3, 24, 24) == item["reference"].shape == item["masked"].shape
    assert item["mel"].shape == (1, 80, 16) and item["frame_mels"].shape == (5, 1, 80, 16)
    assert item["shape"].shape == (5, 2)
    assert torch.all(item["masked"][..., 12:, :] == 0)
    assert torch.equal(item["masked"][..., :12, :], item["target"][..., :12, :])
    assert torch.equal(item["frame_mels"][2, 0], item["mel"][0])  # the middle frame's mel is the window's
    assert item["target"].min() >= 0 and item["target"].max() <= 1
    assert not torch.equal(item["target"], item["reference"])


def test_mouths_move_with_the_speech(data: TalkingFaceData) -> None:
    clip = data.clips[0]
    assert clip.shape[:, 0].max() > 0.6 and clip.shape[:, 0].min() < 0.1  # opens wide, closes
    frames = data.clip_frames(0).float()
    closed = frames[int(clip.shape[:, 0].argmin())]
    change = (frames - closed).abs()[:, :, 12:].mean(dim=(1, 2, 3))  # how far the lower face moved
    assert torch.corrcoef(torch.stack([change, torch.from_numpy(clip.shape[:, 0])]))[0, 1] > 0.8
    upper = (frames - closed).abs()[:, :, :8].mean(dim=(1, 2, 3))
    assert upper.max() < 0.5 * change.max()  # the upper face only drifts a little


def test_splits_are_disjoint_in_faces_and_sentences(data: TalkingFaceData) -> None:
    seen: dict[str, set] = {}
    for split in ("train", "val", "test"):
        clips = [data.clips[c] for c in sorted({c for c, _ in data.split(split).items})]
        faces = {data.faces[c.face].name for c in clips}
        sentences = {data.corpus.utterances[c.utterance].sentence for c in clips}
        assert all(sentence_split(s) == split for s in sentences)
        for other, (other_faces, other_sentences) in seen.items():
            assert not faces & other_faces and not sentences & other_sentences, (split, other)
        seen[split] = (faces, sentences)
    with pytest.raises(ConfigError):
        data.split("dev")
    with pytest.raises(ConfigError):
        TalkingConfig(size=25)
