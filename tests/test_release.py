"""Release wheels: built by poetry-core, they require kd-core by version range, never by path.

The fast tests build the kd-core and kd-vision wheels with pip and the dev venv's poetry-core (no network);
the slow one runs ``tools/release`` (poetry 2.5.1 in .venv-release) for every package.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ROOT / "packages"
RECIPE = "kd_vision/recipes/hinton-kd.yaml"

# "Requires-Dist: kd-core (>=0.1,<0.2)" (poetry-core's style) or "Requires-Dist: kd-core>=0.1,<0.2".
KD_CORE_RANGE = re.compile(
    r"^Requires-Dist: kd[-_]core\s*\(?\s*(?:~=|==|!=|<=|>=|<|>)\s*\d", re.MULTILINE | re.IGNORECASE
)


def build_wheel(package: str, out: Path) -> Path:
    """``pip wheel --no-deps --no-build-isolation`` one package; return its wheel."""
    pytest.importorskip("poetry.core", reason="poetry-core (the build backend) is not installed in this venv")
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
    command += ["--disable-pip-version-check", "-w", str(out), str(PACKAGES / package)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"pip wheel {package} failed:\n{result.stdout}\n{result.stderr}"
    wheels = sorted(out.glob(f"{package.replace('-', '_')}-*.whl"))
    assert len(wheels) == 1, f"expected one {package} wheel in {out}, found {wheels}"
    return wheels[0]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("wheels")
    return {package: build_wheel(package, out / package) for package in ("kd-core", "kd-vision")}


def dist_info_texts(wheel: Path) -> dict[str, str]:
    """Every text file of the wheel's ``.dist-info`` folder, by name."""
    with zipfile.ZipFile(wheel) as archive:
        return {name: archive.read(name).decode() for name in archive.namelist() if ".dist-info/" in name}


def metadata_text(wheel: Path) -> str:
    texts = dist_info_texts(wheel)
    [name] = [name for name in texts if name.endswith(".dist-info/METADATA")]
    return texts[name]


@pytest.mark.parametrize("package", ["kd-core", "kd-vision"])
def test_wheel_names_no_local_path(wheels: dict[str, Path], package: str) -> None:
    wheel = wheels[package]
    assert wheel.name.endswith("-py3-none-any.whl"), f"{wheel.name}: expected a pure-Python wheel"
    assert f"Name: {package}\n" in metadata_text(wheel)
    for name, text in dist_info_texts(wheel).items():
        assert "@ file:" not in text, f"{wheel.name}:{name} requires a local path:\n{text}"
        assert "file://" not in text, f"{wheel.name}:{name} names a file URL"
        assert str(ROOT) not in text, f"{wheel.name}:{name} names this machine's checkout {ROOT}"


def test_vision_wheel_requires_kd_core_by_range(wheels: dict[str, Path]) -> None:
    text = metadata_text(wheels["kd-vision"])
    requires = [line for line in text.splitlines() if line.lower().startswith("requires-dist: kd")]
    assert KD_CORE_RANGE.search(text), f"kd-vision's METADATA lacks 'Requires-Dist: kd-core <range>': {requires}"


def test_core_wheel_ships_no_domain_requirement(wheels: dict[str, Path]) -> None:
    text = metadata_text(wheels["kd-core"])
    kd = [line for line in text.splitlines() if re.match(r"Requires-Dist: kd[-_]", line, re.IGNORECASE)]
    assert not kd, f"kd-core requires other kd packages: {kd}"


def test_vision_wheel_ships_its_recipe(wheels: dict[str, Path]) -> None:
    if not (PACKAGES / "kd-vision" / "src" / RECIPE).is_file():
        pytest.skip(f"src/{RECIPE} does not exist yet")
    with zipfile.ZipFile(wheels["kd-vision"]) as archive:
        names = archive.namelist()
    assert RECIPE in names, f"{RECIPE} is not in the kd-vision wheel: {names}"


@pytest.mark.slow
def test_release_script_builds_one_wheel_per_package(tmp_path: Path) -> None:
    if shutil.which("bash") is None:
        pytest.skip("tools/release is a bash script")
    dist = tmp_path / "dist"
    result = subprocess.run(
        ["bash", str(ROOT / "tools" / "release"), "--dist", str(dist)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"tools/release failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    packages = sorted(path.parent.name for path in PACKAGES.glob("*/pyproject.toml"))
    assert sorted(path.name for path in dist.iterdir()) == packages
    for package in packages:
        wheels = sorted((dist / package).glob("*.whl"))
        assert len(wheels) == 1, f"dist/{package} holds {wheels}, expected one wheel"
        assert wheels[0].name.startswith(package.replace("-", "_") + "-")
        assert "@ file:" not in metadata_text(wheels[0])
        assert wheels[0].name in result.stdout, "tools/release should print the wheels it made"
