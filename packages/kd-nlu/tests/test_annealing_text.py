"""Annealing-KD for text: the phases and Φ schedule by hand, a tiny end-to-end run of every arm, bad recipes."""

from __future__ import annotations

import json
import random

import pytest
import torch
from kd_core.errors import RecipeError
from kd_core.recipes import RunContext, load_recipe
from kd_nlu.data.text import TextDataset
from kd_nlu.methods.annealing import AnnealingTextConfig, AnnealingTextPlan, arm_phases
from kd_nlu.methods.dcs import TextResources
from torch import nn
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "cat", "dog", "bird", "red", "blue", "green", "run", "sit",
         "fly", "the", "a", "very", "small"]
WORDS = [["cat", "dog", "bird"], ["red", "blue", "green"], ["run", "sit", "fly"]]


def _texts(n: int, seed: int) -> tuple[list[str], list[int]]:
    """Three classes of short texts: two words of the class's list among filler words."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        y = i % 3
        words = [rng.choice(WORDS[y]), rng.choice(["the", "a", "very", "small"]), rng.choice(WORDS[y])]
        texts.append(" ".join(words))
        labels.append(y)
    return texts, labels


def _bert(seed: int, layers: int = 2) -> nn.Module:
    torch.manual_seed(seed)
    return BertForSequenceClassification(BertConfig(
        vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=32, num_labels=3, attn_implementation="eager"))


def tiny_resources(teachers: int = 1) -> TextResources:
    """Tiny splits, tokenizer, random BERT teachers and a student builder: no files, no downloads."""
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(VOCAB)})
    splits = {name: TextDataset(*_texts(n, seed), tokenizer, max_length=8)
              for name, n, seed in (("train", 36, 0), ("val", 12, 1), ("test", 12, 2))}
    return TextResources(splits=splits, num_classes=3,
                         teachers={f"t{k}": _bert(100 + k).eval() for k in range(teachers)},
                         build_student=lambda seed: _bert(seed), pad_token_id=0)


def test_phases_and_the_annealed_target_by_hand() -> None:
    config = AnnealingTextConfig(annealing={"tau_max": 3, "phase1_epochs": 3, "phase2_epochs": 2})
    phase1, phase2 = arm_phases(config, "annealing-kd")
    assert (phase1.epochs, phase2.epochs, phase1.restore_best) == (3, 2, True)
    term = phase1.objective.terms[0]
    assert [term.options["scale"](p) for p in (0.1, 0.5, 0.9)] == pytest.approx([1 / 3, 2 / 3, 1.0])
    student, teacher = torch.tensor([[1.0, -1.0, 0.0]]), torch.tensor([[3.0, 0.0, -3.0]])
    # epoch 0: Φ = 1/3, MSE(z_s, z_t / 3) = ((1 - 1)² + (-1 - 0)² + (0 + 1)²) / 3
    value = phase1.objective({"logits": student}, {"logits": teacher}, {}, progress=0.1).total
    assert float(value) == pytest.approx(2 / 3)
    assert [t.name for t in phase2.objective.terms] == ["ce"]
    mse = arm_phases(config, "mse-kd")[0].objective.terms[0]
    assert mse.options["scale"] == 1.0
    assert [p.epochs for p in arm_phases(config, "hinton-kd")] == [5]  # the same budget, E1 + E2


def test_tiny_end_to_end_run_of_every_arm(tmp_path) -> None:
    config = AnnealingTextConfig(seeds=[0], annealing={"tau_max": 2, "phase1_epochs": 2, "phase2_epochs": 1},
                                 student={"train": {"epochs": 3, "lr": 1e-3, "batch_size": 12}})
    out = AnnealingTextPlan(config, resources=tiny_resources()).run(RunContext(out=tmp_path / "run", device="cpu"))
    results = json.loads((out / "results.json").read_text())
    assert set(results["seeds"]) == {"annealing-kd", "mse-kd", "hinton-kd", "scratch"}
    assert results["phi"] == [0.5, 1.0]
    rows = [json.loads(line) for line in (out / "annealing-kd-seed0" / "metrics.jsonl").read_text().splitlines()]
    phases = [r["phase_name"] for r in rows if "phase_name" in r]
    assert phases == ["phase1", "phase1", "phase2"]  # one validation row per epoch, in phase order
    assert "Annealing-KD" in (out / "report.md").read_text()


def test_bad_recipe_values_name_the_field() -> None:
    with pytest.raises(RecipeError, match="phase1_epochs"):
        load_recipe("annealing-kd", ["annealing.phase1_epochs=3"], domain="nlu")
    with pytest.raises(RecipeError, match="tau_max"):
        load_recipe("annealing-kd", ["annealing.tau_max=0"], domain="nlu")
