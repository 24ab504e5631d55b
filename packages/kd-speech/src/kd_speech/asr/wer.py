"""Word error rate through jiwer, after one shared text normalisation.

``normalize_text`` lowercases, keeps letters, digits and word-internal apostrophes (``it's``, which the
pocketsphinx dictionary spells so), turns every other character into a space and collapses spaces. The
LM of :mod:`kd_speech.asr.lm` tokenises with the same function, so what is scored is what is counted.
An empty reference (after normalisation) is a ``ConfigError``: WER is undefined for it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import jiwer
from kd_core.errors import ConfigError

_NOT_WORD = re.compile(r"[^\w']+")
_EDGE_APOSTROPHES = re.compile(r"(?<!\w)'+|'+(?!\w)")


def normalize_text(text: str) -> str:
    """Lowercase ``text``, strip punctuation (keeping word-internal apostrophes) and collapse whitespace."""
    if not isinstance(text, str):
        raise ConfigError("text", "a string", type(text).__name__)
    text = _NOT_WORD.sub(" ", text.lower().replace("_", " "))
    return " ".join(_EDGE_APOSTROPHES.sub(" ", text).split())


def normalize_words(text: str) -> list[str]:
    """The words of ``normalize_text(text)``."""
    return normalize_text(text).split()


@dataclass(frozen=True)
class UtteranceErrors:
    """Edit counts of one utterance (or of a corpus, summed) and the WER they give."""

    substitutions: int
    deletions: int
    insertions: int
    hits: int

    @property
    def reference_words(self) -> int:
        """Words in the reference: hits + substitutions + deletions."""
        return self.hits + self.substitutions + self.deletions

    @property
    def errors(self) -> int:
        """Substitutions + deletions + insertions."""
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        """errors / reference words."""
        return self.errors / self.reference_words


def _prepared(references: Sequence[str], hypotheses: Sequence[str], normalize: bool) -> tuple[list[str], list[str]]:
    if isinstance(references, str) or isinstance(hypotheses, str):
        raise ConfigError("references", "lists of strings (one per utterance)", "a single string",
                          hint="wrap one utterance in a list, or use utterance_errors")
    if len(references) != len(hypotheses):
        raise ConfigError("hypotheses", f"one per reference ({len(references)})", len(hypotheses))
    if not references:
        raise ConfigError("references", "at least one utterance", 0)
    prepare = normalize_text if normalize else (lambda text: " ".join(text.split()))
    refs = [prepare(text) for text in references]
    hyps = [prepare(text) for text in hypotheses]
    for index, ref in enumerate(refs):
        if not ref:
            raise ConfigError(f"references[{index}]", "a transcript with at least one word", references[index])
    return refs, hyps


def corpus_errors(references: Sequence[str], hypotheses: Sequence[str], normalize: bool = True) -> UtteranceErrors:
    """Edit counts summed over utterances (jiwer's alignment)."""
    refs, hyps = _prepared(references, hypotheses, normalize)
    out = jiwer.process_words(refs, hyps)
    return UtteranceErrors(out.substitutions, out.deletions, out.insertions, out.hits)


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str], normalize: bool = True) -> float:
    """Corpus WER: all errors over all reference words (``jiwer.wer`` on the normalised texts)."""
    refs, hyps = _prepared(references, hypotheses, normalize)
    return float(jiwer.wer(refs, hyps))


def utterance_errors(reference: str, hypothesis: str, normalize: bool = True) -> UtteranceErrors:
    """Edit counts of one utterance."""
    return corpus_errors([reference], [hypothesis], normalize)


def per_utterance_errors(references: Sequence[str], hypotheses: Sequence[str],
                         normalize: bool = True) -> list[UtteranceErrors]:
    """Edit counts of each utterance, in order."""
    refs, hyps = _prepared(references, hypotheses, normalize)
    return [utterance_errors(ref, hyp, normalize=False) for ref, hyp in zip(refs, hyps)]
