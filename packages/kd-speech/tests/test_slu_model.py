"""The SLU student: a frozen speech BERT under the DS2 head, the PT-KD wrapper, the frozen text teacher, and FT-KD
training end to end on a toy token task (also through kd-core's Distiller)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from kd_core.engine import Distiller, Phase, adamw
from kd_core.errors import ConfigError
from kd_core.signals import FrozenTeacher
from kd_speech.models import SpeechVocabulary, build_speech_bert, mask_tokens, speech_bert_config
from kd_speech.slu import (
    DS2Head,
    HiddenAugment,
    PTKDModel,
    SpeechIntentModel,
    TokenSpanMask,
    TranscriptTeacher,
    ft_kd_objective,
    pt_kd_loss,
)
from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel

os.environ.setdefault("HF_HUB_OFFLINE", "1")

VOCAB = SpeechVocabulary(num_codes=12)
MOTIFS = ([1, 2, 3], [7, 8, 9])  # intent 0 and intent 1
NOISE = [0, 4, 5, 6, 10, 11]


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def speech_bert(dropout: float = 0.1, seed: int = 0) -> BertForMaskedLM:
    torch.manual_seed(seed)
    return build_speech_bert(speech_bert_config(VOCAB, hidden_size=16, num_layers=1, num_heads=2,
                                                intermediate_size=32, max_positions=64, dropout=dropout))


def small_head(classes: int = 2, seed: int = 0) -> DS2Head:
    torch.manual_seed(seed)
    return DS2Head(16, classes, conv_channels=4, lstm_hidden=16, lstm_layers=1, kernels=((3, 3), (3, 3)))


def toy_task(count: int = 32, seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Utterances of noise codes with the intent's motif somewhere inside; the batch and the labels."""
    generator = torch.Generator().manual_seed(seed)
    sequences, labels = [], []
    for index in range(count):
        label = index % 2
        noise = [NOISE[int(i)] for i in torch.randint(0, len(NOISE), (int(torch.randint(4, 12, (1,),
                                                                                       generator=generator)),),
                                                      generator=generator)]
        at = int(torch.randint(0, len(noise) + 1, (1,), generator=generator))
        sequences.append(noise[:at] + MOTIFS[label] + noise[at:])
        labels.append(label)
    input_ids, attention_mask = VOCAB.batch(sequences)
    return {"input_ids": input_ids, "attention_mask": attention_mask}, torch.tensor(labels)


def test_outputs_and_a_frozen_encoder_that_stays_in_eval_mode() -> None:
    model = SpeechIntentModel(speech_bert(), small_head()).train()
    batch, _ = toy_task(count=4)
    out = model(batch)
    assert out["logits"].shape == (4, 2) and out["cls"].shape == (4, 16)
    assert out["hidden"].shape == (4, batch["input_ids"].shape[1], 16)
    assert torch.equal(out["cls"], out["hidden"][:, 0])
    assert not model.encoder.training and model.head.training  # no dropout in the frozen encoder
    assert torch.equal(model(batch)["hidden"], out["hidden"])
    assert not out["hidden"].requires_grad and out["logits"].requires_grad
    with pytest.raises(ConfigError, match="width"):
        SpeechIntentModel(speech_bert(), DS2Head(8, 2, lstm_hidden=4, lstm_layers=1))
    with pytest.raises(ConfigError, match="input_ids"):
        model({"ids": batch["input_ids"]})


def test_an_optimizer_step_changes_the_head_and_never_the_frozen_bert() -> None:
    model = SpeechIntentModel(speech_bert(), small_head())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch, labels = toy_task(count=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    torch.nn.functional.cross_entropy(model.train()(batch)["logits"], labels).backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    optimizer.step()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in after if k.startswith("encoder."))
    assert any(not torch.equal(before[k], after[k]) for k in after if k.startswith("head."))
    unfrozen = SpeechIntentModel(speech_bert(), small_head(), freeze_encoder=False).train()
    torch.nn.functional.cross_entropy(unfrozen(batch)["logits"], labels).backward()
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in unfrozen.encoder.parameters())


def test_augmentation_acts_in_training_only() -> None:
    batch, _ = toy_task(count=4)
    plain = SpeechIntentModel(speech_bert(), small_head()).eval()
    augmented = SpeechIntentModel(speech_bert(), small_head(), token_mask=TokenSpanMask(VOCAB, seed=0),
                                  hidden_augment=HiddenAugment(seed=0)).eval()
    assert torch.equal(augmented(batch)["logits"], plain(batch)["logits"])
    hidden = augmented.train()(batch)["hidden"]
    assert bool((hidden == 0).any()) and not torch.equal(hidden, plain(batch)["hidden"])


def _encoder_calls(model: SpeechIntentModel) -> list[int]:
    rows: list[int] = []
    model.encoder.register_forward_hook(lambda module, args, kwargs, out: rows.append(kwargs["input_ids"].shape[0]),
                                        with_kwargs=True)
    return rows


def test_cached_hidden_states_equal_the_encoders_and_are_computed_once_per_utterance() -> None:
    import copy

    batch, labels = toy_task(count=8)
    plain = SpeechIntentModel(speech_bert(), small_head()).train()
    cached = SpeechIntentModel(speech_bert(), small_head(), cache_hidden=True).train()
    calls = _encoder_calls(cached)
    first = cached(batch)
    assert calls == [8]
    halves = [{k: v[rows] for k, v in batch.items()} for rows in (slice(0, 4), slice(2, 8))]
    assert [cached(half)["logits"].shape[0] for half in halves] == [4, 6] and calls == [8]  # every row known
    assert torch.allclose(first["logits"], plain(batch)["logits"], atol=1e-5)
    mask = batch["attention_mask"].bool()
    assert torch.allclose(first["hidden"][mask], plain(batch)["hidden"][mask], atol=1e-5)
    torch.nn.functional.cross_entropy(first["logits"], labels).backward()  # the head still learns through it
    assert all(p.grad is not None for p in cached.head.parameters())
    assert copy.deepcopy(cached)._hidden_cache == {} and "_hidden_cache" not in str(cached.state_dict().keys())
    masked = SpeechIntentModel(speech_bert(), small_head(), cache_hidden=True,
                               token_mask=TokenSpanMask(VOCAB, seed=0)).train()
    masked_calls = _encoder_calls(masked)
    masked(batch), masked(batch)
    assert masked_calls == [8, 8]  # masked ids are new each step: never cached in training
    masked.eval()(batch), masked(batch)
    assert masked_calls == [8, 8, 8]  # in eval the ids are the utterance's own


def test_pt_kd_model_gives_the_mlm_loss_and_the_cls_and_trains_bert_and_projector() -> None:
    bert = speech_bert(dropout=0.0)
    model = PTKDModel(bert, text_dim=8)
    batch, _ = toy_task(count=4)
    masked, labels = mask_tokens(batch["input_ids"], VOCAB, generator=torch.Generator().manual_seed(0))
    inputs = {"input_ids": masked, "attention_mask": batch["attention_mask"], "labels": labels}
    out = model(inputs)
    reference = bert(input_ids=masked, attention_mask=batch["attention_mask"], labels=labels,
                     output_hidden_states=True)
    assert torch.allclose(out["mlm_loss"], reference.loss)
    assert torch.allclose(out["cls"], reference.hidden_states[-1][:, 0])
    text_cls = torch.randn(4, 8)
    total, parts = model.loss(inputs, text_cls, kd_weight=0.5)
    assert torch.allclose(parts["pt_kd"], pt_kd_loss(out["cls"], text_cls, model.projector))
    assert torch.allclose(total, parts["mlm"] + 0.5 * parts["pt_kd"])
    total.backward()
    assert model.projector.weight.grad is not None
    assert bert.bert.embeddings.word_embeddings.weight.grad is not None
    assert PTKDModel(speech_bert(), text_dim=16).projector is None  # equal widths: no projector
    with pytest.raises(ConfigError, match="labels"):
        model.loss({"input_ids": masked}, text_cls)


def test_text_teacher_is_frozen_and_reads_the_text_fields() -> None:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=16, num_labels=3)
    classifier = BertForSequenceClassification(config)
    teacher = TranscriptTeacher(classifier, with_cls=True).train()
    text = torch.tensor([[2, 5, 6, 3], [2, 7, 3, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    out = teacher({"text_input_ids": text, "text_attention_mask": mask, "input_ids": torch.zeros(2, 3)})
    reference = classifier(input_ids=text, attention_mask=mask, output_hidden_states=True)
    assert not classifier.training and not any(p.requires_grad for p in classifier.parameters())
    assert torch.allclose(out["logits"], reference.logits) and not out["logits"].requires_grad
    assert torch.allclose(out["cls"], reference.hidden_states[-1][:, 0])
    encoder = TranscriptTeacher(BertModel(config), with_cls=True)({"text_input_ids": text})
    assert set(encoder) == {"cls"}
    with pytest.raises(ConfigError, match="text_input_ids"):
        teacher({"input_ids": text})


def test_ft_kd_from_fixed_teacher_logits_learns_the_toy_intents() -> None:
    batch, labels = toy_task(count=32)
    model = SpeechIntentModel(speech_bert(), small_head(), hidden_augment=HiddenAugment(time_p=0.2, channel_p=0.2,
                                                                                         seed=0))
    teacher_logits = 3.0 * (2.0 * torch.eye(2)[labels] - 1.0)  # a confident fixed "teacher"
    objective = ft_kd_objective()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    torch.manual_seed(0)
    model.train()
    for _ in range(40):
        result = objective(model(batch), {"logits": teacher_logits}, {"label": labels})
        optimizer.zero_grad()
        result.total.backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = float((model.eval()(batch)["logits"].argmax(-1) == labels).float().mean())
    assert accuracy >= 0.9


def test_ft_kd_runs_in_the_distiller_with_a_text_teacher(tmp_path: Path) -> None:
    batch, labels = toy_task(count=8)
    torch.manual_seed(0)
    text_model = BertForSequenceClassification(BertConfig(
        vocab_size=VOCAB.size, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
        max_position_embeddings=64, num_labels=2))
    rows = [{"input_ids": batch["input_ids"][i], "attention_mask": batch["attention_mask"][i],
             "text_input_ids": batch["input_ids"][i], "text_attention_mask": batch["attention_mask"][i],
             "label": labels[i]} for i in range(len(labels))]
    student = SpeechIntentModel(speech_bert(), small_head())
    encoder_before = {k: v.clone() for k, v in student.encoder.state_dict().items()}
    distiller = Distiller(student, [Phase("ft_kd", ft_kd_objective(), epochs=1, optimizer=adamw(1e-2))],
                          teacher=FrozenTeacher(TranscriptTeacher(text_model)), forward=lambda model, b: model(b),
                          batch_size=4, progress=False)
    distiller.fit(rows, val=rows, out=tmp_path / "run")
    assert all(torch.equal(encoder_before[k], v) for k, v in student.encoder.state_dict().items())
    assert 0.0 <= distiller.evaluate(rows)["accuracy"] <= 1.0
