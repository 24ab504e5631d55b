"""Named plugins through entry points: found and imported by name, and a missing or broken one is a ConfigError
that names the group, the name and the package to install (entry points faked, so no package is needed)."""

from __future__ import annotations

import math
from importlib import metadata

import pytest
from kd_core import plugins, unet_pruning
from kd_core.errors import ConfigError
from kd_core.plugins import PluginError, has_plugin, load_plugin, load_plugins, plugin_names

GROUP = "kd.test_plugins"


@pytest.fixture
def fake_entry_points(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[metadata.EntryPoint]]:
    """``importlib.metadata.entry_points`` answering from a dict of group -> entry points (empty by default)."""
    groups: dict[str, list[metadata.EntryPoint]] = {}

    def entry_points(*, group: str) -> list[metadata.EntryPoint]:
        return list(groups.get(group, []))

    monkeypatch.setattr(metadata, "entry_points", entry_points)
    return groups


def _entry(name: str, value: str, group: str = GROUP) -> metadata.EntryPoint:
    return metadata.EntryPoint(name=name, value=value, group=group)


def test_a_published_plugin_loads_by_name(fake_entry_points: dict[str, list[metadata.EntryPoint]]) -> None:
    fake_entry_points[GROUP] = [_entry("root", "math:sqrt"), _entry("floor", "math:floor"),
                                _entry("root", "math:exp")]  # a second package's same name: the first one wins
    assert plugin_names(GROUP) == ["floor", "root"]
    assert has_plugin(GROUP, "root") and not has_plugin(GROUP, "cube")
    assert load_plugin(GROUP, "root") is math.sqrt
    assert load_plugins(GROUP, ["floor", "root"]) == {"floor": math.floor, "root": math.sqrt}


def test_a_missing_plugin_names_group_name_and_provider(fake_entry_points: dict[str, list[metadata.EntryPoint]]
                                                        ) -> None:
    fake_entry_points[GROUP] = [_entry("root", "math:sqrt")]
    with pytest.raises(PluginError) as info:
        load_plugin(GROUP, "cube", provider="kd-edge", argument="arms")
    error = info.value
    assert isinstance(error, ConfigError) and error.argument == "arms"
    message = str(error)
    assert "'cube'" in message and GROUP in message and "pip install kd-edge" in message and "root" in message
    with pytest.raises(PluginError, match="none installed"):
        load_plugin("kd.empty_group", "cube")


def test_a_plugin_that_fails_to_import_is_one_line(fake_entry_points: dict[str, list[metadata.EntryPoint]]) -> None:
    fake_entry_points[GROUP] = [_entry("broken", "kd_no_such_module_xyz:run")]
    with pytest.raises(PluginError) as info:
        load_plugin(GROUP, "broken", provider="kd-edge")
    assert "ModuleNotFoundError" in str(info.value) and "kd_no_such_module_xyz" in str(info.value)
    assert "\n" not in str(info.value)


def test_a_bad_group_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        plugins.plugin_names("")
    assert info.value.argument == "group"


def test_the_unet_pruning_group_and_its_names(fake_entry_points: dict[str, list[metadata.EntryPoint]]) -> None:
    assert unet_pruning.GROUP == "kd.unet_pruning"
    assert unet_pruning.NAMES == ("sensitivity", "inner", "cut", "global")
    fake_entry_points[unet_pruning.GROUP] = [_entry("inner", "math:sqrt", unet_pruning.GROUP)]
    assert unet_pruning.unet_pruning(["inner"]) == {"inner": math.sqrt}
    with pytest.raises(PluginError) as info:  # kd-edge "not installed": cut is missing
        unet_pruning.unet_pruning(["inner", "cut"], argument="arms")
    assert "'cut'" in str(info.value) and "kd.unet_pruning" in str(info.value) and "pip install kd-edge" in str(
        info.value)
    with pytest.raises(ConfigError) as unknown:
        unet_pruning.unet_pruning(["prune-everything"])
    assert unknown.value.argument == "names"
