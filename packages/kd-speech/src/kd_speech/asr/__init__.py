"""ASR n-best and lattice rescoring with a word-level transformer LM trained here, and that LM distilled.

- :mod:`~kd_speech.asr.decode`: pocketsphinx decoding into an :class:`NBest` list and a :class:`Lattice`;
- :mod:`~kd_speech.asr.lattice`: HTK SLF lattices, best path, n-best paths, word-sequence alignment;
- :mod:`~kd_speech.asr.lm`: the word vocabulary, the GPT-2-style word LM and its training loop;
- :mod:`~kd_speech.asr.rescore`: acoustic + λ·interpolated LM + β·words, grid-tuned on validation WER;
- :mod:`~kd_speech.asr.wer`: text normalisation and WER through jiwer;
- :mod:`~kd_speech.asr.lm_distill`: word-level KD of the LM into a ≥ 4× smaller one;
- :mod:`~kd_speech.asr.decoded`: sets of utterances decoded once (n-best + lattice paths), cached on disk;
- :mod:`~kd_speech.asr.evaluate`: WER before/after rescoring a decoded set, weights tuned over a grid at once;
- :mod:`~kd_speech.asr.plots`: WER bars per LM and WER against LM size.

``kd-speech distill --recipe lm-distill`` (``kd_speech.methods.lm_distill``) and ``kd-speech rescore``
(``kd_speech.commands.rescore``) are built on these.
"""

from kd_speech.asr.decode import (
    SAMPLE_RATE,
    Decoded,
    Hypothesis,
    NBest,
    PocketsphinxDecoder,
    prepare_audio,
    require_pocketsphinx,
)
from kd_speech.asr.decoded import DecodeSettings, UtteranceDecode, check_utterances, decode_utterances
from kd_speech.asr.evaluate import Grid, LMResult, evaluate_lm
from kd_speech.asr.lattice import Lattice, LatticeLink, LatticeNode, LatticePath, parse_htk_slf, read_htk_slf
from kd_speech.asr.lm import (
    LMSize,
    SentenceDataset,
    TrainConfig,
    WordLM,
    WordVocab,
    collate_sentences,
    fit_lm,
    lm_forward,
    token_nll,
    train_lm,
)
from kd_speech.asr.lm_distill import (
    DistillReport,
    compare_distillation,
    distill_lm,
    student_size,
    word_kd_loss,
)
from kd_speech.asr.rescore import (
    Rescored,
    RescoreWeights,
    Tuning,
    combine,
    lattice_nbest,
    rescore_lattice,
    rescore_nbest,
    tune_weights,
)
from kd_speech.asr.wer import normalize_text, per_utterance_errors, utterance_errors, word_error_rate

__all__ = [
    "SAMPLE_RATE",
    "DecodeSettings",
    "Decoded",
    "DistillReport",
    "Grid",
    "Hypothesis",
    "LMResult",
    "LMSize",
    "Lattice",
    "LatticeLink",
    "LatticeNode",
    "LatticePath",
    "NBest",
    "PocketsphinxDecoder",
    "RescoreWeights",
    "Rescored",
    "SentenceDataset",
    "TrainConfig",
    "Tuning",
    "UtteranceDecode",
    "WordLM",
    "WordVocab",
    "check_utterances",
    "collate_sentences",
    "combine",
    "compare_distillation",
    "decode_utterances",
    "distill_lm",
    "evaluate_lm",
    "fit_lm",
    "lattice_nbest",
    "lm_forward",
    "normalize_text",
    "parse_htk_slf",
    "per_utterance_errors",
    "prepare_audio",
    "read_htk_slf",
    "require_pocketsphinx",
    "rescore_lattice",
    "rescore_nbest",
    "student_size",
    "token_nll",
    "train_lm",
    "tune_weights",
    "utterance_errors",
    "word_error_rate",
    "word_kd_loss",
]
