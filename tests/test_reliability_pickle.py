"""Drill: a checkpoint carrying a malicious pickle payload is refused, and nothing in it runs.

The payload is what ``torch.save`` writes for an object whose ``__reduce__`` calls ``open`` to create a
marker file: loading it with plain pickle (or ``torch.load(weights_only=False)``) would create the file.
It is put where kd reads files: a run's ``last.safetensors`` (``load_state``, ``--resume``), a weights
file (``load_weights``, which kd-edge's ``load_pruned`` and best-checkpoint restores use), a teacher
cache, and a saved kd-nlu student (as ``pytorch_model.bin``). Each is refused and the marker never
appears. A static check then makes sure no package source loads anything with pickle: no
``pickle.load(s)``, no ``torch.load`` without ``weights_only=True``, no ``allow_pickle=True``, no
joblib/dill/cloudpickle loads, and any ``pickle.Unpickler`` subclass restricts ``find_class``.
"""

from __future__ import annotations

import ast
import builtins
import json
from pathlib import Path

import pytest
import torch
from kd_core import Backend, CachedTeacher, Distiller, FrozenTeacher, Objective, Phase, Term, cross_entropy
from kd_core.checkpoint import load_state, load_weights
from kd_core.errors import CacheError, CheckpointError
from kd_core.testing import BlobDataset, tiny_mlp

ROOT = Path(__file__).resolve().parents[1]


class _Payload:
    """Unpickling this creates ``marker`` (a stand-in for arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.open, (str(self.marker), "w"))


@pytest.fixture
def evil(tmp_path) -> tuple[Path, Path]:
    """A malicious ``torch.save`` file and the marker its payload would create."""
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    torch.save({"student": {"0.weight": _Payload(marker)}, "global_step": 3}, path)
    return path, marker


def test_the_payload_is_live(evil):
    path, marker = evil
    torch.load(path, weights_only=False)  # the unsafe way: proves the drill's payload really runs
    assert marker.exists()


def test_load_state_and_load_weights_refuse_a_pickle(tmp_path, evil):
    path, marker = evil
    target = tmp_path / "last.safetensors"
    target.write_bytes(path.read_bytes())
    with pytest.raises(CheckpointError) as caught:
        load_state(target)
    assert "last.safetensors" in str(caught.value)
    with pytest.raises(CheckpointError):
        load_weights(tiny_mlp(), target)
    assert not marker.exists()


def test_resume_from_a_pickled_checkpoint_is_refused(tmp_path, evil):
    path, marker = evil
    out = tmp_path / "run"

    def distiller() -> Distiller:
        return Distiller(tiny_mlp(seed=2), [Phase("p", Objective(Term("ce", cross_entropy, target="label")),
                                                  epochs=2)], backend=Backend("cpu"), batch_size=16)

    distiller().fit(BlobDataset(32), out=out)
    (out / "checkpoints" / "last.safetensors").write_bytes(path.read_bytes())
    with pytest.raises(CheckpointError) as caught:
        distiller().fit(BlobDataset(32), out=out, resume=True)
    assert caught.value.argument == "checkpoint" and "not a kd checkpoint" in str(caught.value)
    assert not marker.exists()


def test_a_pickled_teacher_cache_is_refused(tmp_path, evil):
    path, marker = evil
    cache = CachedTeacher(FrozenTeacher(tiny_mlp(seed=1)), tmp_path / "cache")
    cache.build([{"input": torch.randn(4, 8), "index": torch.arange(4)}])
    (tmp_path / "cache" / "cache.safetensors").write_bytes(path.read_bytes())
    cache = CachedTeacher(FrozenTeacher(tiny_mlp(seed=1)), tmp_path / "cache")
    cache.bind(["logits"], lambda model, batch: model(batch["input"]))
    with pytest.raises(CacheError, match="cache"):  # safetensors refuses it; the cache names itself
        cache({"input": torch.randn(4, 8), "index": torch.arange(4)})
    assert not marker.exists()


def test_a_pickled_nlu_student_is_refused(tmp_path, evil):
    transformers = pytest.importorskip("transformers")
    student = pytest.importorskip("kd_nlu.models.student")
    path, marker = evil
    config = transformers.BertConfig(vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=16, max_position_embeddings=16)
    folder = tmp_path / "student"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    (folder / "pytorch_model.bin").write_bytes(path.read_bytes())
    with pytest.raises(CheckpointError, match="student"):  # only safetensors weights are read
        student.load_student(folder)
    assert not marker.exists()


_PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "pandas"}


def _unsafe_loads(tree: ast.AST) -> list[tuple[int, str]]:
    """Calls that could unpickle untrusted data, by line."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            bases = {ast.unparse(b) for b in node.bases}
            restricted = any(isinstance(n, ast.FunctionDef) and n.name == "find_class" for n in node.body)
            if bases & {"pickle.Unpickler", "Unpickler", "_pickle.Unpickler"} and not restricted:
                found.append((node.lineno, f"class {node.name}: an Unpickler without find_class"))
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
        module, _, attr = name.rpartition(".")
        if module in _PICKLE_MODULES and attr in ("load", "loads", "read_pickle"):
            found.append((node.lineno, name))
        elif name == "torch.load" and keywords.get("weights_only") != "True":
            found.append((node.lineno, "torch.load without weights_only=True"))
        elif attr in ("load", "loadtxt") and module in ("np", "numpy") and keywords.get("allow_pickle") == "True":
            found.append((node.lineno, f"{name}(allow_pickle=True)"))
    return found


def test_no_package_source_unpickles():
    sources = sorted((ROOT / "packages").glob("*/src/**/*.py")) + sorted((ROOT / "tools").rglob("*.py"))
    assert len(sources) > 20
    problems = [f"{path.relative_to(ROOT)}:{line}: {what}" for path in sources
                for line, what in _unsafe_loads(ast.parse(path.read_text(), str(path)))]
    assert problems == []


def test_the_static_check_finds_unsafe_loads():
    code = ("import pickle, torch, numpy as np\npickle.loads(b'')\ntorch.load('x')\n"
            "torch.load('x', weights_only=False)\nnp.load('x', allow_pickle=True)\ntorch.load('x', weights_only=True)\n"
            "class U(pickle.Unpickler):\n    pass\n")
    assert sorted(line for line, _ in _unsafe_loads(ast.parse(code))) == [2, 3, 4, 5, 7]
