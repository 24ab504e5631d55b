"""The speech BERT over vq tokens: vocabulary and input ids, 80/10/10 masking, masked-token loss that drops on a toy
token set, and a student that saves and reloads with ``save_pretrained`` giving the same outputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from kd_core.errors import CheckpointError, ConfigError
from kd_speech.models import (
    SpeechVocabulary,
    VqWav2Vec,
    VqWav2VecConfig,
    build_speech_bert,
    load_speech_bert,
    mask_tokens,
    pretrain_speech_bert,
    speech_bert_config,
    speech_input_ids,
)
from transformers import BertForMaskedLM

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def tiny_bert(vocab: SpeechVocabulary, dropout: float = 0.0) -> BertForMaskedLM:
    torch.manual_seed(0)
    return build_speech_bert(speech_bert_config(vocab, hidden_size=32, num_layers=2, num_heads=2,
                                                intermediate_size=64, max_positions=64, dropout=dropout))


def toy_sequences(count: int = 32, seed: int = 0) -> list[torch.Tensor]:
    """Token sequences with structure to learn: each repeats a short random motif of codes 0..11."""
    generator = torch.Generator().manual_seed(seed)
    sequences = []
    for _ in range(count):
        motif = torch.randint(0, 12, (int(torch.randint(2, 4, (1,), generator=generator)),), generator=generator)
        sequences.append(motif.repeat(8)[: int(torch.randint(12, 24, (1,), generator=generator))])
    return sequences


def test_input_ids_start_with_cls_and_shift_the_codes() -> None:
    vocab = SpeechVocabulary(num_codes=10)
    assert vocab.size == 15
    ids = vocab.encode(torch.tensor([0, 9, 3]))
    assert ids.tolist() == [vocab.CLS, 5, 14, 8, vocab.SEP]
    assert vocab.decode(ids).tolist() == [0, 9, 3]
    assert vocab.encode([1, 2, 3, 4], max_length=4).tolist() == [vocab.CLS, 6, 7, vocab.SEP]
    input_ids, mask = vocab.batch([[1, 2, 3], [4]])
    assert input_ids.tolist() == [[2, 6, 7, 8, 3], [2, 9, 3, 0, 0]] and mask.tolist() == [[1] * 5, [1, 1, 1, 0, 0]]
    with pytest.raises(ConfigError, match="tokens"):
        vocab.encode([10])


def test_a_compact_vocabulary_keeps_the_seen_codes() -> None:
    vocab = SpeechVocabulary.from_sequences([[500, 7, 7], torch.tensor([90000])], num_codes=320**2)
    assert vocab.codes == (7, 500, 90000) and vocab.size == 8
    assert vocab.encode([7, 90000, 12]).tolist() == [vocab.CLS, 5, 7, vocab.UNK, vocab.SEP]
    assert vocab.decode(torch.tensor([2, 5, 7, 1, 3])).tolist() == [7, 90000, -1]


def test_masking_is_80_10_10_on_codes_only() -> None:
    vocab = SpeechVocabulary(num_codes=50)
    input_ids, _ = vocab.batch([torch.randint(0, 50, (198,), generator=torch.Generator().manual_seed(i))
                                for i in range(100)])
    masked, labels = mask_tokens(input_ids, vocab, generator=torch.Generator().manual_seed(0))
    chosen = labels != -100
    assert torch.equal(labels[chosen], input_ids[chosen])
    assert not chosen[input_ids < vocab.NUM_SPECIAL].any()  # [CLS], [SEP] and padding are never chosen
    assert torch.equal(masked[~chosen], input_ids[~chosen])
    count = int(chosen.sum())
    assert abs(count / (100 * 198) - 0.15) < 0.01
    as_mask = int((masked[chosen] == vocab.MASK).sum()) / count
    kept = int((masked[chosen] == input_ids[chosen]).sum()) / count
    assert abs(as_mask - 0.8) < 0.03 and abs(kept - 0.1 - 0.1 / 50) < 0.03  # a random code may be the same code
    assert (masked[chosen] >= vocab.NUM_SPECIAL).logical_or(masked[chosen] == vocab.MASK).all()
    # a short sequence still gets one prediction
    _, short_labels = mask_tokens(vocab.batch([[3]])[0], vocab, generator=torch.Generator().manual_seed(0))
    assert int((short_labels != -100).sum()) == 1


def test_speech_bert_saves_and_reloads_with_save_pretrained(tmp_path: Path) -> None:
    vocab = SpeechVocabulary.from_sequences(toy_sequences(), num_codes=256)
    model = tiny_bert(vocab, dropout=0.1)
    pretrain_speech_bert(model, toy_sequences(), vocab, steps=2, batch_size=8)  # weights that differ from init
    model.eval()
    input_ids, mask = vocab.batch(toy_sequences(4, seed=1))
    with torch.no_grad():
        before = model(input_ids=input_ids, attention_mask=mask).logits
    model.save_pretrained(tmp_path / "speech-bert")
    reloaded, reloaded_vocab = load_speech_bert(tmp_path / "speech-bert")
    assert reloaded_vocab == vocab and reloaded.config.vocab_size == vocab.size
    reloaded.eval()
    with torch.no_grad():
        after = reloaded(input_ids=input_ids, attention_mask=mask).logits
    assert torch.equal(before, after)
    with pytest.raises(CheckpointError, match=r"config\.json"):
        load_speech_bert(tmp_path / "nothing-here")


def test_masked_token_loss_drops_on_a_toy_token_set() -> None:
    vocab = SpeechVocabulary(num_codes=12)
    model = tiny_bert(vocab)
    before = torch.random.get_rng_state()
    losses = pretrain_speech_bert(model, toy_sequences(), vocab, steps=60, lr=3e-3, batch_size=16, seed=0)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert len(losses) == 60
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert first > 2.0  # about log(17) at the start
    assert last < 0.8 * first, (first, last)  # 0.64-0.69 over seeds 0-3


def test_vq_tokens_feed_the_bert() -> None:
    torch.manual_seed(0)
    vq = VqWav2Vec(VqWav2VecConfig.tiny())
    vocab = SpeechVocabulary(num_codes=vq.num_tokens)
    waves = [torch.randn(8000), torch.randn(6000)]
    input_ids, mask = speech_input_ids(vq, waves, vocab)
    frames = vq.num_frames(8000)
    assert input_ids.shape == (2, frames + 2) and input_ids[:, 0].tolist() == [vocab.CLS, vocab.CLS]
    assert int(mask[1].sum()) == vq.num_frames(6000) + 2
    assert torch.equal(vocab.decode(input_ids[0]), vq.tokens(waves[0]))
    model = tiny_bert(vocab)
    assert model(input_ids=input_ids, attention_mask=mask).logits.shape == (2, frames + 2, vocab.size)
    with pytest.raises(ConfigError, match="vocab"):
        speech_input_ids(vq, waves, SpeechVocabulary(num_codes=16))


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"hidden_size": 30, "num_heads": 4}, "hidden_size"),
    ({"num_layers": 0}, "num_layers"),
    ({"dropout": 1.5}, "dropout"),
])
def test_bad_bert_config_is_a_config_error(kwargs: dict, argument: str) -> None:
    with pytest.raises(ConfigError) as error:
        speech_bert_config(SpeechVocabulary(num_codes=8), **kwargs)
    assert error.value.argument == argument
