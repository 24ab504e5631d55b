"""The DeepSpeech2-style intent head: shapes with the paper's kernels, padding never changes the pooled output."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from kd_core.errors import ConfigError
from kd_speech.slu import DS2Head


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_paper_kernels_give_logits_per_utterance() -> None:
    torch.manual_seed(0)
    head = DS2Head(in_dim=32, num_classes=5, lstm_hidden=8, lstm_layers=2)
    convs = [m for m in head.conv if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(41, 11), (21, 11)] and [c.out_channels for c in convs] == [32, 32]
    assert [c.stride for c in convs] == [(2, 2), (2, 1)]
    assert sum(isinstance(m, torch.nn.Hardtanh) and (m.min_val, m.max_val) == (0.0, 20.0) for m in head.conv) == 2
    assert head.rnn_input == 32 * 8  # features 32 -> 16 -> 8
    hidden = torch.randn(3, 13, 32)
    mask = torch.tensor([[1] * 13, [1] * 7 + [0] * 6, [1] + [0] * 12])
    assert head(hidden, mask).shape == (3, 5)
    assert head.output_lengths(torch.tensor([13, 7, 1])).tolist() == [7, 4, 1]
    assert head.pooled(hidden).shape == (3, 8)


@pytest.mark.parametrize("batch_norm", [True, False])
def test_padding_frames_do_not_change_the_output(batch_norm: bool) -> None:
    torch.manual_seed(0)
    head = DS2Head(in_dim=12, num_classes=4, conv_channels=4, lstm_hidden=6, lstm_layers=2,
                   kernels=((5, 3), (3, 3)), batch_norm=batch_norm)
    if batch_norm:  # batch statistics would see the padding: compare in eval mode (running statistics)
        head.train()(torch.randn(4, 9, 12))  # move the running statistics off their initial values
        head.eval()
    else:
        head.train()
    short, long = torch.randn(1, 5, 12), torch.randn(1, 11, 12)
    padded = torch.cat([torch.cat([short, 100 * torch.randn(1, 6, 12)], 1), long])  # garbage in the padding
    mask = torch.tensor([[1] * 5 + [0] * 6, [1] * 11])
    together = head(padded, mask)
    alone = torch.cat([head(short), head(long)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_bad_masks_and_inputs_are_refused() -> None:
    head = DS2Head(in_dim=8, num_classes=2, conv_channels=2, lstm_hidden=4, lstm_layers=1, kernels=((3, 3), (3, 3)))
    with pytest.raises(ConfigError, match="right-padded"):
        head(torch.randn(1, 4, 8), torch.tensor([[1, 0, 1, 1]]))
    with pytest.raises(ConfigError, match="valid frame"):
        head(torch.randn(1, 4, 8), torch.zeros(1, 4))
    with pytest.raises(ConfigError, match="hidden"):
        head(torch.randn(1, 4, 9))
    with pytest.raises(ConfigError, match="kernels"):
        DS2Head(in_dim=8, num_classes=2, kernels=((3, 3),))
