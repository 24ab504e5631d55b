"""The spoken-command set as a recipe section: the fields every kd-speech recipe's ``data:`` shares, checked
together, and the ``CommandSetConfig`` they build (its errors renamed to the recipe's ``data.*`` fields)."""

from __future__ import annotations

from typing import Annotated

from kd_core.errors import ConfigError
from kd_core.recipes import Section, Seed
from pydantic import Field, model_validator

from kd_speech.data.builder import CommandSetConfig

__all__ = ["CommandSetSection"]

#: ``CommandSetConfig`` argument -> the recipe field an error about it names.
_FIELD_NAMES = {"utterances_per_intent": "per_intent", "val_voices + test_voices": "val_voices"}


class CommandSetSection(Section):
    """Voices (``flite_voices`` of them flite), phrasings per intent, the first ``intents`` intents, the voices
    held out for validation and test, and the build seed (see ``kd_speech.data.builder``). Recipes subclass it to
    change defaults or add fields."""

    voices: Annotated[int, Field(ge=3, le=60)] = 8
    flite_voices: Annotated[int, Field(ge=0, le=4)] = 2
    per_intent: Annotated[int, Field(ge=1, le=6)] = 2
    intents: Annotated[int, Field(ge=2, le=31)] = 31
    val_voices: Annotated[int, Field(ge=1)] = 1
    test_voices: Annotated[int, Field(ge=1)] = 2
    seed: Seed = 0

    @model_validator(mode="after")
    def _voices_fit(self) -> CommandSetSection:
        if self.flite_voices > self.voices:
            raise ValueError(f"data.flite_voices must be at most data.voices ({self.voices}), received "
                             f"{self.flite_voices}")
        if self.val_voices + self.test_voices >= self.voices:
            raise ValueError(f"data.val_voices + data.test_voices must leave train voices (fewer than data.voices = "
                             f"{self.voices}), received {self.val_voices + self.test_voices}")
        return self

    def command_set(self) -> CommandSetConfig:
        """The ``CommandSetConfig`` of these fields (its errors name ``data.*`` fields)."""
        try:
            return CommandSetConfig(seed=self.seed, voices=self.voices, flite_voices=self.flite_voices,
                                    utterances_per_intent=self.per_intent, intents=self.intents,
                                    val_voices=self.val_voices, test_voices=self.test_voices)
        except ConfigError as err:
            raise ConfigError(f"data.{_FIELD_NAMES.get(err.argument, err.argument)}", err.expected, err.received,
                              hint=err.hint) from None
