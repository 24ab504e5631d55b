"""Paired sets from offline photos: determinism, the cache and its manifest, shapes, splits and the input maps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from kd_core.errors import ConfigError, DataError
from kd_generative.data import PairedImages, build_pairs, list_sources
from kd_generative.data.maps import PALETTE, grey_map, input_channels
from kd_generative.data.pairs import split_groups

# three bundled scikit-image photos: one group each, so train, val and test get one photo apiece
SKIMAGE = ["skimage/chelsea", "skimage/coffee", "skimage/rocket"]


def _tiny(direction: str = "edges", size: int = 32, seed: int = 0, **options: Any) -> PairedImages:
    return build_pairs(direction, size, seed, crops=2, sources=SKIMAGE, **options)


def test_building_twice_gives_the_same_manifest_and_tensors_and_the_second_reads_the_cache(data_home: Path) -> None:
    first = _tiny()
    assert not first.from_cache and first.directory.parent == data_home / "pix2pix"
    second = _tiny()
    assert second.from_cache
    assert second.manifest == first.manifest
    for split in ("train", "val", "test"):
        assert torch.equal(second.splits[split].inputs, first.splits[split].inputs)
        assert torch.equal(second.splits[split].targets, first.splits[split].targets)
        assert second.splits[split].sources == first.splits[split].sources
    manifest = json.loads((first.directory / "manifest.json").read_text())
    assert set(manifest["files"]) == {"crops.json", *(f"{s}-{p}.npy" for s in ("train", "val", "test")
                                                       for p in ("inputs", "targets"))}
    rebuilt = _tiny(rebuild=True)  # made again from the photos: byte-identical files, so the same checksums
    assert not rebuilt.from_cache and rebuilt.manifest == first.manifest


def test_a_damaged_cache_is_rebuilt_to_the_same_files(data_home: Path) -> None:
    first = _tiny()
    target = first.directory / "train-inputs.npy"
    target.write_bytes(target.read_bytes()[:-7] + b"garbage")
    again = _tiny()
    assert not again.from_cache and again.manifest == first.manifest


def test_another_seed_cuts_other_crops_of_the_same_photos(data_home: Path) -> None:
    zero, one = _tiny(seed=0), _tiny(seed=1)
    assert zero.directory != one.directory
    assert zero.train.sources == one.train.sources
    assert not torch.equal(zero.train.targets, one.train.targets)


@pytest.mark.parametrize("direction", ["edges", "grey", "mask"])
@pytest.mark.parametrize("size", [32, 64, 128])
def test_shapes_and_range_of_every_direction_and_size(data_home: Path, direction: str, size: int) -> None:
    pairs = build_pairs(direction, size, 0, crops=1, sources=SKIMAGE, multiple=16)
    channels = input_channels(direction)
    assert pairs.in_channels == channels == (3 if direction == "mask" else 1)
    for split in pairs.splits.values():
        assert len(split) == 1  # one photo per split, one crop each
        assert split.inputs.shape == (1, channels, size, size) and split.targets.shape == (1, 3, size, size)
        for tensor in (split.inputs, split.targets):
            assert tensor.dtype == torch.float32 and tensor.min() >= -1.0 and tensor.max() <= 1.0
        item = split[0]
        assert item["input"].shape == (channels, size, size) and item["target"].shape == (3, size, size)


def test_uint8_pairs_hold_the_raw_pixels(data_home: Path) -> None:
    raw, scaled = _tiny("grey", dtype="uint8"), _tiny("grey")
    assert raw.train.targets.dtype == torch.uint8
    assert torch.allclose(raw.train.targets.float() / 127.5 - 1.0, scaled.train.targets)


def test_edges_are_binary_and_neither_empty_nor_everywhere(data_home: Path) -> None:
    pairs = build_pairs("edges", 64, 0, crops=4, sources=SKIMAGE)
    inputs = torch.cat([s.inputs for s in pairs.splits.values()])
    assert set(inputs.unique().tolist()) == {-1.0, 1.0}
    fraction = (inputs > 0).float().mean().item()
    assert 0.01 < fraction < 0.4, fraction


def test_grey_inputs_are_the_luminance_of_the_targets(data_home: Path) -> None:
    pairs = _tiny("grey", dtype="uint8")
    targets = pairs.train.targets.permute(0, 2, 3, 1).numpy()
    assert np.array_equal(pairs.train.inputs[:, 0].numpy(), np.stack([grey_map(t) for t in targets]))


def test_masks_are_painted_in_palette_colours_only(data_home: Path) -> None:
    pairs = build_pairs("mask", 64, 0, crops=2, sources=SKIMAGE, dtype="uint8")
    colours = {tuple(c) for c in pairs.train.inputs.permute(0, 2, 3, 1).reshape(-1, 3).tolist()}
    palette = {tuple(c) for c in PALETTE.tolist()}
    assert colours <= palette and len(colours) >= 2


def test_split_groups_is_deterministic_and_keeps_fractions() -> None:
    groups = {f"g{i:02d}": "a" for i in range(20)} | {"x": "b", "y": "b", "z": "b"} | {"lone": "c"}
    splits = split_groups(groups, 0.15, 0.15, split_seed=0)
    assert splits == split_groups(groups, 0.15, 0.15, split_seed=0)
    assert splits != split_groups(groups, 0.15, 0.15, split_seed=1)
    count = {s: sum(splits[g] == s for g in groups if groups[g] == "a") for s in ("train", "val", "test")}
    assert count == {"train": 14, "val": 3, "test": 3}
    assert sorted(splits[g] for g in "xyz") == ["test", "train", "val"]  # three groups: one per split
    assert splits["lone"] == "train"


def test_splits_share_no_photo_and_no_video_segment(data_home: Path, opencv_doc: Path) -> None:
    sources = [*SKIMAGE, "opencv/aloeL.jpg", "opencv/aloeR.jpg", "opencv/fruits.jpg", "opencv/baboon.jpg",
               "opencv/tree.avi"]
    pairs = build_pairs("grey", 32, 0, crops=1, sources=sources, frame_step=8)
    group_of = {s.name: s.group for s in list_sources(sources, frame_step=8)}
    groups = {name: {group_of[s] for s in split.sources} for name, split in pairs.splits.items()}
    assert all(groups.values())
    assert not groups["train"] & groups["val"] and not groups["train"] & groups["test"]
    assert not groups["val"] & groups["test"]
    frames = {name: {s for s in split.sources if "tree.avi" in s} for name, split in pairs.splits.items()}
    assert all(frames.values())  # tree.avi's four segments reach every split
    views = {"opencv/aloeL.jpg", "opencv/aloeR.jpg"}
    aloe = [name for name, split in pairs.splits.items() if views & set(split.sources)]
    assert len(aloe) == 1  # the two views of one scene stay together
    assert pairs.manifest["key"]["splits"]["opencv/aloe"] == aloe[0]


def test_the_default_catalogue(opencv_doc: Path) -> None:
    sources = list_sources()
    by_collection = {c: [s for s in sources if s.collection == c] for c in dict.fromkeys(s.collection for s in sources)}
    assert {c: len(s) for c, s in by_collection.items()} == {
        "skimage": 7, "opencv": 29, "opencv/vtest.avi": 32, "opencv/tree.avi": 17}
    assert [s.frame for s in by_collection["opencv/vtest.avi"]][:3] == [0, 25, 50]
    assert len({s.group for s in by_collection["opencv/vtest.avi"]}) == 8
    assert not any("Megamind" in s.name for s in sources)
    assert len({s.name for s in sources}) == len(sources)


def test_bad_options_name_the_argument(data_home: Path) -> None:
    with pytest.raises(ConfigError, match="direction: expected one of edges, grey, mask, received 'depth'"):
        build_pairs("depth", 32)
    with pytest.raises(ConfigError, match=r"size: expected a multiple of 16 .*received 40"):
        build_pairs("edges", 40, multiple=16)
    with pytest.raises(ConfigError, match=r"sources: .*received \['skimage/brain'\]"):
        build_pairs("edges", 32, sources=["skimage/brain"])
    with pytest.raises(ConfigError, match="dtype"):
        build_pairs("edges", 32, sources=SKIMAGE, dtype="float16")


def test_a_missing_opencv_folder_is_a_data_error(data_home: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"opencv_dir: expected a folder holding opencv-doc.*apt-get install"):
        build_pairs("edges", 32, sources=["opencv/fruits.jpg"], opencv_dir=tmp_path / "nowhere")
