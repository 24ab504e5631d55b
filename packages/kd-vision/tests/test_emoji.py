"""The emoji colour set: parsing emoji-test.txt, rendering, the verified cache, augmentation and the splits."""

from __future__ import annotations

import os
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from kd_core.errors import ConfigError, DataError
from kd_vision.data import emoji
from kd_vision.data.emoji import EMOJI_FONT, EMOJI_TEST, load_emoji, make_emoji_splits, parse_emoji_test

# Emoji 15.0 as Debian's unicode-data package ships it (its emoji-test.txt; counts per group).
GROUPS = {"Smileys & Emotion": 166, "People & Body": 2148, "Animals & Nature": 152, "Food & Drink": 133,
          "Travel & Places": 218, "Activities": 85, "Objects": 261, "Symbols": 223, "Flags": 269}
# a small selection over three groups: 14 + 9 + 19 + 8 = 50 emoji, rendered in a fraction of a second
FEW = ["face-smiling", "face-affection", "food-fruit", "flag"]


@pytest.fixture(autouse=True)
def needs_emoji_files() -> None:
    """Skip without the Debian packages, except on CI where a missing package must fail the test."""
    missing = [p for p in (EMOJI_TEST, EMOJI_FONT) if not p.is_file()]
    if missing and os.environ.get("CI") != "true":
        pytest.skip(f"apt-get install fonts-noto-color-emoji unicode-data (missing {missing})")



def _fail_to_render(*args: object, **kwargs: object) -> None:
    raise AssertionError("rendered although a verified cache exists")


def test_parse_counts_the_nine_groups_of_the_real_file() -> None:
    entries = parse_emoji_test()
    assert len(entries) == 3655
    assert Counter(e.group for e in entries) == GROUPS
    assert list(dict.fromkeys(e.group for e in entries)) == list(GROUPS)  # file order
    assert len({e.subgroup for e in entries}) == 99
    first = entries[0]
    assert (first.codepoints, first.group, first.subgroup, first.name) == (
        (0x1F600,), "Smileys & Emotion", "face-smiling", "grinning face")
    thumbs = next(e for e in entries if e.name == "thumbs up: medium skin tone")
    assert thumbs.code == "1F44D 1F3FD" and thumbs.has_skin_tone and thumbs.text == "\U0001F44D\U0001F3FD"
    assert not next(e for e in entries if e.name == "thumbs up").has_skin_tone
    assert sum(not e.has_skin_tone for e in entries) == 1870
    # minimally-qualified and unqualified lines are left out: "smiling face" appears once, with FE0F
    assert [e.code for e in entries if e.name == "smiling face"] == ["263A FE0F"]


def test_a_render_is_coloured_not_blank_and_bitwise_deterministic() -> None:
    font = emoji._load_font(EMOJI_FONT)
    apple = emoji.render_emoji("\U0001F34E", font)  # red apple
    again = emoji.render_emoji("\U0001F34E", emoji._load_font(EMOJI_FONT))
    assert apple.shape == (32, 32, 3) and apple.dtype == np.uint8
    assert np.array_equal(apple, again)
    assert (apple < 200).any(axis=-1).mean() > 0.3  # a third of the pixels are not background
    centre = apple[10:22, 10:22].reshape(-1, 3).astype(int).mean(0)
    assert centre[0] > centre[1] + 60 and centre[0] > centre[2] + 60  # red, so colour glyphs are drawn
    blue = emoji.render_emoji("\U0001F7E6", font)[12:20, 12:20].reshape(-1, 3).astype(int).mean(0)
    assert blue[2] > blue[0] + 60  # blue square
    flag = emoji.render_emoji("\U0001F1FA\U0001F1F8", font)  # a flag is one shaped glyph, not two letters
    assert not np.array_equal(flag, emoji.render_emoji("\U0001F1FA", font))


def test_load_labels_groups_or_subgroups_and_drops_skin_tones(data_home: Path) -> None:
    by_subgroup = load_emoji("subgroup", subgroups=FEW)
    assert by_subgroup.class_names == FEW and np.bincount(by_subgroup.labels).tolist() == [14, 9, 19, 8]
    assert by_subgroup.images.shape == (50, 32, 32, 3)
    assert (by_subgroup.images.reshape(50, -1).min(1) < 250).all()  # none blank (the white flag is pale)
    by_group = load_emoji("group", subgroups=FEW)
    assert by_group.class_names == ["Smileys & Emotion", "Food & Drink", "Flags"]
    assert np.array_equal(by_group.images, by_subgroup.images)  # one rendering, two labellings
    hands = load_emoji(subgroups=["hand-fingers-open"], skin_tones=False)
    assert len(hands.entries) == 11 and not any(e.has_skin_tone for e in hands.entries)
    assert len(load_emoji(subgroups=["hand-fingers-open"]).entries) == 66
    assert len(load_emoji(subgroups=FEW, min_per_class=10).entries) == 33  # face-affection, flag dropped
    assert [e.name for e in load_emoji(limit=3).entries] == [
        "grinning face", "grinning face with big eyes", "grinning face with smiling eyes"]


def test_the_cache_is_reused_without_rendering(data_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_emoji(subgroups=["face-affection"])
    caches = list((data_home / "emoji").glob("noto-32px-*/manifest.json"))
    assert len(caches) == 1 and (caches[0].parent / "images.npy").is_file()
    monkeypatch.setattr(emoji, "_renderer", _fail_to_render)
    second = load_emoji(subgroups=["face-affection"])
    assert np.array_equal(first.images, second.images)
    assert [e.code for e in first.entries] == [e.code for e in second.entries]
    # with a verified cache, the font is not needed any more
    assert np.array_equal(load_emoji(subgroups=["face-affection"], font_path=data_home / "gone.ttf").images,
                          first.images)


def test_a_subset_is_cut_from_the_cache_of_every_emoji(data_home: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    lines = EMOJI_TEST.read_text(encoding="utf-8").splitlines()
    start = lines.index("# subgroup: face-affection")
    small = tmp_path / "emoji-test.txt"  # a real excerpt: one group, two subgroups
    excerpt = ["# group: Smileys & Emotion", *lines[start - 16:start + 12]]  # with one unqualified line
    small.write_text("\n".join(excerpt) + "\n", encoding="utf-8")
    every = load_emoji(emoji_test=small)
    assert every.class_names == ["face-smiling", "face-affection"] and len(every.entries) == 14 + 9
    monkeypatch.setattr(emoji, "_renderer", _fail_to_render)
    part = load_emoji(emoji_test=small, subgroups=["face-affection"])
    assert np.array_equal(part.images, every.images[14:])


def test_a_corrupted_cache_is_detected_and_rendered_again(data_home: Path) -> None:
    first = load_emoji(subgroups=["flag"])
    images = next((data_home / "emoji").glob("noto-32px-*/images.npy"))
    data = bytearray(images.read_bytes())
    data[-100] ^= 0xFF
    images.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="images.npy does not match its sha256"):
        again = load_emoji(subgroups=["flag"])
    assert np.array_equal(again.images, first.images)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rebuilt, so the next load is quiet
        load_emoji(subgroups=["flag"])


def test_splits_are_disjoint_stratified_and_deterministic(data_home: Path) -> None:
    splits = make_emoji_splits("subgroup", subgroups=FEW, val_fraction=0.2, test_fraction=0.2, seed=3)
    chosen = {name: set(split.indices.tolist()) for name, split in splits.items()}
    assert not (chosen["train"] & chosen["val"]) and not (chosen["train"] & chosen["test"])
    assert not (chosen["val"] & chosen["test"])
    assert set().union(*chosen.values()) == set(range(50))
    # per class of 14, 9, 19, 8 emoji: round(0.2 n) to test and to val, the rest to train
    counts = {name: np.bincount(split.targets, minlength=4).tolist() for name, split in splits.items()}
    assert counts == {"test": [3, 2, 4, 2], "val": [3, 2, 4, 2], "train": [8, 5, 11, 4]}
    again = make_emoji_splits("subgroup", subgroups=FEW, val_fraction=0.2, test_fraction=0.2, seed=3)
    assert all(np.array_equal(splits[s].indices, again[s].indices) for s in splits)
    other = make_emoji_splits("subgroup", subgroups=FEW, val_fraction=0.2, test_fraction=0.2, seed=4)
    assert not np.array_equal(np.sort(splits["test"].indices), np.sort(other["test"].indices))
    item = splits["train"][0]
    assert item["input"].shape == (3, 32, 32) and item["input"].dtype == torch.float32
    assert item["label"].dtype == torch.int64 and int(item["label"]) == splits["train"].targets[0]
    pixels = item["input"] * torch.tensor(emoji.EMOJI_STD).view(3, 1, 1) + torch.tensor(emoji.EMOJI_MEAN).view(3, 1, 1)
    expected = splits["train"].data.images[splits["train"].indices[0]]
    assert torch.allclose(pixels.permute(1, 2, 0) * 255, torch.tensor(expected, dtype=torch.float32), atol=1e-3)


def test_a_class_of_one_stays_in_train(data_home: Path) -> None:
    splits = make_emoji_splits("subgroup", limit=15)  # face-smiling (14) and one face-affection emoji
    assert np.bincount(splits["train"].targets).tolist()[1] == 1
    assert 1 not in splits["val"].targets and 1 not in splits["test"].targets


def test_variants_are_augmented_deterministically(data_home: Path) -> None:
    splits = make_emoji_splits("group", subgroups=FEW, variants=4, seed=0)
    train = splits["train"]
    assert len(train) == 4 * len(train.indices)
    assert np.array_equal(train.targets, np.repeat(train.data.labels[train.indices], 4))
    base = train.image(0)
    assert np.array_equal(base, train.data.images[train.indices[0]])  # variant 0 is the rendering
    variants = [train.image(k) for k in range(1, 4)]
    for k, image in enumerate(variants, start=1):
        difference = np.abs(image.astype(int) - base.astype(int)).mean()
        assert 1.0 < difference < 60.0, (k, difference)  # changed, but still the same picture
        assert (image < 128).any()
    assert not np.array_equal(variants[0], variants[1])
    rebuilt = make_emoji_splits("group", subgroups=FEW, variants=4, seed=0)["train"]
    assert all(np.array_equal(rebuilt.image(k), variants[k - 1]) for k in range(1, 4))
    assert not np.array_equal(make_emoji_splits("group", subgroups=FEW, variants=4, seed=1)["train"].image(1),
                              variants[0])


def test_missing_files_name_the_debian_package(data_home: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        load_emoji(subgroups=["flag"], font_path=tmp_path / "NotoColorEmoji.ttf")
    assert caught.value.argument == "font_path" and "apt-get install fonts-noto-color-emoji" in str(caught.value)
    with pytest.raises(DataError) as caught:
        load_emoji(emoji_test=tmp_path / "emoji-test.txt")
    assert "apt-get install unicode-data" in str(caught.value)


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"classes": "groups"}, "classes"), ({"subgroups": ["no-such-subgroup"]}, "subgroups"),
    ({"subgroups": "flag"}, "subgroups"), ({"limit": 0}, "limit"), ({"val_fraction": 1.2}, "val_fraction"),
    ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction + test_fraction"), ({"variants": 0}, "variants"),
])
def test_bad_options_name_the_argument(kwargs: dict[str, object], argument: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_emoji_splits(**kwargs)  # type: ignore[arg-type]
    assert caught.value.argument == argument
