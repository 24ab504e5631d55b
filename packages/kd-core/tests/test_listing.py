"""``kd list``, ``kd recipes`` and ``kd-<domain> recipes`` list from metadata and recipe folders, importing no torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from kd_core.recipes import _installed_methods, recipe_index, recipe_summary

pytest.importorskip("kd_vision")

# Runs a CLI's main in-process (argv from the command line), then says whether torch or a method module was imported.
_PROBE = """
import importlib, sys
module, func, *argv = sys.argv[1:]
status = getattr(importlib.import_module(module), func)(argv)
loaded = sorted(m for m in sys.modules if m == "torch" or ".methods" in m)
print("LOADED=" + ",".join(loaded))
raise SystemExit(status)
"""


def _run(module: str, func: str, *argv: str) -> tuple[str, list[str]]:
    done = subprocess.run([sys.executable, "-c", _PROBE, module, func, *argv], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    loaded = lines[-1].removeprefix("LOADED=")
    return "\n".join(lines[:-1]), [m for m in loaded.split(",") if m]


def _shipped() -> dict[tuple[str, str], Path]:
    """(domain, recipe) for every recipe the installed methods ship, as the imported Method objects say."""
    return {(m.domain, path.stem): path for m in _installed_methods() if m.recipes is not None
            for path in Path(m.recipes).glob("*.yaml")}


def test_kd_recipes_imports_no_torch_and_names_every_recipe_with_its_domain() -> None:
    out, loaded = _run("kd_core.cli", "main", "recipes")
    assert loaded == []
    rows = {(line.split()[1], line.split()[0]) for line in out.splitlines() if "method=" in line}
    shipped = _shipped()
    assert rows == set(shipped)
    assert ("vision", "hinton-kd") in rows and ("nlu", "dcs") in rows


def test_kd_list_imports_no_torch_and_names_every_recipe() -> None:
    out, loaded = _run("kd_core.cli", "main", "list")
    assert loaded == []
    listed = {}
    for line in out.splitlines():
        head, _, names = line.partition(": ")
        listed[head.split()[0].removeprefix("kd-")] = set(names.split(", ")) - {"(no recipes)"}
    for domain, name in _shipped():
        assert name in listed[domain]


def test_domain_recipes_imports_no_torch() -> None:
    out, loaded = _run("kd_vision.cli", "main", "recipes")
    assert loaded == []
    assert "hinton-kd" in out and " nlu " not in out


def test_every_shipped_recipe_has_a_one_line_summary_and_its_method() -> None:
    index = recipe_index()
    assert index
    for info in index:
        assert info.summary and not info.summary.startswith(("S1", "S2")), info.path
        assert len(info.summary) < 200, info.path
        assert info.method == info.name, info.path  # every shipped recipe is named after its method


def test_summary_is_the_first_comment_line_only(tmp_path: Path) -> None:
    commented = tmp_path / "a.yaml"
    commented.write_text("# A short summary\n# more detail\nmethod: x\n")
    plain = tmp_path / "b.yaml"
    plain.write_text("method: x  # not a summary\n")
    assert recipe_summary(commented) == "A short summary"
    assert recipe_summary(plain) == ""
    assert recipe_summary(tmp_path / "missing.yaml") == ""
