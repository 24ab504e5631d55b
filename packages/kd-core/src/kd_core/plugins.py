"""Named plugins that installed packages publish under an entry-point group (``importlib.metadata``).

A domain package that needs a tool another domain package provides must not import it (kd-generative never
imports kd-edge). The provider publishes the tool's functions under a group in its ``pyproject.toml``::

    [project.entry-points."kd.unet_pruning"]
    inner = "kd_edge.prune.unet_cut:prune_inner_layers"

and the consumer loads them by name, saying which package provides them::

    prune = load_plugin("kd.unet_pruning", "inner", provider="kd-edge")

A group without that name is a ``PluginError`` (a ``ConfigError``) naming the group, the name and the package to
install; a plugin that fails to import is one too, with the import error. What a group's plugins must accept and
return is the group's own protocol (e.g. ``kd_core.unet_pruning``).
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import metadata
from typing import Any

from kd_core.errors import ConfigError

__all__ = ["PluginError", "has_plugin", "load_plugin", "load_plugins", "plugin_names"]


class PluginError(ConfigError):
    """A named plugin is not installed, or its entry point does not import."""


def _entries(group: str) -> dict[str, metadata.EntryPoint]:
    """Name -> entry point of ``group`` (the first distribution's when two publish one name)."""
    if not isinstance(group, str) or not group:
        raise ConfigError("group", "an entry-point group name such as 'kd.unet_pruning'", group)
    found: dict[str, metadata.EntryPoint] = {}
    for entry in metadata.entry_points(group=group):
        found.setdefault(entry.name, entry)
    return found


def plugin_names(group: str) -> list[str]:
    """The names installed packages publish under ``group``, sorted."""
    return sorted(_entries(group))


def has_plugin(group: str, name: str) -> bool:
    """Whether an installed package publishes ``name`` under ``group`` (nothing is imported)."""
    return name in _entries(group)


def _install_hint(provider: str) -> str:
    return f"pip install {provider} (it provides this plugin)" if provider else \
        "install the package that provides this plugin"


def load_plugin(group: str, name: str, *, provider: str = "", argument: str = "plugin") -> Any:
    """The object the entry point ``name`` of ``group`` names, imported now.

    ``provider``: the distribution that publishes it (for the error's hint); ``argument``: what the error names
    as the setting at fault (e.g. the recipe field that asked for the plugin)."""
    entries = _entries(group)
    entry = entries.get(name)
    if entry is None:
        installed = sorted(entries) or "none installed"
        raise PluginError(argument, f"the plugin {name!r} of the entry-point group {group!r}",
                          f"not installed (installed: {installed})", hint=_install_hint(provider))
    try:
        return entry.load()
    except Exception as err:  # a broken provider is one line, not a traceback from deep inside it
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PluginError(argument, f"an importable plugin {name!r} of the entry-point group {group!r}",
                          f"{entry.value}: {type(err).__name__}: {message}", hint=_install_hint(provider)) from None


def load_plugins(group: str, names: Iterable[str], *, provider: str = "", argument: str = "plugin"
                 ) -> dict[str, Any]:
    """``{name: load_plugin(group, name)}`` for every name, in order; the first missing one is the error."""
    return {name: load_plugin(group, name, provider=provider, argument=argument) for name in names}
