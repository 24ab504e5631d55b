"""Span masking of vq tokens and time/channel masking of hidden states: what is masked, how much, determinism."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from kd_core.errors import ConfigError
from kd_speech.models import SpeechVocabulary
from kd_speech.slu import HiddenAugment, TokenSpanMask, channel_mask, span_cover, span_mask_tokens, time_mask


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def runs(mask: torch.Tensor) -> list[int]:
    """Lengths of the maximal runs of True in a 1-D mask."""
    lengths, current = [], 0
    for value in [*mask.tolist(), False]:
        if value:
            current += 1
        elif current:
            lengths.append(current)
            current = 0
    return lengths


def token_batch(count: int = 200, seed: int = 0) -> tuple[SpeechVocabulary, torch.Tensor, torch.Tensor]:
    vocab = SpeechVocabulary(num_codes=20)
    generator = torch.Generator().manual_seed(seed)
    sequences = [torch.randint(0, 20, (int(torch.randint(2, 80, (1,), generator=generator)),), generator=generator)
                 for _ in range(count)]
    return (vocab, *vocab.batch(sequences))


def test_span_cover_places_non_overlapping_spans_covering_about_p() -> None:
    generator = torch.Generator().manual_seed(0)
    covers = [span_cover(n, 0.5, 10, generator) for n in range(10, 200)]
    assert all(sum(runs(c)) % 10 == 0 and all(r % 10 == 0 for r in runs(c)) for c in covers)
    fraction = sum(int(c.sum()) for c in covers) / sum(len(c) for c in covers)
    assert abs(fraction - 0.5) < 0.03
    short = [int(span_cover(3, 0.5, 10, generator).sum()) for _ in range(200)]
    assert set(short) == {0, 3} and abs(sum(short) / 600 - 0.5) < 0.1  # one span of the whole sequence, or none


def test_span_masking_never_touches_cls_or_special_tokens_and_masks_a_fifth_in_runs_of_five() -> None:
    vocab, input_ids, attention_mask = token_batch()
    masked, where = span_mask_tokens(input_ids, vocab, generator=torch.Generator().manual_seed(1))
    assert torch.equal(masked[~where], input_ids[~where]) and bool((masked[where] == vocab.MASK).all())
    assert not bool(where[:, 0].any())
    assert bool((input_ids[where] >= vocab.NUM_SPECIAL).all())  # codes only: no [CLS], [SEP], [PAD]
    assert not bool(where[attention_mask == 0].any())
    codes = input_ids >= vocab.NUM_SPECIAL
    fraction = int(where.sum()) / int(codes.sum())
    assert abs(fraction - 0.2) < 0.02
    for row in range(len(input_ids)):
        if int(codes[row].sum()) >= 5:
            assert all(r % 5 == 0 for r in runs(where[row]))  # spans of 5 (adjacent ones merge into 10, 15...)
    inner = torch.tensor([[vocab.CLS, *range(5, 15), vocab.UNK, *range(5, 15), vocab.SEP, vocab.PAD]] * 50)
    masked, where = span_mask_tokens(inner, vocab, generator=torch.Generator().manual_seed(2))
    assert bool(where.any()) and bool((masked[:, 11] == vocab.UNK).all())  # a special id inside is skipped


def test_span_masking_is_deterministic_per_generator_and_off_when_disabled() -> None:
    vocab, input_ids, _ = token_batch(count=20)
    first = span_mask_tokens(input_ids, vocab, generator=torch.Generator().manual_seed(3))[0]
    again = span_mask_tokens(input_ids, vocab, generator=torch.Generator().manual_seed(3))[0]
    other = span_mask_tokens(input_ids, vocab, generator=torch.Generator().manual_seed(4))[0]
    assert torch.equal(first, again) and not torch.equal(first, other)
    off, where = span_mask_tokens(input_ids, vocab, enabled=False)
    assert torch.equal(off, input_ids) and not bool(where.any())
    module = TokenSpanMask(vocab, seed=3)
    assert torch.equal(module.eval()(input_ids), input_ids)
    assert torch.equal(module.train()(input_ids), first)
    explicit = span_mask_tokens(input_ids, vocab.MASK, special_ids=range(5), generator=torch.Generator().manual_seed(3))
    assert torch.equal(explicit[0], first)
    with pytest.raises(ConfigError, match="special_ids"):
        span_mask_tokens(input_ids, vocab.MASK)
    with pytest.raises(ConfigError, match="token probability"):
        span_mask_tokens(input_ids, vocab, rate=1.5)


def test_time_masking_zeroes_about_p_of_the_valid_frames_in_spans() -> None:
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(20, 101, (64,), generator=generator)
    attention_mask = (torch.arange(100)[None, :] < lengths[:, None]).long()
    hidden = torch.ones(64, 100, 8)
    out = time_mask(hidden, p=0.5, span=10, attention_mask=attention_mask, generator=generator)
    dropped = out[:, :, 0] == 0
    assert bool(((out == 0).all(-1) == dropped).all())  # whole frames
    assert not bool(dropped[attention_mask == 0].any())  # padding is never chosen
    assert abs(int(dropped.sum()) / int(attention_mask.sum()) - 0.5) < 0.03
    assert all(r % 10 == 0 for row in dropped for r in runs(row))
    same = time_mask(hidden, 0.5, 10, attention_mask, torch.Generator().manual_seed(5))
    assert torch.equal(same, time_mask(hidden, 0.5, 10, attention_mask, torch.Generator().manual_seed(5)))
    assert time_mask(hidden, enabled=False) is hidden


def test_channel_masking_zeroes_about_p_of_the_channels_per_sequence() -> None:
    hidden = torch.ones(200, 6, 40)
    out = channel_mask(hidden, p=0.4, span=5, generator=torch.Generator().manual_seed(0))
    dropped = out[:, 0, :] == 0
    assert torch.equal(out == 0, dropped[:, None, :].expand_as(out))  # the same channels at every frame
    assert abs(float(dropped.float().mean()) - 0.4) < 0.03
    assert all(r % 5 == 0 for row in dropped for r in runs(row))
    assert len({tuple(row.tolist()) for row in dropped}) > 50  # chosen per sequence
    assert channel_mask(hidden, enabled=False) is hidden
    with pytest.raises(ConfigError, match="hidden"):
        channel_mask(torch.ones(3, 4))


def test_hidden_augment_acts_in_training_only_and_keeps_gradients() -> None:
    augment = HiddenAugment(seed=0)
    hidden = torch.randn(4, 30, 20, requires_grad=True)
    assert augment.eval()(hidden) is hidden
    out = augment.train()(hidden)
    assert bool((out == 0).any()) and not torch.equal(out, hidden)
    out.sum().backward()
    assert bool((hidden.grad == 0).any()) and bool((hidden.grad == 1).any())
    repeat = HiddenAugment(seed=0).train()(hidden.detach())
    assert torch.equal(repeat, out.detach())
    assert torch.equal(HiddenAugment(time_p=0.0, channel_p=0.0).train()(hidden), hidden)
