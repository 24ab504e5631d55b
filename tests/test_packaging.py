"""Packaging rules of the layout (docs/architecture.md), checked on every ``packages/*/pyproject.toml``
(fast; runs in CI).

- PEP 621 ``[project]`` named after its folder, with a version, ``requires-python = ">=3.11"`` and the
  poetry-core build backend.
- Requirements by name and version range, never by path or URL (a path writes a machine path into the
  wheel). Every domain package requires kd-core.
- Each domain stays inside its allow-list (kd-vision does not pull transformers, ...), declares the
  libraries it needs, a ``kd-<domain>`` script and a ``kd.cli`` entry point.
- Domain packages never import one another; kd-core imports no domain package.
- The installed metadata (``pip install -e``) agrees with the pyproject files.
"""

from __future__ import annotations

import ast
import fnmatch
import re
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

try:
    from packaging.requirements import InvalidRequirement, Requirement
except ImportError:  # pragma: no cover - packaging ships with pip/pytest, but stay usable without it
    Requirement = None  # type: ignore[assignment,misc]
    InvalidRequirement = ValueError  # type: ignore[assignment,misc]

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ROOT / "packages"
CORE = "kd-core"

# Every package the layout names; each domain package maps to its domain name.
DOMAINS = {
    "kd-vision": "vision",
    "kd-nlu": "nlu",
    "kd-speech": "speech",
    "kd-generative": "generative",
    "kd-edge": "edge",
}

# Distributions a package must not require (fnmatch patterns over normalized names).
FORBIDDEN = {
    CORE: ["torchvision", "torchaudio", "transformers", "diffusers", "onnx", "onnxruntime", "onnxscript", "mlxtend"],
    "kd-vision": ["diffusers", "transformers", "torchaudio"],
    "kd-nlu": ["diffusers", "torchaudio", "torchvision", "onnx*"],
    "kd-speech": ["diffusers", "onnx*", "torchvision"],
    "kd-generative": ["transformers", "onnx*"],  # torchaudio: the talking-face mel spectrograms
    "kd-edge": ["diffusers", "transformers", "torchaudio", "torchvision"],
}

# Distributions a domain package must require.
REQUIRED = {
    "kd-vision": ["torchvision"],
    "kd-nlu": ["transformers"],
    "kd-speech": ["torchaudio", "soundfile", "transformers"],
    "kd-generative": ["diffusers", "torchvision"],
    "kd-edge": ["onnx", "onnxruntime", "onnxscript"],
}

_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")


def normalize(name: str) -> str:
    """PEP 503 normalized distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def module_name(package: str) -> str:
    """``kd-vision`` -> ``kd_vision``."""
    return package.replace("-", "_")


@dataclass(frozen=True)
class Req:
    """A parsed requirement: its normalized name, specifier text, marker text and any URL."""

    text: str
    name: str
    specifier: str
    marker: str
    url: str | None


def parse_requirement(text: str) -> Req:
    """Parse with ``packaging`` when available, else with a regex good enough for these checks."""
    if Requirement is not None:
        req = Requirement(text)
        return Req(text, normalize(req.name), str(req.specifier), str(req.marker or ""), req.url)
    match = _NAME.match(text)
    if match is None:
        raise InvalidRequirement(text)
    rest = text[match.end() :]
    rest = re.sub(r"^\s*\[[^\]]*\]", "", rest)  # extras
    spec, _, marker = rest.partition(";")
    url = spec.split("@", 1)[1].strip() if "@" in spec else None
    spec = spec.strip().strip("()").replace(" ", "")
    return Req(text, normalize(match.group(1)), "" if url else spec, marker.strip(), url)


def looks_like_path_or_url(text: str) -> bool:
    """A direct reference (``name @ url``), a URL or a local path instead of ``name<specifier>``."""
    head = text.split(";", 1)[0].strip()
    return "@" in head or "://" in head or head.startswith((".", "/", "~", "file:")) or "/" in head or "\\" in head


def load_pyprojects() -> dict[str, dict[str, Any]]:
    """Folder name -> parsed pyproject.toml, for every package under packages/."""
    return {path.parent.name: tomllib.loads(path.read_text()) for path in sorted(PACKAGES.glob("*/pyproject.toml"))}


PYPROJECTS = load_pyprojects()
ALL = sorted(PYPROJECTS)
DOMAIN_PACKAGES = sorted(name for name in PYPROJECTS if name != CORE)


def all_requirement_texts(pyproject: dict[str, Any]) -> list[str]:
    """Every PEP 621 requirement string: dependencies and each optional-dependency group."""
    project = pyproject.get("project", {})
    texts = list(project.get("dependencies", []))
    for group in project.get("optional-dependencies", {}).values():
        texts.extend(group)
    return texts


def dependencies(package: str) -> dict[str, Req]:
    """Normalized name -> requirement, for the package's run-time dependencies."""
    reqs = [parse_requirement(text) for text in PYPROJECTS[package]["project"].get("dependencies", [])]
    return {req.name: req for req in reqs}


def test_every_package_of_the_layout_exists() -> None:
    missing = sorted({CORE, *DOMAINS} - set(PYPROJECTS))
    assert not missing, f"packages/ lacks {missing}"


def test_every_domain_package_has_rules() -> None:
    unknown = sorted(set(DOMAIN_PACKAGES) - set(DOMAINS))
    assert not unknown, f"new domain package(s) {unknown}: add them to DOMAINS, FORBIDDEN and REQUIRED here"


@pytest.mark.parametrize("package", ALL)
def test_pep621_project_table(package: str) -> None:
    data = PYPROJECTS[package]
    project = data.get("project")
    assert isinstance(project, dict), f"{package}: needs a PEP 621 [project] table (not only [tool.poetry])"
    assert project.get("name") == package, f"{package}: [project] name is {project.get('name')!r}, not the folder name"
    assert "version" not in project.get("dynamic", []), f"{package}: the version must be static"
    assert isinstance(project.get("version"), str) and project["version"], f"{package}: [project] needs a version"
    python = project.get("requires-python")
    assert python == ">=3.11", f"{package}: requires-python is {python!r}, not '>=3.11'"
    assert isinstance(project.get("dependencies"), list), f"{package}: [project] needs a dependencies list"
    build = data.get("build-system", {})
    backend = build.get("build-backend")
    assert backend == "poetry.core.masonry.api", f"{package}: build-backend is {backend!r}, not poetry-core's"
    assert any(parse_requirement(r).name == "poetry-core" for r in build.get("requires", [])), (
        f"{package}: build-system requires {build.get('requires')!r}, without poetry-core"
    )


@pytest.mark.parametrize("package", ALL)
def test_sources_match_the_poetry_packages_and_version(package: str) -> None:
    data = PYPROJECTS[package]
    module = module_name(package)
    includes = data.get("tool", {}).get("poetry", {}).get("packages", [])
    assert {"include": module, "from": "src"} in includes, f"{package}: [tool.poetry] packages lacks {module} from src"
    init = PACKAGES / package / "src" / module / "__init__.py"
    assert init.is_file(), f"{package}: {init.relative_to(ROOT)} is missing"
    versions = [
        node.value.value
        for node in ast.parse(init.read_text()).body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)
        and isinstance(node.value, ast.Constant)
    ]
    assert versions == [data["project"]["version"]], (
        f"{package}: __version__ {versions} in {init.relative_to(ROOT)} disagrees with {data['project']['version']!r}"
    )


@pytest.mark.parametrize("package", ALL)
def test_requirements_are_names_never_paths_or_urls(package: str) -> None:
    for text in all_requirement_texts(PYPROJECTS[package]):
        try:
            req = parse_requirement(text)
        except InvalidRequirement:
            pytest.fail(f"{package}: {text!r} is not a requirement of the form name<version range>")
        assert req.url is None and not looks_like_path_or_url(text), (
            f"{package}: {text!r} is a path or URL reference; require other packages by name and version range"
        )


@pytest.mark.parametrize("package", DOMAIN_PACKAGES)
def test_domain_requires_kd_core_by_name_and_range(package: str) -> None:
    deps = dependencies(package)
    assert CORE in deps, f"{package}: does not require {CORE}"
    assert deps[CORE].specifier, f"{package}: requires {CORE} without a version range ({deps[CORE].text!r})"


@pytest.mark.parametrize("package", ALL)
def test_forbidden_requirements(package: str) -> None:
    patterns = FORBIDDEN.get(package)
    assert patterns is not None, f"{package}: no allow-list in FORBIDDEN"
    bad = sorted(name for name in dependencies(package) if any(fnmatch.fnmatchcase(name, p) for p in patterns))
    assert not bad, f"{package}: must not require {bad} (those belong to other domains)"


@pytest.mark.parametrize("package", DOMAIN_PACKAGES)
def test_required_domain_libraries(package: str) -> None:
    missing = sorted(set(REQUIRED.get(package, [])) - set(dependencies(package)))
    assert not missing, f"{package}: does not require {missing}"


@pytest.mark.parametrize("package", DOMAIN_PACKAGES)
def test_domain_cli_script_and_entry_point(package: str) -> None:
    domain = DOMAINS.get(package, package.removeprefix("kd-"))
    project = PYPROJECTS[package]["project"]
    target = f"{module_name(package)}.cli:main"
    scripts = project.get("scripts", {})
    assert scripts.get(f"kd-{domain}") == target, f"{package}: [project.scripts] needs kd-{domain} = {target!r}"
    entry_points = project.get("entry-points", {}).get("kd.cli", {})
    assert entry_points.get(domain) == target, (
        f'{package}: [project.entry-points."kd.cli"] needs {domain} = {target!r}, has {entry_points}'
    )


def imported_modules(path: Path) -> set[str]:
    """Top-level names of absolute imports in a file, plus ``import_module("x")``/``__import__("x")``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if (
                name in ("import_module", "__import__")
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                found.add(first.value.split(".")[0])
    return found


@pytest.mark.parametrize("package", ALL)
def test_domain_packages_never_import_one_another(package: str) -> None:
    own = module_name(package)
    domain_modules = {module_name(name) for name in DOMAIN_PACKAGES}
    violations = []
    for path in sorted((PACKAGES / package / "src").rglob("*.py")):
        for module in sorted(imported_modules(path) & (domain_modules - {own})):
            violations.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not violations, (
        "domain packages never import one another, and kd-core imports none; "
        "share through a protocol in kd-core:\n" + "\n".join(violations)
    )


def _installed(package: str) -> metadata.Distribution:
    try:
        return metadata.distribution(package)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{package} is not installed in this environment")


@pytest.mark.parametrize("package", ALL)
def test_installed_metadata_agrees(package: str) -> None:
    dist = _installed(package)
    project = PYPROJECTS[package]["project"]
    stale = f"reinstall it: pip install -c constraints/dev.txt -e packages/{package} (with every local package)"
    assert dist.version == project["version"], (
        f"{package}: installed {dist.version}, pyproject.toml says {project['version']}; {stale}"
    )
    installed = metadata.requires(package) or []
    for text in installed:
        assert "@ file:" not in text and "file://" not in text, f"{package}: installed metadata has {text!r}"
    runtime = {parse_requirement(text) for text in installed}
    runtime = {req for req in runtime if "extra" not in req.marker}
    if Requirement is not None:  # compare specifier sets, whatever their order
        from packaging.specifiers import SpecifierSet

        have = {(req.name, SpecifierSet(req.specifier), req.marker) for req in runtime}
        want = {(req.name, SpecifierSet(req.specifier), req.marker) for req in dependencies(package).values()}
    else:
        have = {req.name for req in runtime}
        want = set(dependencies(package))
    assert have == want, f"{package}: installed requirements differ from pyproject.toml; {stale}\n{have ^ want}"
    if package in DOMAINS:
        domain = DOMAINS[package]
        names = {entry.name for entry in dist.entry_points if entry.group == "kd.cli"}
        assert domain in names, f"{package}: installed without its kd.cli entry point {domain!r}; {stale}"
