"""TinyBERT: the layer map, hand-computed losses, attention taps, training through Distiller, save/reload, bad input,
and toy-size CLI studies (tinybert-task on glosses and on a CSV with an hf:DIR teacher, tinybert-general)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from kd_core import Backend, Distiller, FrozenTeacher, Phase, adamw
from kd_core.errors import ConfigError, KDError
from kd_core.taps import TapSet
from kd_core.transformer_losses import attention_scores
from kd_nlu.data.text import TextCollator, TextDataset, encoder_forward
from kd_nlu.models.student import build_student, load_student, save_student, student_config
from kd_nlu.tinybert.augment import EmbeddingNeighbours, augment
from kd_nlu.tinybert.layers import check_layer_map, encoder_layout, uniform_layer_map
from kd_nlu.tinybert.objectives import (
    check_tokenizers,
    hidden_forward,
    intermediate_objective,
    mapped_forward,
    objective_values,
    prediction_objective,
)
from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast

os.environ.setdefault("HF_HUB_OFFLINE", "1")
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "cat", "sat", "on", "the", "mat", "dog", "ran",
         "to", "big", "red", "ball", "small", "house", "tree"]


@pytest.fixture
def tokenizer() -> BertTokenizerFast:
    return BertTokenizerFast(vocab={w: i for i, w in enumerate(WORDS)})


def tiny_teacher(head: bool = True, layers: int = 4, hidden: int = 32) -> torch.nn.Module:
    torch.manual_seed(1)
    config = BertConfig(vocab_size=len(WORDS), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32, num_labels=3,
                        attn_implementation="eager", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForSequenceClassification(config) if head else BertModel(config)


def tiny_student(teacher: torch.nn.Module, head: bool = True, layers: int = 2, hidden: int = 16) -> torch.nn.Module:
    torch.manual_seed(2)
    config = student_config(teacher.config, layers=layers, hidden=hidden, intermediate=32,
                            num_labels=3 if head else None, dropout=0.0)
    return build_student(config, head=head)


def fit(model, phases, data, teacher, out: Path, forward=encoder_forward, val=None):
    """Train through kd-core's Distiller, as the study arms do."""
    distiller = Distiller(model, phases, teacher=FrozenTeacher(teacher), backend=Backend(device="cpu"), batch_size=16,
                          seed=0, forward=forward, collate=TextCollator(0))
    distiller.fit(data, val, out=out, config={})
    return distiller.student


def texts(n: int = 24) -> tuple[list[str], list[int]]:
    g = torch.Generator().manual_seed(0)
    words = WORDS[5:]
    out, labels = [], []
    for i in range(n):
        length = 3 + int(torch.randint(0, 5, (1,), generator=g))
        out.append(" ".join(words[int(j)] for j in torch.randint(0, len(words), (length,), generator=g)))
        labels.append(i % 3)
    return out, labels


# -- the layer map ---------------------------------------------------------------------------------
def test_uniform_layer_map_is_m_times_n_over_m() -> None:
    assert uniform_layer_map(4, 12) == [3, 6, 9, 12]  # TinyBERT4 from BERT-base
    assert uniform_layer_map(2, 4) == [2, 4]
    assert uniform_layer_map(3, 3) == [1, 2, 3]
    assert uniform_layer_map(4, 6) == [2, 3, 5, 6]  # not divisible: rounded up, last layer to last layer
    assert check_layer_map([1, 4], 2, 4) == [1, 4]


@pytest.mark.parametrize("bad", [[0, 4], [1, 5], [1, 2, 3], [1, "x"]])
def test_layer_map_out_of_range_names_layer_map(bad) -> None:
    with pytest.raises(ConfigError, match="layer_map"):
        check_layer_map(bad, 2, 4)


def test_layout_paths_come_from_the_model(tokenizer) -> None:
    with_head, base = encoder_layout(tiny_teacher()), encoder_layout(tiny_teacher(head=False))
    assert with_head.layer_tap(0) == "bert.embeddings" and base.layer_tap(0) == "embeddings"
    assert with_head.layer_tap(4) == "bert.encoder.layer.3"
    assert base.attention_tap(2) == "in:encoder.layer.1.attention.self"


# -- hand-computed loss values ---------------------------------------------------------------------
def test_embedding_and_hidden_losses_by_hand() -> None:
    teacher, student = tiny_teacher(layers=2, hidden=4), tiny_student(tiny_teacher(layers=2, hidden=4), hidden=4)
    objective = intermediate_objective(student, teacher, projection=False, parts=["embeddings", "hidden"])
    s = torch.tensor([[[1.0, 2.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0]]])  # [B=1, L=2, D=4]
    t = torch.tensor([[[0.0, 2.0, 0.0, 1.0], [9.0, 9.0, 9.0, 9.0]]])
    emb = objective.terms[0]
    # unmasked: squared errors 1 + 1 on token 0, 36 + 81 + 81 + 81 on token 1 -> 281 / 8
    assert emb.loss(s, t).item() == pytest.approx(281 / 8)
    # token 1 is padding: (1 + 1) / 4
    assert emb.loss(s, t, mask=torch.tensor([[1, 0]])).item() == pytest.approx(0.5)


def test_projection_is_applied_and_shared() -> None:
    teacher = tiny_teacher(layers=2, hidden=4)
    student = tiny_student(teacher, hidden=2)
    objective = intermediate_objective(student, teacher, parts=["embeddings", "hidden"])
    projection = objective.terms[0].loss.projection
    with torch.no_grad():
        projection.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]))
        projection.bias.zero_()
    s, t = torch.tensor([[[1.0, 2.0]]]), torch.tensor([[[1.0, 2.0, 0.0, 0.0]]])  # projected: [1, 2, 3, 0]
    for term in objective.terms:
        assert term.loss(s, t).item() == pytest.approx(9 / 4)


def test_attention_loss_on_pre_softmax_scores_by_hand() -> None:
    from kd_core.transformer_losses import attention_score_mse

    s = torch.tensor([[[[1.0, 2.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]]])  # [B=1, H=2, L=2, L=2]
    t = torch.tensor([[[[1.0, 0.0], [2.0, 1.0]], [[1.0, 1.0], [5.0, 5.0]]]])
    # head 0: (0 + 4 + 4 + 0) / 4 = 2; head 1: (1 + 1 + 25 + 25) / 4 = 13; mean over heads 7.5
    assert attention_score_mse(s, t).item() == pytest.approx(7.5)
    # token 1 padded: only pair (0, 0) stays: head 0 -> 0, head 1 -> 1; mean 0.5
    assert attention_score_mse(s, t, mask=torch.tensor([[1, 0]])).item() == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="average_heads"):
        attention_score_mse(s[:, :1], t)
    # averaged heads: s̄ = [[.5, 1], [0, .5]], t̄ = [[1, .5], [3.5, 3]] -> (.25 + .25 + 12.25 + 6.25) / 4
    assert attention_score_mse(s[:, :1].repeat(1, 1, 1, 1), t, average_heads=True).item() == pytest.approx(
        ((1 - 1) ** 2 + (2 - 0.5) ** 2 + (0 - 3.5) ** 2 + (1 - 3) ** 2) / 4)


def test_prediction_loss_is_soft_cross_entropy_at_t() -> None:
    s, t = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 2.0, 0.0]])
    got = prediction_objective(temperature=2.0)({"logits": s}, {"logits": t}, {}).total
    p_t = torch.softmax(t / 2, -1)
    assert got.item() == pytest.approx(float(-(p_t * torch.log_softmax(s / 2, -1)).sum()))


# -- attention taps on a tiny eager BERT ---------------------------------------------------------------
def test_attention_taps_shapes_and_scores_are_pre_softmax(tokenizer) -> None:
    model = tiny_teacher().eval()
    layout = encoder_layout(model)
    data = TextDataset(["a cat sat on the mat", "the dog"], [0, 1], tokenizer)
    batch = TextCollator(0)([data[0], data[1]])
    taps = TapSet(model, [f"attn:{layout.attention[1]}", layout.attention_tap(2), layout.layer_tap(2)])
    out = taps.run(encoder_forward, model, batch)
    weights, hidden = out[f"attn:{layout.attention[1]}"], out[layout.attention_tap(2)]
    assert weights.shape == (2, 2, 8, 8) and out[layout.layer_tap(2)].shape == (2, 8, 32)
    module = dict(model.named_modules())[layout.attention[1]]
    scores = attention_scores(module, hidden)
    assert scores.shape == (2, 2, 8, 8)
    # the recomputed scores are the pre-softmax ones: softmax(scores + padding mask) is what the model used
    additive = (1.0 - batch["attention_mask"][:, None, None, :].float()) * torch.finfo(torch.float32).min
    assert torch.allclose(torch.softmax(scores + additive, -1), weights, atol=1e-6)
    assert not torch.allclose(scores[0], weights[0])


# -- training through Distiller ------------------------------------------------------------------------
def test_projection_is_trained_with_the_student() -> None:
    teacher = tiny_teacher()
    student = tiny_student(teacher)
    objective = intermediate_objective(student, teacher)
    params = list(objective.parameters())
    assert len(params) == 2 and params[0].shape == (32, 16)  # one W_h (+ bias) shared by every feature term
    assert not {id(p) for p in params} & {id(p) for p in student.parameters()}


def test_general_then_task_run_reduces_intermediate_loss(tokenizer, tmp_path: Path) -> None:
    words, labels = texts(48)
    train = TextDataset(words, labels, tokenizer, max_length=16)
    batches = [TextCollator(0)([train[i] for i in range(j, j + 16)]) for j in range(0, 48, 16)]
    # general: base encoders, no labels, last hidden state as the "logits"
    t_base, s_base = tiny_teacher(head=False), tiny_student(tiny_teacher(head=False), head=False)
    general = intermediate_objective(s_base, t_base)
    before = objective_values(general, s_base, t_base, batches)
    s_base = fit(s_base, [Phase("general", general, epochs=4, optimizer=adamw(5e-3))],
                 TextDataset(words, None, tokenizer, 16), t_base, tmp_path / "general", forward=hidden_forward)
    after = objective_values(general, s_base, t_base, batches)
    assert after["total"] < 0.7 * before["total"]
    assert all(after[k] < before[k] for k in before if k.startswith("attn"))
    # task: a classifier student that starts from the general one, intermediate then prediction phase
    save_student(s_base, tmp_path / "general-student")
    student = load_student(tmp_path / "general-student", num_labels=3)
    teacher = tiny_teacher()
    layers = intermediate_objective(student, teacher)
    pred = prediction_objective()
    task_before = objective_values(layers, student, teacher, batches)
    pred_before = objective_values(pred, student, teacher, batches, forward=encoder_forward)
    student = fit(student, [Phase("intermediate", layers, epochs=3, optimizer=adamw(3e-3)),
                            Phase("prediction", pred, epochs=3, optimizer=adamw(3e-3))],
                  train, teacher, tmp_path / "task", val=train)
    assert objective_values(layers, student, teacher, batches)["total"] < task_before["total"]
    assert objective_values(pred, student, teacher, batches, encoder_forward)["total"] < pred_before["total"]


def test_save_reload_gives_identical_logits(tokenizer, tmp_path: Path) -> None:
    student = tiny_student(tiny_teacher()).eval()
    data = TextDataset(["a big red ball", "the cat"], [0, 1], tokenizer)
    batch = TextCollator(0)([data[0], data[1]])
    save_student(student, tmp_path / "s")
    reloaded = load_student(tmp_path / "s", num_labels=3).eval()
    assert type(reloaded).__name__ == "BertForSequenceClassification"
    with torch.no_grad():
        assert torch.equal(encoder_forward(student, batch).logits, encoder_forward(reloaded, batch).logits)
    base = load_student(tmp_path / "s")
    assert type(base).__name__ == "BertModel"
    with pytest.raises(KDError, match="student"):
        load_student(tmp_path / "missing")


# -- bad input -------------------------------------------------------------------------------------------
def test_width_mismatch_without_projection_is_an_error() -> None:
    teacher = tiny_teacher()
    with pytest.raises(ConfigError, match="projection"):
        intermediate_objective(tiny_student(teacher, hidden=16), teacher, projection=False)
    with pytest.raises(ConfigError, match="layer_map"):
        intermediate_objective(tiny_student(teacher), teacher, layer_map=[2, 5])


def test_tokenizers_that_differ_are_an_error_unless_mapped(tokenizer) -> None:
    assert check_tokenizers(tokenizer, tokenizer) is None
    other = BertTokenizerFast(vocab={w: i for i, w in enumerate([*WORDS[:5], "hello", *WORDS[5:]])})
    with pytest.raises(KDError, match="student_tokenizer"):
        check_tokenizers(tokenizer, other)
    vocab_t, vocab_s = tokenizer.get_vocab(), other.get_vocab()
    token_map = {i: vocab_t.get(w, vocab_t["[UNK]"]) for w, i in vocab_s.items()}
    lookup = check_tokenizers(tokenizer, other, token_map)
    seen = {}
    forward = mapped_forward(lookup, lambda m, b: seen.setdefault("ids", b["input_ids"]))
    forward(None, {"input_ids": torch.tensor([[2, 5, 6, 3]])})  # [CLS] hello a [SEP] in the student's ids
    assert seen["ids"].tolist() == [[2, 1, 5, 3]]
    with pytest.raises(KDError, match="token_map"):
        check_tokenizers(tokenizer, other, {0: 0})


# -- augmentation ----------------------------------------------------------------------------------------
def test_augmentation_replaces_words_with_embedding_neighbours(tokenizer) -> None:
    embeddings = torch.zeros(len(WORDS), 3)
    embeddings[WORDS.index("cat")] = torch.tensor([1.0, 0.0, 0.0])
    embeddings[WORDS.index("dog")] = torch.tensor([0.9, 0.1, 0.0])
    embeddings[WORDS.index("tree")] = torch.tensor([0.0, 1.0, 0.0])
    neighbours = EmbeddingNeighbours(embeddings, tokenizer, top_m=1)
    assert neighbours("cat") == ["dog"]
    out, labels = augment(["the cat sat", "a tree"], [0, 1], neighbours, copies=3, p=1.0, seed=0)
    assert len(out) == 8 and labels == [0, 1, 0, 0, 0, 1, 1, 1]
    assert [t.split()[1] for t in out[2:5]] == ["dog"] * 3  # "cat" always becomes its one neighbour
    assert augment(["the cat sat"], [0], neighbours, copies=2, p=0.0)[0] == ["the cat sat"] * 3
    with pytest.raises(ConfigError, match="copies"):
        augment(["a"], [0], neighbours, copies=-1)


def test_svd_embeddings_are_the_teachers_projected_onto_its_top_directions() -> None:
    from kd_nlu.models.student import init_embeddings_from_teacher

    teacher = tiny_teacher()
    student = tiny_student(teacher)
    kept = init_embeddings_from_teacher(student, teacher)["energy_kept"]
    t_words = teacher.get_input_embeddings().weight.detach().double()
    s_words = student.get_input_embeddings().weight.detach().double()
    width = s_words.shape[1]
    u, s, _ = torch.linalg.svd(t_words, full_matrices=False)
    # E_t V_h = U_h S_h up to the sign of each singular direction
    assert torch.allclose(s_words.abs(), (u[:, :width] * s[:width]).abs(), atol=1e-5)
    assert kept == pytest.approx(float((s[:width] ** 2).sum() / (s ** 2).sum()))
    # token inner products are the teacher's up to the dropped directions: the error is theirs, by hand
    gram_error = (s_words @ s_words.T - t_words @ t_words.T).norm() / (t_words @ t_words.T).norm()
    assert float(gram_error) == pytest.approx(float(((s[width:] ** 4).sum() / (s ** 4).sum()).sqrt()), rel=1e-4)
    t_pos = teacher.bert.embeddings.position_embeddings.weight.detach().double()
    s_pos = student.bert.embeddings.position_embeddings.weight.detach().double()
    assert s_pos.shape[1] == width and torch.linalg.matrix_rank(s_pos) <= width
    assert not torch.allclose(s_pos, torch.zeros_like(s_pos)) and t_pos.shape[0] == s_pos.shape[0]


def test_svd_embeddings_refuse_a_student_wider_than_the_teacher() -> None:
    from kd_core.errors import ConfigError
    from kd_nlu.models.student import init_embeddings_from_teacher

    teacher = tiny_student(tiny_teacher())  # the narrow one as "teacher"
    with pytest.raises(ConfigError, match=r"student\.hidden"):
        init_embeddings_from_teacher(tiny_teacher(), teacher)


# -- the studies, from the CLI, at toy size ---------------------------------------------------------------
TOPICS = {"animal": ["cat", "dog", "horse", "bird", "fish", "cow"], "money": ["bank", "price", "market", "tax", "cash",
                                                                            "loan"],
          "weather": ["rain", "snow", "wind", "storm", "cloud", "sun"]}
ARMS = {"tinybert": "variant", "kd": "kd", "scratch": "scratch", "intermediate-then-ce": "baseline"}
PAIRS = [["kd", "scratch"], ["tinybert", "kd"], ["tinybert", "scratch"], ["tinybert", "intermediate-then-ce"],
         ["intermediate-then-ce", "scratch"]]
TOY = ["seeds=[0]", "student.model=small", "student.layers=1", "student.hidden=32", "student.intermediate=64",
       "student.epochs=2", "student.batch_size=8", "intermediate.epochs=1", "augment.copies=1"]


def distill(recipe: str, out: Path, *overrides: str) -> int:
    from kd_nlu.cli import main

    return main(["distill", "--recipe", recipe, "--device", "cpu", "--out", str(out),
                 *[a for o in overrides for a in ("--set", o)]])


@pytest.fixture(scope="module")
def hf_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer BERT classifier (hidden 64, 4 heads) over the topics, saved with MiniLM's tokenizer."""
    from kd_nlu.models.teacher import load_tokenizer, minilm_path
    from transformers import AutoConfig

    folder = tmp_path_factory.mktemp("hf") / "teacher"
    base = AutoConfig.from_pretrained(str(minilm_path()), local_files_only=True)
    torch.manual_seed(0)
    config = student_config(base, layers=2, hidden=64, intermediate=128, heads=4, num_labels=3, dropout=0.0)
    config.id2label = dict(enumerate(sorted(TOPICS)))
    config.label2id = {n: i for i, n in config.id2label.items()}
    BertForSequenceClassification(config).save_pretrained(folder)
    load_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """36 rows of a three-topic CSV (text in `sentence`, label in `topic`)."""
    rows = [f'"the {w} and the {ws[(k + 2) % 6]} were {["near", "far", "here"][k % 3]}",{topic}'
            for topic, ws in TOPICS.items() for k, w in enumerate(ws * 2)]
    path = tmp_path_factory.mktemp("csv") / "topics.csv"
    path.write_text("sentence,topic\n" + "\n".join(rows) + "\n")
    return path


def csv_task(table: Path) -> list[str]:
    return [f"data.source=csv:{table}", "data.text_column=sentence", "data.label_column=topic",
            "data.max_length=16", "data.val_fraction=0.2", "data.test_fraction=0.2"]


def records(run: Path, arm: str) -> list[dict]:
    return [json.loads(line) for line in (run / f"{arm}-seed0" / "metrics.jsonl").read_text().splitlines()]


def test_tinybert_task_on_glosses_from_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default recipe at toy size: MiniLM fine-tuned here, four arms, their comparisons, students saved."""
    from kd_nlu.models.teacher import MINILM_MODULE

    pytest.importorskip(MINILM_MODULE)
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path / "home"))
    run = tmp_path / "run"
    assert distill("tinybert-task", run, *TOY, "student.hidden=24", "student.intermediate=48",  # 12 heads
                   "data.gloss_classes=3", "data.train_size=24", "data.val_size=9", "data.test_size=9",
                   "data.max_length=16", "teacher.epochs=1", "teacher.batch_size=8") == 0
    results = json.loads((run / "results.json").read_text())
    assert {k: v["role"] for k, v in results["arms"].items()} == ARMS
    assert [[c["a"], c["b"]] for c in results["comparisons"]] == PAIRS
    assert "trained in this run" in results["teacher"]["source"] and results["task"]["sizes"]["train"] == 24
    # MiniLM has 6 layers: the 1-layer student learns from the last, g(1) = 6
    losses = json.loads((run / "tinybert-seed0" / "layer_losses.json").read_text())
    assert losses["layer_map"] == [6] and set(losses["after"]) == {"total", "emb", "attn.1", "hidden.1"}
    saved = json.loads((run / "kd-seed0" / "model" / "config.json").read_text())
    assert saved["num_hidden_layers"] == 1 and len(saved["id2label"]) == 3
    assert "Plain KD against scratch" in (run / "report.md").read_text()


def test_tinybert_task_on_a_csv_with_an_hf_teacher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   hf_teacher: Path, table: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Your own CSV and Hugging Face teacher: used as it is; each arm trains what it says; eval re-scores."""
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path / "home"))
    run = tmp_path / "run"
    assert distill("tinybert-task", run, *TOY, *csv_task(table), f"teacher.model=hf:{hf_teacher}") == 0
    results = json.loads((run / "results.json").read_text())
    assert "given with its weights" in results["teacher"]["source"]
    assert {k: v["role"] for k, v in results["arms"].items()} == ARMS
    assert [[c["a"], c["b"]] for c in results["comparisons"]] == PAIRS
    assert results["task"]["sizes"] == {"train": 24, "val": 6, "test": 6}  # 12 rows a class: 8, 2, 2
    # the phases: tinybert distils the layers (teacher layer 2 for the 1-layer student), then the logits
    losses = json.loads((run / "tinybert-seed0" / "layer_losses.json").read_text())
    assert losses["layer_map"] == [2] and losses["after"]["total"] != losses["before"]["total"]
    terms = {arm: [{k for r in records(run, arm) if r.get("phase") == p for k in r if k.startswith("loss/")}
                   for p in (0, 1)] for arm in ARMS}
    assert terms["tinybert"][0] >= {"loss/emb", "loss/attn.1", "loss/hidden.1"}
    assert "loss/pred" in terms["tinybert"][1]
    assert terms["kd"] == [{"loss/total", "loss/pred"}, set()]
    assert terms["scratch"] == [{"loss/total", "loss/ce"}, set()]
    assert "loss/ce" in terms["intermediate-then-ce"][1] and "loss/attn.1" in terms["intermediate-then-ce"][0]
    assert not (run / "kd-seed0" / "layer_losses.json").exists()
    # every arm saw the same augmented texts: 24 rows + 1 copy each, at batch 8 -> 6 steps per epoch
    assert max(r["step"] for r in records(run, "scratch") if "step" in r) == 2 * 6
    config = json.loads((run / "tinybert-seed0" / "model" / "config.json").read_text())
    assert config["id2label"] == {"0": "animal", "1": "money", "2": "weather"}
    assert (run / "tinybert-seed0" / "model" / "tokenizer.json").is_file()  # a folder AutoTokenizer loads too
    # eval reloads every student from its checkpoint and scores it as the study did
    from kd_nlu.cli import main

    capsys.readouterr()
    assert main(["eval", str(run), "--device", "cpu"]) == 0
    scores = dict(line.split(": ") for line in capsys.readouterr().out.strip().splitlines())
    for arm in ARMS:
        assert float(scores[f"{arm}/seed0/accuracy"]) == pytest.approx(results["arms"][arm]["seeds"]["0"]["accuracy"])


def test_general_student_saved_with_save_pretrained_starts_a_task_study(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        hf_teacher: Path, table: Path) -> None:
    """tinybert-general on a text file lowers the held-out attention MSE; its student starts tinybert-task."""
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path / "home"))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"the {a} saw the {b} in the {c}" for a in TOPICS["animal"]
                                for b in TOPICS["weather"] for c in ("rain", "bank")) + "\n")
    general = tmp_path / "general"
    assert distill("tinybert-general", general, f"data.text_file={corpus}", "data.held_out=16", "data.max_length=16",
                   f"teacher.model=hf:{hf_teacher}", "student.layers=1", "student.hidden=32",
                   "student.intermediate=64", "student.epochs=3", "student.lr=0.005", "student.batch_size=8") == 0
    results = json.loads((general / "results.json").read_text())
    assert results["task"]["sizes"] == {"train": 56, "val": 8, "test": 8}
    assert results["task"]["headline"] == "attention_mse" and not results["task"]["higher_is_better"]
    teacher = results["teacher"]["test"]
    assert teacher["attention_mse"] == 0 and teacher["hidden_cka"] == pytest.approx(1)
    losses = json.loads((general / "general-seed0" / "layer_losses.json").read_text())
    assert losses["layer_map"] == [2] and losses["after"]["total"] < losses["before"]["total"]
    saved = general / "general-seed0" / "model"
    assert (saved / "tokenizer.json").is_file() and (saved / "model.safetensors").is_file()
    task = tmp_path / "task"
    assert distill("tinybert-task", task, *TOY, *csv_task(table), f"teacher.model=hf:{hf_teacher}",
                   f"student.model=hf:{saved}", "arms=[tinybert,kd]") == 0
    from safetensors.torch import load_file

    start = load_file(saved / "model.safetensors")
    key = "embeddings.word_embeddings.weight"
    # the study's student is the general one with a new head: the same embeddings before training
    from kd_nlu.tasks import TextData, TextModel, text_task

    student = text_task(TextData(source=f"csv:{table}", text_column="sentence", label_column="topic"),
                        TextModel(model=f"hf:{hf_teacher}"), TextModel(model=f"hf:{saved}")).student(0)
    assert torch.equal(student.bert.embeddings.word_embeddings.weight, start[key])
    assert set(json.loads((task / "results.json").read_text())["arms"]) == {"tinybert", "kd"}


def test_linear_cka_by_hand() -> None:
    from kd_nlu.tinybert.evaluation import linear_cka

    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=g)
    rotation, _ = torch.linalg.qr(torch.randn(6, 6, generator=g))
    assert linear_cka(x, 3 * x @ rotation) == pytest.approx(1.0)
    assert linear_cka(x, torch.cat([x, torch.zeros(200, 2)], 1)) == pytest.approx(1.0)  # across widths
    y = torch.tensor([[1.0], [2.0], [3.0]])
    # centred x = [-1, 0, 1], y' = [1, 0, 1] - 2/3 -> orthogonal to x: CKA 0
    assert linear_cka(y, torch.tensor([[1.0], [0.0], [1.0]])) == pytest.approx(0.0, abs=1e-12)


def test_bad_recipes_are_one_line_errors(tmp_path: Path, hf_teacher: Path, table: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert distill("tinybert-task", tmp_path / "a", *TOY, "intermediate.epochs=2") == 2
    assert "intermediate.epochs" in capsys.readouterr().err
    assert distill("tinybert-task", tmp_path / "b", *TOY, "arms=[kd,scratch]") == 2
    assert "tinybert" in capsys.readouterr().err
    other = tmp_path / "other"  # a student over another vocabulary
    tiny_teacher().save_pretrained(other)
    assert distill("tinybert-task", tmp_path / "c", *TOY, *csv_task(table), f"teacher.model=hf:{hf_teacher}",
                   f"student.model=hf:{other}") == 2
    assert "student.model" in capsys.readouterr().err and not (tmp_path / "c").exists()
