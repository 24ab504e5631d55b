"""The spoken command intent set: sizes, slot names, and phrasings that name exactly one intent."""

from __future__ import annotations

import pytest
from kd_core.errors import KDError
from kd_speech.data.commands import ACTIONS, COMMANDS, INTENTS, LOCATIONS, command, intent_name


def test_intent_set_has_fsc_like_size_and_slots() -> None:
    assert 20 <= len(INTENTS) <= 31
    assert len(set(INTENTS)) == len(INTENTS)
    assert all(4 <= len(c.phrasings) <= 8 for c in COMMANDS)
    assert set(ACTIONS) == {"activate", "deactivate", "increase", "decrease", "change language", "bring"}
    assert {c.location for c in COMMANDS} == set(LOCATIONS)
    assert command("activate_lights_kitchen").phrasings[:3] == (
        "turn on the lights in the kitchen", "switch on the kitchen lights", "kitchen lights on")
    assert intent_name("bring", "socks", "none") in INTENTS


def test_every_phrasing_belongs_to_one_intent_and_names_its_room() -> None:
    phrasings = [p for c in COMMANDS for p in c.phrasings]
    assert len(set(phrasings)) == len(phrasings)
    for c in COMMANDS:
        assert len(set(c.phrasings)) == len(c.phrasings)
        if c.location != "none":
            assert all(c.location in p for p in c.phrasings)


def test_unknown_intent_is_a_kd_error() -> None:
    with pytest.raises(KDError, match="intent"):
        command("open_door_garage")
