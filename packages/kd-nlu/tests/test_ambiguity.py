"""Label-ambiguity methods S1 (lower-layer self-KD + re-calibration) and S2 (probe, plateau, prune, distil):
the building blocks by hand, then toy CLI studies of every arm.

Everything runs on tiny random BERTs, a WordPiece tokenizer and phrases with human distributions built here.
"""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from kd_core.ambiguity_metrics import ambiguity_metrics
from kd_core.errors import ConfigError, RecipeError
from kd_core.recipes import load_recipe
from kd_core.taps import TapSet
from kd_nlu.ambiguity.data import AmbiguityTask, split_task
from kd_nlu.ambiguity.evaluation import ambiguous_subset_metrics
from kd_nlu.ambiguity.heads import pool
from kd_nlu.ambiguity.layers import layer_paths
from kd_nlu.ambiguity.lower_layer import LayerClassifier, SelfDistillModel, head_lr_adamw
from kd_nlu.ambiguity.plateau import distillation_layer, plateau_layer
from kd_nlu.ambiguity.probes import (
    FeatureDataset,
    ProbeBank,
    layer_accuracies,
    layer_features,
    probe_logits,
    train_probes,
)
from kd_nlu.ambiguity.pruning import prune_layers
from kd_nlu.ambiguity.recalibration import TargetsDataset, ambiguity_scores, flag_ambiguous, recalibration_objective
from kd_nlu.ambiguity.task import read_human_jsonl
from kd_nlu.cli import main
from kd_nlu.data.text import TextCollator, TextDataset, encoder_forward
from kd_nlu.methods.ambiguity import (
    freeze_encoder,
    prune_arms,
    prune_compare,
    selfkd_arms,
    selfkd_compare,
    selfkd_objective,
)
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
)

WORDS = {"good": (0.1, 0.2, 0.7), "great": (0.0, 0.1, 0.9), "bad": (0.8, 0.1, 0.1), "awful": (0.9, 0.1, 0.0),
         "okay": (0.2, 0.5, 0.3), "meh": (0.4, 0.4, 0.2), "fine": (0.1, 0.5, 0.4), "sad": (0.7, 0.2, 0.1)}
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "the", "very", "not", "a"]



@pytest.fixture(scope="module")
def tokenizer():
    return BertTokenizerFast(vocab={word: i for i, word in enumerate(VOCAB)})


def tiny_bert(num_labels: int = 3, layers: int = 3, seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=32, num_labels=num_labels, max_position_embeddings=32,
                        attn_implementation="eager")
    return BertForSequenceClassification(config)


def tiny_task(n: int = 96, seed: int = 0) -> AmbiguityTask:
    """Short phrases whose human distribution is the mean of their sentiment words' distributions."""
    g = torch.Generator().manual_seed(seed)
    names, fillers = list(WORDS), ["the", "very", "not", "a"]
    texts, human = [], []
    for _ in range(n):
        words = [names[int(i)] for i in torch.randint(len(names), (int(torch.randint(1, 3, (1,), generator=g)),),
                                                      generator=g)]
        texts.append(" ".join([fillers[int(torch.randint(4, (1,), generator=g))], *words]))
        human.append(torch.tensor([WORDS[w] for w in words]).mean(0))
    return AmbiguityTask.from_distributions(texts, torch.stack(human), ["negative", "neutral", "positive"])


# ------------------------------------------------------------------------------------------------------
# plateau


def test_plateau_on_hand_made_accuracy_curves():
    curve = [0.60, 0.70, 0.712, 0.715, 0.71, 0.70]
    assert plateau_layer(curve, tolerance=0.005) == 3  # 0.712 ≥ 0.715 − 0.005; 0.70 is not
    assert plateau_layer(curve, tolerance=0.0) == 4  # the best layer itself
    assert plateau_layer(curve, tolerance=0.02) == 2  # 0.70 ≥ 0.695
    assert plateau_layer([0.8, 0.7, 0.6]) == 1  # accuracy falls from layer 1: nothing to gain above it
    assert plateau_layer([0.5, 0.6, 0.6]) == 2  # ties: the lowest layer
    assert distillation_layer(3, 1) == 2 and distillation_layer(4, 2) == 2
    assert distillation_layer(1, 1) == 1  # layer 1 has nothing below: it distils itself
    assert distillation_layer(4, 0) == 4
    with pytest.raises(ConfigError, match="accuracies"):
        plateau_layer([])
    with pytest.raises(ConfigError, match="accuracies"):
        plateau_layer([0.5, math.nan])
    with pytest.raises(ConfigError, match="tolerance"):
        plateau_layer([0.5], tolerance=-0.1)
    with pytest.raises(ConfigError, match="offset"):
        distillation_layer(3, -1)


# ------------------------------------------------------------------------------------------------------
# re-calibration flags


PROBS = torch.tensor([
    [1 / 3, 1 / 3, 1 / 3],  # 0: entropy 1.0986, margin .667
    [0.90, 0.05, 0.05],     # 1: entropy 0.3944, margin .10
    [0.50, 0.50, 0.00],     # 2: entropy 0.6931, margin .50
    [0.98, 0.01, 0.01],     # 3: entropy 0.1119, margin .02
    [0.40, 0.30, 0.30],     # 4: entropy 1.0889, margin .60
    [0.50, 0.25, 0.25],     # 5: entropy 1.0397, margin .50 (ties sample 2)
])


def test_scores_by_hand():
    assert ambiguity_scores(PROBS, "entropy").tolist() == pytest.approx(
        [math.log(3), 0.394398, math.log(2), 0.111902, 1.088900, 1.039721], abs=1e-5)
    assert ambiguity_scores(PROBS, "margin").tolist() == pytest.approx([2 / 3, 0.1, 0.5, 0.02, 0.6, 0.5])


def test_jsd_on_the_ambiguous_samples_only():
    logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.5, 0.5, 0.0]])
    labels = torch.tensor([0, 1, 0])
    human = torch.tensor([[0.5, 0.4, 0.1], [0.1, 0.9, 0.0], [0.6, 0.3, 0.1]])  # top 0.5, 0.9, 0.6
    subset = ambiguous_subset_metrics(logits, labels, human)
    ambiguous = torch.tensor([0, 2])  # top ≤ 0.6 (0.6 itself counts)
    expected = ambiguity_metrics(logits[ambiguous], labels[ambiguous], human[ambiguous])
    assert subset["jsd_ambiguous"] == pytest.approx(expected["jsd"]) and subset["kl_ambiguous"] == pytest.approx(
        expected["kl"])
    assert subset["ambiguous_share"] == pytest.approx(2 / 3)
    none = ambiguous_subset_metrics(logits, labels, torch.eye(3))
    assert none["ambiguous_share"] == 0.0 and math.isnan(none["jsd_ambiguous"])


def test_freezing_the_encoder_leaves_only_the_task_head_trainable():
    model = tiny_bert()
    assert freeze_encoder(model) == ["classifier.weight", "classifier.bias"]
    assert not any(p.requires_grad for p in model.bert.parameters())
    with pytest.raises(ConfigError, match="trainable"):
        freeze_encoder(model.bert)  # no head outside the encoder


def test_which_samples_recalibration_flags():
    flagged = lambda mask: mask.nonzero().squeeze(-1).tolist()  # noqa: E731
    assert flagged(flag_ambiguous(PROBS, 0.5, "entropy")) == [0, 4, 5]
    # by margin samples 2 and 5 tie at .5: the lower index wins the last place
    assert flagged(flag_ambiguous(PROBS, 0.5, "margin")) == [0, 2, 4]
    assert flagged(flag_ambiguous(PROBS, 0.34, "entropy")) == [0, 4, 5]  # ceil(0.34 · 6) = 3
    assert flagged(flag_ambiguous(PROBS, 0.0)) == []
    assert flagged(flag_ambiguous(PROBS, 1.0)) == [0, 1, 2, 3, 4, 5]
    ten = torch.softmax(torch.arange(30, dtype=torch.float).reshape(10, 3) / 10, -1)
    assert int(flag_ambiguous(ten, 0.3).sum()) == 3  # 0.3 · 10 is 3, not 4 (floating point)
    # gold label not the arg-max of p_ℓ (sample 2's tie goes to class 0)
    labels = [0, 1, 1, 0, 0, 0]
    assert flagged(flag_ambiguous(PROBS, rule="disagreement", labels=labels)) == [1, 2]
    with pytest.raises(ConfigError, match="probs"):
        flag_ambiguous(torch.tensor([[2.0, -1.0, 0.0]]))  # logits, not probabilities
    with pytest.raises(ConfigError, match="quantile"):
        flag_ambiguous(PROBS, 1.5)
    with pytest.raises(ConfigError, match="labels"):
        flag_ambiguous(PROBS, rule="disagreement")


def test_recalibration_objective_by_hand():
    # KL(p_ℓ ‖ p) with p_ℓ = [.75, .25], p = [.5, .5]: .75·ln 1.5 + .25·ln .5 = 0.130812
    objective = recalibration_objective()
    batch = {"lower_logits": torch.tensor([[math.log(3), 0.0]]), "label": torch.tensor([1])}
    result = objective({"logits": torch.zeros(1, 2)}, None, batch)
    assert float(result.total) == pytest.approx(0.130812, abs=1e-5)
    floor = recalibration_objective(ce_weight=0.5)({"logits": torch.zeros(1, 2)}, None, batch)
    assert float(floor.total) == pytest.approx(0.130812 + 0.5 * math.log(2), abs=1e-5)


# ------------------------------------------------------------------------------------------------------
# probes, pruning, the two models


def test_layer_features_are_the_tapped_layer_outputs(tokenizer):
    model = tiny_bert().eval()
    data = TextDataset(["good film", "the bad", "a meh okay fine"], [2, 0, 1], tokenizer)
    collate = TextCollator(tokenizer.pad_token_id)
    features = layer_features(model, data, collate, "cls")
    assert layer_paths(model) == ["bert.encoder.layer.0", "bert.encoder.layer.1", "bert.encoder.layer.2"]
    assert features.shape == (3, 3, 16)
    batch = collate([data[i] for i in range(3)])
    hidden = model(**{k: batch[k] for k in ("input_ids", "attention_mask")}, output_hidden_states=True).hidden_states
    for layer in (1, 2, 3):  # hidden_states[0] is the embeddings
        assert torch.allclose(features[:, layer - 1], hidden[layer][:, 0], atol=1e-5)
    mean = layer_features(model, data, collate, "mean")
    assert torch.allclose(mean[:, 1], pool(hidden[2], batch["attention_mask"], "mean"), atol=1e-5)


def test_probe_bank_reads_each_layer_and_trains_through_distiller(tmp_path):
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (128,), generator=g)
    informative = torch.randn(128, 4, generator=g) + 3.0 * torch.nn.functional.one_hot(labels, 4).float()
    noise = torch.randn(128, 4, generator=g)
    features = torch.stack([informative, noise], dim=1)  # layer 1 knows the label, layer 2 does not
    bank = ProbeBank(2, 4, 2)
    train_probes(bank, FeatureDataset(features[:96], labels[:96]), tmp_path / "probes", epochs=10, lr=0.1,
                 batch_size=32, seed=0)
    accuracy = layer_accuracies(probe_logits(bank, features[96:]), labels[96:])
    assert accuracy[0] > 0.9 and accuracy[1] < 0.8
    assert plateau_layer(accuracy) == 1


def test_pruning_keeps_a_working_model_with_fewer_layers_that_reloads(tmp_path, tokenizer):
    full = tiny_bert(layers=4).eval()
    pruned = prune_layers(full, 2).eval()
    assert len(full.bert.encoder.layer) == 4 and full.config.num_hidden_layers == 4  # the original is untouched
    assert len(pruned.bert.encoder.layer) == 2 and pruned.config.num_hidden_layers == 2
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in full.parameters())
    batch = TextCollator(0)([TextDataset(["good bad", "the okay"], None, tokenizer)[i] for i in range(2)])
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    # the kept layers are the full model's bottom layers: the same layer-2 output
    full_h = TapSet(full, ["bert.encoder.layer.1"]).run(encoder_forward, full, inputs)["bert.encoder.layer.1"]
    pruned_h = TapSet(pruned, ["bert.encoder.layer.1"]).run(encoder_forward, pruned, inputs)["bert.encoder.layer.1"]
    assert torch.allclose(full_h, pruned_h, atol=1e-6)
    logits = pruned(**inputs).logits
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    pruned.save_pretrained(tmp_path / "pruned")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "pruned").eval()
    assert len(reloaded.bert.encoder.layer) == 2
    assert torch.allclose(reloaded(**inputs).logits, logits, atol=1e-6)
    with pytest.raises(ConfigError, match="keep"):
        prune_layers(full, 5)
    with pytest.raises(ConfigError, match="keep"):
        prune_layers(full, 0)


def test_layer_classifier_reads_the_probe_layer(tokenizer):
    full = tiny_bert(layers=3).eval()
    bank = ProbeBank(3, 16, 3)
    data = TextDataset(["good", "bad meh"], [2, 0], tokenizer)
    collate = TextCollator(0)
    features = layer_features(full, data, collate)
    teacher = LayerClassifier(prune_layers(full, 2), 2, bank.heads[1]).eval()
    batch = collate([data[0], data[1]])
    with torch.no_grad():
        assert torch.allclose(encoder_forward(teacher, batch), probe_logits(bank, features)[:, 1], atol=1e-5)


def test_selfkd_objective_and_gradients(tokenizer):
    model = SelfDistillModel(tiny_bert(layers=3), layer=1, num_labels=3)
    with pytest.raises(ConfigError, match="layer"):
        SelfDistillModel(tiny_bert(layers=3), layer=3, num_labels=3)  # must be strictly below the top
    batch = TextCollator(0)([TextDataset(["good great", "bad", "meh okay"], [2, 0, 1], tokenizer)[i]
                             for i in range(3)])
    out = TapSet(model, ["lower_head", "pair"]).run(encoder_forward, model, batch)
    top, lower = out["logits"], out["lower_head"]
    assert torch.equal(out["pair"][:, 0], top) and torch.equal(out["pair"][:, 1], lower)
    lam = 0.5
    result = selfkd_objective(lam)(out, None, batch)
    p_l, log_top = torch.softmax(lower, -1), torch.log_softmax(top, -1)
    kl = (p_l * (torch.log(p_l) - log_top)).sum(-1).mean()
    ce = torch.nn.functional.cross_entropy(top, batch["label"])
    lower_ce = torch.nn.functional.cross_entropy(lower, batch["label"])
    assert float(result.terms["self_kd"].detach()) == pytest.approx(float(kl.detach()), abs=1e-5)
    expected = (1 - lam) * ce + lower_ce + lam * kl
    assert float(result.total.detach()) == pytest.approx(float(expected.detach()), abs=1e-5)
    # the KD term moves the top classifier only: no gradient into the lower head (stop-gradient target)
    result.terms["self_kd"].backward(retain_graph=True)
    assert model.lower_head.linear.weight.grad is None
    assert model.model.classifier.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    # the lower head's CE trains the lower head only: its features are detached from the trunk
    result.terms["lower_ce"].backward()
    assert model.lower_head.linear.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.model.parameters())


def test_lower_head_gets_its_own_learning_rate():
    model = SelfDistillModel(tiny_bert(layers=2), layer=1, num_labels=3)
    optimizer = head_lr_adamw(model.lower_head, 5e-5, 1e-3)(model.parameters())
    trunk, head = optimizer.param_groups
    assert trunk["lr"] == 5e-5 and head["lr"] == 1e-3
    assert {id(p) for p in head["params"]} == {id(p) for p in model.lower_head.parameters()}
    assert len(trunk["params"]) == len(list(model.model.parameters()))


# ------------------------------------------------------------------------------------------------------
# recipes and tiny end-to-end runs


def test_recipes_validate_and_reject_bad_values():
    _, selfkd = load_recipe("ambiguity-selfkd", domain="nlu")
    assert selfkd.selfkd.layer == 4 and selfkd.recalibration.quantile == 0.3 and selfkd.model == "minilm"
    assert selfkd.recalibration.trainable == "head" and selfkd.recalibration.ce_weight == 0.1
    assert {n: a.role for n, a in selfkd_arms(selfkd, None).items()} == {
        "ce": "scratch", "kd": "kd", "self-kd": "baseline", "self-kd-recal": "variant"}
    assert selfkd_compare(selfkd, selfkd_arms(selfkd, None))[:2] == [("kd", "ce"), ("self-kd-recal", "kd")]
    _, prune = load_recipe("ambiguity-prune", ["distill.lam=0.5"], domain="nlu")
    assert prune.distill.lam == 0.5 and prune.probes.tolerance == 0.005
    assert {n: a.role for n, a in prune_arms(prune, None).items()} == {
        "lower-kd": "variant", "top-kd": "kd", "pruned-ce": "scratch", "full-ce": "baseline", "full-extra": "baseline"}
    assert prune_compare(prune, prune_arms(prune, None))[:2] == [("top-kd", "pruned-ce"), ("lower-kd", "top-kd")]
    with pytest.raises(RecipeError, match="lam"):
        load_recipe("ambiguity-selfkd", ["selfkd.lam=1.5"], domain="nlu")
    with pytest.raises(RecipeError, match="quantile"):
        load_recipe("ambiguity-selfkd", ["recalibration.quantile=-0.1"], domain="nlu")
    with pytest.raises(RecipeError, match="source"):
        load_recipe("ambiguity-prune", ["data.source=csv:x.csv"], domain="nlu")


def test_a_bad_jsonl_line_names_the_source(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_text('{"text": "good", "human": [0.1, 0.2, 0.7]}\n{"text": "bad", "human": [0.5, 0.6, 0.1]}\n')
    with pytest.raises(ConfigError, match=r"data\.source"):
        read_human_jsonl(path, ["negative", "neutral", "positive"])
    assert len(read_human_jsonl(_write(tmp_path, 3), ["n", "u", "p"]).labels) == 3


def _write(folder, n: int = 96):
    """The toy task as a jsonl file of texts and human distributions."""
    task = tiny_task(n)
    path = folder / "human.jsonl"
    lines = (json.dumps({"text": t, "human": h.tolist()}) for t, h in zip(task.texts, task.human))
    path.write_text("\n".join(lines) + "\n")
    return path


def _toy(tmp_path, tokenizer, extra: list[str]) -> list[str]:
    """CLI arguments for a toy study: the toy jsonl and a saved 3-layer tiny BERT with its tokenizer."""
    model = tmp_path / "bert"
    tiny_bert(layers=3).save_pretrained(model)
    tokenizer.save_pretrained(model)
    settings = [f"data.source=jsonl:{_write(tmp_path)}", "data.train_size=64", "data.val_size=16", "data.test_size=16",
                "data.max_length=8", f"model=hf:{model}", "seeds=[0]", "latency_iterations=0", *extra]
    return [a for s in settings for a in ("--set", s)] + ["--device", "cpu"]


def _evaluated(out, capsys) -> dict[str, float]:
    capsys.readouterr()
    assert main(["eval", str(out), "--device", "cpu"]) == 0
    return {k: float(v) for k, v in (line.split(": ") for line in capsys.readouterr().out.splitlines() if ": " in line)}


def test_selfkd_toy_cli_study(tmp_path, tokenizer, monkeypatch, capsys):
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path / "home"))
    out = tmp_path / "run"
    toy = _toy(tmp_path, tokenizer, ["train={epochs: 2, lr: 0.001, batch_size: 16}", "selfkd.layer=1",
                                     "recalibration={quantile: 0.25, train: {epochs: 1, lr: 0.001, batch_size: 16}}"])
    assert main(["distill", "--recipe", "ambiguity-selfkd", "--out", str(out), *toy]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["task"]["headline"] == "jsd" and results["task"]["higher_is_better"] is False
    assert list(results["arms"]) == ["ce", "kd", "self-kd", "self-kd-recal"]
    for arm in results["arms"].values():
        r = arm["seeds"]["0"]
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["jsd"] <= 1 and r["kl"] >= 0
    assert "lower_jsd" in results["arms"]["self-kd"]["seeds"]["0"]  # the lower head is scored too
    assert "lower_jsd" not in results["arms"]["ce"]["seeds"]["0"]
    assert (results["comparisons"][0]["a"], results["comparisons"][0]["b"]) == ("kd", "ce")
    assert all(c["metric"] == "jsd" for c in results["comparisons"])
    # re-calibration trains the classifier head only: the encoder is phase 1's (the self-kd arm's, same seed)
    phase1 = AutoModelForSequenceClassification.from_pretrained(out / "self-kd-seed0" / "model")
    final_model = AutoModelForSequenceClassification.from_pretrained(out / "self-kd-recal-seed0" / "model")
    encoder = dict(phase1.bert.named_parameters())
    assert all(torch.equal(p, encoder[n]) for n, p in final_model.bert.named_parameters())
    assert not torch.equal(phase1.classifier.weight, final_model.classifier.weight)
    assert "jsd_ambiguous" in results["arms"]["ce"]["seeds"]["0"]
    flags = json.loads((out / "self-kd-recal-seed0" / "recalibration.json").read_text())
    assert flags == {"flagged": 16, "of": 64}  # ceil(0.25 · 64) samples
    assert not (out / "self-kd-recal-phase1-seed0").exists()  # phase 1 is the self-kd arm's own run, reused
    rows = [json.loads(line) for line in (out / "self-kd-recal-seed0" / "metrics.jsonl").read_text().splitlines()]
    assert {r.get("phase_name") for r in rows if "phase_name" in r} == {"recalibrate"}
    report = (out / "report.md").read_text()
    for needle in ("**Plain KD against scratch**", "## Ambiguity metrics", "## Re-calibration"):
        assert needle in report
    saved = AutoModelForSequenceClassification.from_pretrained(out / "self-kd-recal-seed0" / "model")
    assert saved.config.num_hidden_layers == 3  # the classifier ships without the lower head
    evaluated = _evaluated(out, capsys)  # kd-nlu eval: the saved final models score as reported
    final = results["arms"]["self-kd-recal"]["seeds"]["0"]
    assert evaluated["self-kd-recal/seed0/jsd"] == pytest.approx(final["jsd"], abs=1e-5)
    assert evaluated["self-kd-recal/seed0/accuracy"] == pytest.approx(final["accuracy"])
    bad = tmp_path / "bad"  # a bad layer fails before any training or run directory
    assert main(["distill", "--recipe", "ambiguity-selfkd", "--out", str(bad), *toy, "--set", "selfkd.layer=3"]) == 2
    assert not bad.exists()


def test_prune_toy_cli_study(tmp_path, tokenizer, monkeypatch, capsys):
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path / "home"))
    out = tmp_path / "run"
    # a tolerance of 0.9 puts the plateau at layer 1: the model is pruned to 1 of 3 layers and layer 1 self-distils
    toy = _toy(tmp_path, tokenizer, ["finetune={epochs: 2, lr: 0.001, batch_size: 16}",
                                     "probes={epochs: 5, tolerance: 0.9}",
                                     "distill={train: {epochs: 1, lr: 0.001, batch_size: 16}}"])
    assert main(["distill", "--recipe", "ambiguity-prune", "--out", str(out), *toy]) == 0
    curve = json.loads((out / "probes.json").read_text())
    assert curve["plateau"] == 1 and curve["distill_from"] == 1 and len(curve["val_accuracy"]) == 3
    results = json.loads((out / "results.json").read_text())
    assert {a: r["role"] for a, r in results["arms"].items()} == {"lower-kd": "variant", "top-kd": "kd",
                                                                  "pruned-ce": "scratch", "full-ce": "baseline",
                                                                  "full-extra": "baseline"}
    params = {a: r["cost"]["params"] for a, r in results["arms"].items()}
    assert params["lower-kd"] == params["top-kd"] == params["pruned-ce"] < params["full-ce"] == params["full-extra"]
    assert params["full-ce"] == results["teacher"]["cost"]["params"]
    # per seed: the layers kept and the parameters, the full-extra control keeping the whole teacher
    seed0 = {a: r["seeds"]["0"] for a, r in results["arms"].items()}
    assert seed0["lower-kd"]["layers"] == 1 and seed0["full-extra"]["layers"] == 3
    assert seed0["pruned-ce"]["params"] == params["pruned-ce"]
    assert ("lower-kd", "full-extra") in [(c["a"], c["b"]) for c in results["comparisons"]]
    assert [(c["a"], c["b"]) for c in results["comparisons"]][:2] == [("top-kd", "pruned-ce"), ("lower-kd", "top-kd")]
    assert (out / "lower-outputs" / "meta.json").is_file() and (out / "teacher-outputs" / "meta.json").is_file()
    reloaded = AutoModelForSequenceClassification.from_pretrained(out / "lower-kd-seed0" / "model")
    assert len(reloaded.bert.encoder.layer) == 1
    evaluated = _evaluated(out, capsys)
    ours = results["arms"]["lower-kd"]["seeds"]["0"]
    assert evaluated["lower-kd/seed0/kl"] == pytest.approx(ours["kl"], abs=1e-5)
    assert evaluated["lower-kd/seed0/accuracy"] == pytest.approx(ours["accuracy"])
    report = (out / "report.md").read_text()
    assert "## Per-layer probes" in report and (out / "plots" / "layers.png").is_file()
    assert "## Parameters per seed" in report and "| full-extra | 0 | 3 of 3 |" in report
    assert "**not pruned**" not in report
    shutil.rmtree(out / "pruned-ce-seed0" / "model")
    assert main(["eval", str(out), "--device", "cpu"]) == 2  # a missing saved model is an error, not a score
    assert "pruned-ce-seed0" in capsys.readouterr().err


def test_split_task_is_disjoint_and_seeded():
    task = tiny_task(40)
    splits = split_task(task, 20, 10, 10, seed=1)
    assert sorted(t for s in splits.values() for t in s.texts) == sorted(task.texts)
    assert split_task(task, 20, 10, 10, seed=1)["test"].texts == splits["test"].texts
    with pytest.raises(ConfigError, match="train_size"):
        split_task(task, 30, 10, 10)
    data = splits["train"].dataset(BertTokenizerFast(vocab={w: i for i, w in enumerate(VOCAB)}))
    assert set(data[0]) == {"input_ids", "attention_mask", "token_type_ids", "label", "soft_label"}
    flagged = TargetsDataset(data, torch.zeros(20, 3), [3, 5])
    assert len(flagged) == 2 and flagged[1]["lower_logits"].shape == (3,)
