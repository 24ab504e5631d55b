"""kd_core.datacache: files are trusted only through a manifest whose key and checksums match."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from kd_core import datacache
from kd_core.errors import ConfigError

KEY = {"format": 1, "sources": {"a.txt": "0" * 64}, "options": [1, 2]}


def test_round_trip_and_manifest(tmp_path: Path) -> None:
    files = {"table.json": b'{"x": 1}', "arr.bin": bytes(range(10))}
    manifest_path = datacache.store(tmp_path / "c", KEY, files)
    assert datacache.load(tmp_path / "c", KEY) == files
    manifest = json.loads(manifest_path.read_text())
    assert manifest["files"]["arr.bin"] == {"sha256": hashlib.sha256(bytes(range(10))).hexdigest(), "bytes": 10}
    assert manifest["key"] == KEY


def test_other_key_corruption_and_absence_give_none(tmp_path: Path) -> None:
    assert datacache.load(tmp_path / "missing", KEY) is None
    datacache.store(tmp_path, KEY, {"t.json": b"[1, 2, 3]"})
    assert datacache.load(tmp_path, {**KEY, "format": 2}) is None
    (tmp_path / "t.json").write_bytes(b"[1, 2, 4]")  # one byte changed: the checksum no longer matches
    assert datacache.load(tmp_path, KEY) is None
    (tmp_path / "t.json").unlink()
    assert datacache.load(tmp_path, KEY) is None
    (tmp_path / datacache.MANIFEST).write_text("not json")
    assert datacache.load(tmp_path, KEY) is None


def test_restore_replaces_and_rejects_bad_names(tmp_path: Path) -> None:
    datacache.store(tmp_path, KEY, {"t.json": b"old"})
    datacache.store(tmp_path, {"format": 9}, {"t.json": b"new"})
    assert datacache.load(tmp_path, KEY) is None
    assert datacache.load(tmp_path, {"format": 9}) == {"t.json": b"new"}
    for name in ("../x", ".hidden", datacache.MANIFEST, ""):
        with pytest.raises(ConfigError, match="files"):
            datacache.store(tmp_path, KEY, {name: b""})
    with pytest.raises(ConfigError, match="files"):
        datacache.store(tmp_path, KEY, {})


def test_data_home_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path))
    assert datacache.data_home() == tmp_path
    monkeypatch.delenv("KD_DATA_HOME")
    assert datacache.data_home() == Path.home() / ".cache" / "kd"
