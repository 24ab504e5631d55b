"""The phone -> viseme table drives the mouth track, and the renderer opens the mouth with openness (no
external tools needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from kd_core.errors import ConfigError
from kd_generative.talking.align import Phone
from kd_generative.talking.faces import face_split, load_faces
from kd_generative.talking.render import render_mouths
from kd_generative.talking.visemes import PHONE_VISEME, VISEMES, mouth_track, viseme_of


def test_every_arpabet_phone_has_a_viseme_and_the_classes_are_ordered() -> None:
    arpabet = {"AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH",
               "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V",
               "W", "Y", "Z", "ZH", "SIL"}
    assert arpabet == set(PHONE_VISEME)
    assert viseme_of("M").openness == 0.0 == viseme_of("B").openness  # bilabials close
    assert viseme_of("AA1").openness > viseme_of("EH").openness > viseme_of("IY").openness > viseme_of("F").openness
    assert viseme_of("UW").width < 1.0 < viseme_of("IY").width  # rounded narrow, spread wide
    assert viseme_of("+NSN+") == VISEMES["rest"]


def test_mouth_openness_follows_the_table_on_a_constructed_phone_sequence() -> None:
    names = ["SIL", "M", "AA", "P", "UW", "IY", "SIL"]
    phones = [Phone(n, 0.2 * i, 0.2 * (i + 1)) for i, n in enumerate(names)]  # 5 frames each at 25 fps
    track = mouth_track(phones, 35, fps=25.0, smooth=0.25)
    assert track.shape == (35, 2) and track.dtype == np.float32
    for i, name in enumerate(names):
        middle = track[5 * i + 2]  # away from the edges, smoothing changes nothing
        assert middle == pytest.approx([viseme_of(name).openness, viseme_of(name).width], abs=1e-6)
    # a frame straddling two phones mixes them by time
    half = mouth_track([Phone("M", 0.0, 0.02), Phone("AA", 0.02, 0.04)], 1, smooth=0.0)[0, 0]
    assert half == pytest.approx(0.5 * viseme_of("AA").openness)
    with pytest.raises(ConfigError):
        mouth_track(phones, 5, smooth=0.6)


def test_rendered_mouth_darkens_with_openness_and_leaves_the_upper_face() -> None:
    face = load_faces(48, ["lfw/05"])[0]
    image = torch.from_numpy(face.image).permute(2, 0, 1).float().div(255)
    shapes = torch.tensor([[0.0, 1.0], [0.1, 1.0], [0.2, 1.0], [0.3, 1.0], [0.95, 1.0]])
    out = render_mouths(image.expand(5, -1, -1, -1), torch.tensor(face.mouth).expand(5, 3), shapes)
    cy, cx = int(face.mouth[0] * 48), int(face.mouth[1] * 48)
    mouth = out[:, :, cy:cy + 6, cx - 4:cx + 4].mean(dim=(1, 2, 3))
    assert torch.all(mouth[1:4] < mouth[:3])  # wider open, darker inside (teeth show from 0.3 up)
    assert mouth[4] < mouth[0] - 0.05
    assert torch.allclose(out[:, :, :16], image[:, :16].expand(5, -1, -1, -1), atol=1e-4)  # eyes untouched


def test_faces_are_split_by_identity() -> None:
    splits = {face_split(f"lfw/{i:02d}") for i in range(100)}
    assert splits == {"train", "val", "test"} and face_split("skimage/astronaut") == "test"
    with pytest.raises(ConfigError):
        load_faces(48, ["lfw/100"])
