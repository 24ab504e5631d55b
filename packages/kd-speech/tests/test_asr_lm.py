"""The word LM (finite sentence log-probs, training lowers perplexity, deterministic, saves) and its
distillation (≥ 4× fewer parameters, the word-level KD loss by hand), and rescoring with the trained LM."""

from __future__ import annotations

import math

import pytest
import torch
from kd_core.errors import ConfigError
from kd_speech.asr.decode import Hypothesis, NBest
from kd_speech.asr.lm import LMSize, TrainConfig, WordLM, WordVocab, fit_lm, train_lm
from kd_speech.asr.lm_distill import compare_distillation, distill_lm, student_size, word_kd_loss
from kd_speech.asr.rescore import RescoreWeights, rescore_nbest

ACTIONS = ["turn on", "turn off", "switch on", "switch off"]
OBJECTS = ["the lights", "the music", "the heating", "the lamp"]
PLACES = ["in the kitchen", "in the bedroom", "in the hall"]
CORPUS = [f"{a} {o} {p}" for a in ACTIONS for o in OBJECTS for p in PLACES] + [
    "recognize speech with a language model", "it is easy to recognize speech"]
TEACHER = LMSize(n_embd=64, n_layer=2, n_head=2, n_positions=16, dropout=0.0)
FAST = TrainConfig(epochs=6, lr=1e-2, batch_size=16, seed=0)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models train several times faster on one thread than on two contended ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(one_thread) -> tuple[WordLM, float, list[float]]:
    lm = WordLM(WordVocab.build(CORPUS), TEACHER, seed=0)
    before = lm.perplexity(CORPUS)
    history = fit_lm(lm, CORPUS, config=FAST)
    return lm, before, history


def test_vocabulary_specials_and_unknown_words() -> None:
    vocab = WordVocab.build(["b a a", "A, c!"])
    assert vocab.words == ["<pad>", "<unk>", "<s>", "</s>", "a", "b", "c"]
    assert vocab.encode("a zebra") == [2, 4, 1, 3]
    with pytest.raises(ConfigError, match="texts"):
        WordVocab.build(["", "?!"])


def test_training_lowers_perplexity_and_logprobs_are_finite(trained) -> None:
    lm, before, history = trained
    after = lm.perplexity(CORPUS)
    assert after < before / 3 and history[-1] < history[0]
    good = lm.sentence_logprob("turn on the lights in the kitchen")
    scrambled = lm.sentence_logprob("kitchen the in lights the on turn")
    assert math.isfinite(good) and math.isfinite(scrambled) and scrambled < good < 0
    assert math.isfinite(lm.sentence_logprob("zebra")) and math.isfinite(lm.sentence_logprob(""))
    batched = lm.sentence_logprobs(["turn on the lights in the kitchen", "kitchen the in lights the on turn"])
    assert batched == pytest.approx([good, scrambled], abs=1e-4)


def test_sentences_longer_than_the_context_use_a_window(trained) -> None:
    lm = trained[0]
    long = " ".join(["switch off the lamp in the hall"] * 4)  # 30 tokens, context 16
    value = lm.sentence_logprob(long)
    assert math.isfinite(value) and value < lm.sentence_logprob("switch off the lamp in the hall")
    assert lm.sentence_logprobs([long]) == pytest.approx([value])


def test_training_is_deterministic_for_a_seed(trained) -> None:
    small = LMSize(n_embd=16, n_layer=1, n_head=1, n_positions=16, dropout=0.1)
    config = TrainConfig(epochs=2, lr=1e-2, batch_size=16, seed=3)
    first, second = train_lm(CORPUS, small, config), train_lm(CORPUS, small, config)
    assert first.sentence_logprob("turn on the lamp") == second.sentence_logprob("turn on the lamp")


def test_save_and_load_round_trip(trained, tmp_path) -> None:
    lm = trained[0]
    lm.save(tmp_path / "lm")
    again = WordLM.load(tmp_path / "lm")
    assert again.vocab.words == lm.vocab.words
    assert again.sentence_logprob("turn off the music") == pytest.approx(lm.sentence_logprob("turn off the music"))


def test_trained_lm_rescoring_picks_the_fluent_hypothesis(trained) -> None:
    lm = trained[0]
    nbest = NBest((Hypothesis("wreck a nice beach with a language model", acoustic=-100.0, lm=-30.0),
                   Hypothesis("recognize speech with a language model", acoustic=-101.0, lm=-30.0)))
    assert rescore_nbest(nbest, lm.sentence_logprobs, RescoreWeights(lm_weight=0.0)).best is nbest[0]
    assert rescore_nbest(nbest, lm.sentence_logprobs, RescoreWeights(lm_weight=1.0)).best is nbest[1]


def test_word_kd_loss_by_hand() -> None:
    student = torch.tensor([[[1.0, 2.0, 0.0], [0.3, 0.3, 0.3]]])
    teacher = torch.tensor([[[0.5, 0.1, 2.0], [9.0, -9.0, 0.0]]])
    targets = torch.tensor([[1, -100]])  # the second position is padding: ignored
    alpha, t = 0.3, 2.0

    def softmax(row, temperature):
        exps = [math.exp(v / temperature) for v in row]
        return [e / sum(exps) for e in exps]

    p_t, p_s = softmax([0.5, 0.1, 2.0], t), softmax([1.0, 2.0, 0.0], t)
    kl = sum(pt * (math.log(pt) - math.log(ps)) for pt, ps in zip(p_t, p_s))
    ce = -math.log(softmax([1.0, 2.0, 0.0], 1.0)[1])
    expected = alpha * t * t * kl + (1 - alpha) * ce
    assert float(word_kd_loss(student, teacher, targets, alpha, t)) == pytest.approx(expected, rel=1e-5)
    assert float(word_kd_loss(student, teacher, targets, 0.0, t)) == pytest.approx(ce, rel=1e-5)
    with pytest.raises(ConfigError, match="alpha"):
        word_kd_loss(student, teacher, targets, 1.5, t)
    with pytest.raises(ConfigError, match="temperature"):
        word_kd_loss(student, teacher, targets, 0.5, 0.0)


def test_distilled_lm_is_four_times_smaller_and_learns(trained) -> None:
    teacher = trained[0]
    size = student_size(teacher)
    distilled, scratch, report = compare_distillation(teacher, CORPUS, CORPUS, size, alpha=0.5, temperature=2.0,
                                                      config=FAST)
    assert teacher.num_parameters() >= 4 * distilled.num_parameters()
    assert report.ratio >= 4 and report.student_parameters == scratch.num_parameters()
    untrained = WordLM(teacher.vocab, size, seed=0).perplexity(CORPUS)
    for value in (report.teacher_perplexity, report.distilled_perplexity, report.scratch_perplexity):
        assert math.isfinite(value) and value < untrained
    assert "student (KD)" in "\n".join(report.lines())


def test_distillation_refuses_a_student_that_is_too_big_or_foreign(trained) -> None:
    teacher = trained[0]
    with pytest.raises(ConfigError, match="4× fewer parameters"):
        distill_lm(teacher, CORPUS, WordLM(teacher.vocab, TEACHER), config=FAST)
    with pytest.raises(ConfigError, match="vocabulary"):
        distill_lm(teacher, CORPUS, WordLM(WordVocab.build(["a b c"]), student_size(teacher)), config=FAST)


def test_vocabulary_keeps_the_in_domain_words_whatever_their_count() -> None:
    general = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog"]
    vocab = WordVocab.build(general, min_count=2, max_size=11, keep=["Turn ON the washroom lights"])
    assert vocab.words[:4] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert vocab.words[4:9] == ["turn", "on", "the", "washroom", "lights"]  # kept first, in order
    assert vocab.words[9:] == ["a", "cat"]  # then the most frequent others (ties alphabetical) up to max_size
    assert len(WordVocab.build(general, min_count=2, max_size=6, keep=["turn on the washroom lights"])) == 9
    assert WordVocab.build(general, min_count=2, keep=["zebra"]).words[4:] == ["zebra", "the", "a", "cat", "dog", "on",
                                                                               "sat"]
    with pytest.raises(ConfigError, match="keep"):
        WordVocab.build(general, keep="one string")


def test_distiller_plumbing_lines_up_with_the_lm_loss(trained) -> None:
    from kd_speech.asr.lm import SentenceDataset, collate_sentences, cross_entropy_loss, lm_forward, token_nll

    lm = trained[0]
    texts = [*CORPUS[:5], "turn on the zebra"]
    data = SentenceDataset(lm.vocab, [*texts, "  "], split="val", max_length=16)
    assert len(data) == 6 and data[0]["split"] == "val"  # the blank line is dropped
    batch = collate_sentences([data[i] for i in range(len(data))], pad_id=lm.vocab.pad_id)
    lengths = batch["attention_mask"].sum(1)
    assert batch["label"].shape == (int((lengths - 1).sum()),) and batch["split"] == "val"
    assert batch["label"][: int(lengths[0]) - 1].tolist() == lm.vocab.encode(texts[0])[1:]
    logits = lm_forward(lm, batch)["logits"]
    assert logits.shape == (batch["label"].numel(), len(lm.vocab))
    lm.eval()
    with torch.no_grad():
        flat = torch.nn.functional.cross_entropy(logits, batch["label"])
        assert float(flat) == pytest.approx(float(cross_entropy_loss(lm, batch["input_ids"],
                                                                     batch["attention_mask"])), rel=1e-5)
    nll, tokens = token_nll(lm, [batch, collate_sentences([data[0]])])
    assert tokens == batch["label"].numel() + int(lengths[0]) - 1
    assert math.exp(nll) == pytest.approx(lm.perplexity(texts + texts[:1]), rel=1e-4)
    with pytest.raises(ConfigError, match="items"):
        collate_sentences([])
