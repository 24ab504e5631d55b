"""Recipes: pydantic-validated YAML that names a method and fills its config; a registry of methods.

Domain packages register methods through the entry point group ``kd.methods``: each entry point
loads a ``Method`` (a name, a pydantic config model and ``build(config) -> Plan``) and may ship
YAML recipes in a folder. ``--set a.b=c`` overrides any field and is validated the same way.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kd_core.errors import ConfigError, RecipeError

METHODS_GROUP = "kd.methods"
CLI_GROUP = "kd.cli"


#: The largest seed: every random generator the toolkit seeds (torch, numpy, Python) takes [0, 2**32 - 1].
SEED_MAX = 2**32 - 1
#: A recipe's seed field.
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]


def check_seed(value: Any, argument: str = "--seed") -> int:
    """``value`` if it is an integer seed in [0, 2**32 - 1], else a ``ConfigError`` naming ``argument``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEED_MAX:
        raise ConfigError(argument, f"an integer seed in [0, {SEED_MAX}]", value)
    return value


class Section(BaseModel):
    """A section of a recipe (``teacher:``, ``kd:``, ...): unknown keys are errors, and so are NaN and infinite
    numbers (a learning rate or temperature of ``.inf`` is refused here, naming the field)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class RecipeConfig(BaseModel):
    """Fields every recipe has; a method's config model extends it. Unknown keys are errors, and so are NaN
    and infinite numbers."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    method: str
    name: str | None = None
    seed: Seed = 0


class Plan(Protocol):
    """What a method builds from its config: something that runs and returns its run directory."""

    def run(self, context: RunContext) -> Path:
        """Carry the plan out under ``context.out``."""


@dataclass
class RunContext:
    """Where and how a plan runs, as chosen on the command line."""

    out: Path
    device: str = "auto"
    precision: str = "fp32"
    resume: bool = False
    progress: bool = True
    trust: tuple[str, ...] = ()
    """Package prefixes whose ``module:function`` builders may be imported (``--trust``)."""


@dataclass(frozen=True)
class Method:
    """A registered method: its name, config model, plan builder, domain and recipe folder."""

    name: str
    config_model: type[RecipeConfig]
    build: Callable[[RecipeConfig], Plan]
    domain: str
    recipes: Path | None = None
    summary: str = ""


def _domain_of(entry: metadata.EntryPoint) -> str | None:
    dist = entry.dist
    name = dist.name if dist is not None else ""
    return name[3:] if name.startswith("kd-") else None


def methods(domain: str | None = None) -> dict[str, Method]:
    """Methods that installed packages register under ``kd.methods`` (only ``domain``'s, if given).

    Entry points of other domains' packages are not even imported, so one broken or slow package
    cannot affect another domain's CLI.
    """
    found: dict[str, Method] = {}
    for method in _installed_methods(domain):
        found.setdefault(method.name, method)
    return found


def _load_method(entry: metadata.EntryPoint) -> Method:
    """Import an entry point's ``Method``; a plugin that fails to import is a ``RecipeError``, not a traceback."""
    try:
        method = entry.load()
    except Exception as err:
        raise RecipeError(f"entry point {entry.name} ({entry.value})", "an importable kd method",
                          f"{type(err).__name__}: {err}") from None
    if not isinstance(method, Method):
        raise RecipeError(f"entry point {entry.name}", "a kd_core.recipes.Method", type(method).__name__)
    return method


def _installed_methods(domain: str | None = None) -> list[Method]:
    """Every registered method (of ``domain``, if given), same-named methods of different domains included."""
    found: list[Method] = []
    for entry in metadata.entry_points(group=METHODS_GROUP):
        if domain is not None and _domain_of(entry) not in (domain, None):
            continue
        method = _load_method(entry)
        if domain is None or method.domain == domain:
            found.append(method)
    return found


@dataclass(frozen=True)
class RecipeInfo:
    """An installed recipe as listed without importing its method: name, domain, method, file, summary."""

    name: str
    domain: str
    method: str
    path: Path
    summary: str


def _recipe_folder(entry: metadata.EntryPoint) -> Path | None:
    """``<package>/recipes`` of the top package an entry point names, found without importing it."""
    top = entry.value.partition(":")[0].split(".")[0].strip()
    try:
        spec = importlib.util.find_spec(top)  # a top-level package: locating it executes nothing
    except (ImportError, ValueError):
        spec = None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        if (Path(location) / "recipes").is_dir():
            return Path(location) / "recipes"
    dist = entry.dist
    for file in (dist.files or []) if dist is not None else []:
        parts = Path(str(file)).parts
        if len(parts) == 3 and parts[0] == top and parts[1] == "recipes" and parts[2].endswith(".yaml"):
            return Path(str(dist.locate_file(file))).parent
    return None


def recipe_summary(path: Path) -> str:
    """A recipe's one-line summary: the first line of the YAML file, if it is a comment (else "")."""
    try:
        with open(path, encoding="utf-8") as handle:
            first = handle.readline()
    except (OSError, UnicodeDecodeError):
        return ""
    return first[1:].strip() if first.startswith("#") else ""


def _recipe_method(path: Path) -> str:
    """The ``method`` a recipe file names ("?" if it names none or cannot be read)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return "?"
    name = data.get("method") if isinstance(data, dict) else None
    return str(name) if name is not None else "?"


def recipe_index(domain: str | None = None) -> list[RecipeInfo]:
    """Every installed recipe (of ``domain``, if given), from ``kd.methods`` metadata and recipe folders.

    Imports no method module (and so no torch): a method's package ships its recipes in
    ``<package>/recipes/*.yaml``. Entry points whose distribution is not a ``kd-<domain>`` one are
    loaded to learn their domain and folder. Ordered as the entry points are, then by file name.
    """
    folders: list[tuple[str, Path]] = []
    for entry in metadata.entry_points(group=METHODS_GROUP):
        entry_domain = _domain_of(entry)
        if entry_domain is None:  # not a kd-<domain> distribution: only the Method itself knows
            method = _load_method(entry)
            if method.recipes is not None and (domain is None or method.domain == domain):
                folders.append((method.domain, Path(method.recipes)))
            continue
        if domain is not None and entry_domain != domain:
            continue
        folder = _recipe_folder(entry)
        if folder is not None:
            folders.append((entry_domain, folder))
    found: list[RecipeInfo] = []
    for entry_domain, folder in dict.fromkeys(folders):
        for path in sorted(folder.glob("*.yaml")):
            found.append(RecipeInfo(path.stem, entry_domain, _recipe_method(path), path, recipe_summary(path)))
    return found


def available_recipes(domain: str | None = None) -> dict[str, Path]:
    """Recipe name -> YAML file for every installed method (of ``domain``, if given); imports no method.

    Without a domain, a name shipped by two domains resolves to the first; use the domain CLIs
    (or ``kd recipes``, which lists each domain's recipes) to see both.
    """
    recipes: dict[str, Path] = {}
    for info in recipe_index(domain):
        recipes.setdefault(info.name, info.path)
    return recipes


def find_recipe(name_or_path: str, domain: str | None = None) -> Path:
    """A recipe file: an existing path, or the name of a recipe an installed method ships."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():  # a directory never shadows a recipe name
        if not path.is_file():
            raise RecipeError("--recipe", "an existing YAML file or a recipe name", name_or_path)
        return path
    known = available_recipes(domain)
    if name_or_path in known:
        if domain is None:
            shipped_by = sorted({info.domain for info in recipe_index() if info.name == name_or_path})
            if len(shipped_by) > 1:
                raise RecipeError("--recipe", "a recipe name that one domain ships (or that domain's CLI)",
                                  name_or_path, hint=f"{name_or_path} is shipped by {shipped_by}: use "
                                  + " or ".join(f"kd-{d}" for d in shipped_by) + " (or pass domain=...)")
        return known[name_or_path]
    nearest = difflib.get_close_matches(name_or_path, list(known), n=3)
    raise RecipeError("--recipe", f"one of the installed recipes {sorted(known)}", name_or_path,
                      hint=f"did you mean {nearest}?" if nearest else "")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=3"`` -> (``["a", "b"]``, ``3``); the value is read as YAML (numbers, lists, booleans)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise RecipeError("--set", "key=value (e.g. train.epochs=5)", text)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with every ``key=value`` override applied."""
    result = yaml.safe_load(yaml.safe_dump(data))
    for text in overrides:
        keys, value = parse_override(text)
        node = result
        for key in keys[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[keys[-1]] = value
    return result


def _describe_error(error: dict[str, Any]) -> tuple[str, str, Any]:
    location = ".".join(str(p) for p in error["loc"]) or "recipe"
    if error["type"] == "extra_forbidden":
        return location, "no such key (a field of the method's config)", error.get("input")
    if error["type"] == "missing":
        return location, "a value (the field is required)", None
    msg = error["msg"]
    if error["type"] == "value_error":  # a method's own check: "<what is expected>, received <value>"
        text = msg.removeprefix("Value error, ")
        expected, sep, received = text.rpartition(", received ")
        if sep:
            try:  # the message shows the value as Python writes it: read it back, so it is not quoted twice
                return location, expected, ast.literal_eval(received)
            except (ValueError, SyntaxError):
                return location, expected, received
        value = error.get("input")
        return location, text, value if not isinstance(value, dict | list) else "another value"
    return location, msg[:1].lower() + msg[1:], error.get("input")


def validate(method: Method, data: dict[str, Any]) -> RecipeConfig:
    """Validate recipe data against the method's config model; errors name the field."""
    try:
        return method.config_model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        location, expected, received = _describe_error(first)
        extra = len(err.errors()) - 1
        raise RecipeError(location, expected, received,
                          hint=f"and {extra} more problem(s)" if extra else "") from None


def read_recipe(path: Path) -> dict[str, Any]:
    """The YAML mapping of a recipe file; ``RecipeError`` if it is not valid YAML or not a mapping."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as err:
        raise RecipeError("--recipe", "a readable, valid YAML file (UTF-8 text)", str(path),
                          hint=str(err).splitlines()[0]) from None
    if not isinstance(data, dict):
        raise RecipeError("--recipe", "a YAML mapping of config fields", type(data).__name__, hint=str(path))
    return data


def load_recipe(name_or_path: str, overrides: Sequence[str] = (), domain: str | None = None
                ) -> tuple[Method, RecipeConfig]:
    """Find, read, override and validate a recipe; return its method and validated config."""
    path = find_recipe(name_or_path, domain)
    data = apply_overrides(read_recipe(path), overrides)
    name = data.get("method")
    registered = methods(domain)
    if not isinstance(name, str) or name not in registered:
        raise RecipeError("method", f"an installed method among {sorted(registered)}", name,
                          hint=f"in recipe {path}")
    method = registered[name]
    if domain is None:  # a method name two domains register: the one whose package ships this file
        same = [m for m in _installed_methods() if m.name == name]
        shipping = [m for m in same if m.recipes is not None and Path(m.recipes).resolve() == path.resolve().parent]
        if len(same) > 1 and len(shipping) != 1:
            raise RecipeError("method", "a method name that one domain registers (or that domain's CLI)", name,
                              hint=f"{name} is registered by {sorted(m.domain for m in same)}: use the domain's "
                                   f"CLI, e.g. kd-{same[0].domain} (or pass domain=...)")
        method = shipping[0] if shipping else method
    if domain is not None and method.domain != domain:
        raise RecipeError("method", f"a method of the {domain} domain", f"{name} ({method.domain})")
    return method, validate(method, data)


def domains() -> dict[str, str]:
    """Installed domain CLIs (``kd.cli`` entry points): domain name -> distribution version."""
    found = {}
    for entry in metadata.entry_points(group=CLI_GROUP):
        dist = entry.dist
        found[entry.name] = dist.version if dist is not None else "?"
    return found


def open_run(context: RunContext, recipe: dict[str, Any], seed: int, backend: Any) -> Any:
    """A plan's top run directory (``context.out``): checked, then written with config and environment.

    ``backend`` is the plan's ``kd_core.Backend`` (recorded in ``env.json``); returns the ``RunDir``.
    """
    from kd_core.runs import RunDir, environment

    return RunDir.create(context.out, {"recipe": recipe, "device": context.device, "precision": context.precision},
                         resume=context.resume, env=environment(seed, {"backend": backend.describe()}))
