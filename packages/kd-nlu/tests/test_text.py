"""TextDataset, TextCollator and encoder_forward on a tiny real WordPiece tokenizer built here."""

from __future__ import annotations

import pytest
import torch
from kd_core.errors import DataError
from kd_nlu.data.text import TextCollator, TextDataset, encoder_forward
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast


@pytest.fixture
def tokenizer():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "cat", "sat", "on", "the", "mat", "dog"]
    return BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)})


def test_items_collate_and_forward(tokenizer):
    data = TextDataset(["a cat sat", "the dog sat on the mat"], [0, 1], tokenizer, max_length=16,
                       soft_labels=torch.tensor([[0.2, 0.8], [0.5, 0.5]]))
    item = data[0]
    assert item["input_ids"].tolist() == [2, 5, 6, 7, 3] and item["label"] == 0
    batch = TextCollator(tokenizer.pad_token_id)([data[0], data[1]])
    assert batch["input_ids"].shape == (2, 8) and batch["input_ids"][0, 5:].tolist() == [0, 0, 0]
    assert batch["attention_mask"][0].tolist() == [1] * 5 + [0] * 3
    assert batch["label"].tolist() == [0, 1] and batch["soft_label"].shape == (2, 2)
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=12, hidden_size=8, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=16, num_labels=2))
    assert encoder_forward(model, batch).logits.shape == (2, 2)


def test_truncation_and_bad_input(tokenizer):
    assert len(TextDataset(["a cat sat on the mat"], None, tokenizer, max_length=4)[0]["input_ids"]) == 4
    with pytest.raises(DataError, match="labels"):
        TextDataset(["a", "b"], [0], tokenizer)
    with pytest.raises(DataError, match="texts"):
        TextDataset([], None, tokenizer)


def test_text_file_reads_distinct_lines_and_rejects_empty_or_missing_files(tmp_path):
    from kd_core.errors import ConfigError
    from kd_nlu.data.transfer import read_text_file

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a first  sentence\n\n  \nanother one\na first sentence\n", encoding="utf-8")
    assert sorted(read_text_file(corpus)) == ["a first sentence", "another one"]  # blank and repeated lines go
    assert read_text_file(corpus, seed=3) == read_text_file(corpus, seed=3)
    assert len(read_text_file(corpus, limit=1)) == 1
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"data\.text_file.*empty"):
        read_text_file(empty, "data.text_file")
    with pytest.raises(ConfigError, match=r"data\.text_file"):
        read_text_file(tmp_path / "missing.txt", "data.text_file")


def test_general_distillation_with_an_empty_text_file_fails_before_writing(tmp_path):
    from kd_core.errors import ConfigError
    from kd_core.recipes import RunContext, load_recipe

    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    method, config = load_recipe("tinybert-general", [f"data.text_file={empty}"], domain="nlu")
    with pytest.raises(ConfigError, match=r"data\.text_file"):
        method.build(config).run(RunContext(out=tmp_path / "run", device="cpu"))
    assert not (tmp_path / "run").exists()
