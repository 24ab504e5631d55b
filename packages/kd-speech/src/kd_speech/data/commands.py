"""A Fluent-Speech-Commands-like intent set: spoken smart-home commands over (action, object, location) slots.

The 31 intents follow the slot scheme of Fluent Speech Commands (actions activate, deactivate, increase,
decrease, change language and bring; objects such as lights, heat, volume, music, lamp, newspaper, juice,
socks, shoes and four language names; locations kitchen, bedroom, washroom or none). The phrasings are
written for this project: six per intent ("turn on the lights in the kitchen", "switch on the kitchen lights",
"kitchen lights on", ...). An intent's name is ``"<action>_<object>_<location>"``, e.g.
``"activate_lights_kitchen"`` or ``"change language_german_none"``. Everything here is a constant: the same
intents and phrasings, in the same order, on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

from kd_core.errors import ConfigError

__all__ = ["ACTIONS", "COMMANDS", "INTENTS", "LOCATIONS", "OBJECTS", "Command", "command", "intent_name"]

LOCATIONS: tuple[str, ...] = ("none", "kitchen", "bedroom", "washroom")
"""Slot values of ``location`` (``"none"``: the command names no room)."""


@dataclass(frozen=True)
class Command:
    """One intent: its three slots and the phrasings that say it."""

    action: str
    object: str
    location: str
    phrasings: tuple[str, ...]

    @property
    def intent(self) -> str:
        """``"<action>_<object>_<location>"``."""
        return intent_name(self.action, self.object, self.location)


def intent_name(action: str, object_: str, location: str) -> str:
    """The intent label of three slot values."""
    return f"{action}_{object_}_{location}"


def _room(templates: tuple[str, ...], location: str) -> tuple[str, ...]:
    return tuple(t.format(room=location) for t in templates)


_LIGHTS_ON_ROOM = ("turn on the lights in the {room}", "switch on the {room} lights", "{room} lights on",
                   "lights on in the {room}", "turn the {room} lights on", "put the lights on in the {room}")
_LIGHTS_OFF_ROOM = ("turn off the lights in the {room}", "switch off the {room} lights", "{room} lights off",
                    "lights off in the {room}", "turn the {room} lights off", "kill the lights in the {room}")
_HEAT_UP_ROOM = ("turn up the heat in the {room}", "make the {room} warmer", "increase the temperature in the {room}",
                 "heat up the {room}", "more heat in the {room}", "the {room} is too cold")
_HEAT_DOWN_ROOM = ("turn down the heat in the {room}", "make the {room} cooler",
                   "decrease the temperature in the {room}", "cool down the {room}", "less heat in the {room}",
                   "the {room} is too hot")
_ROOMS = LOCATIONS[1:]


def _build() -> tuple[Command, ...]:
    commands = [
        Command("activate", "lights", "none", ("turn on the lights", "switch on the lights", "lights on",
                                               "turn the lights on", "put the lights on", "switch the lights on")),
        *(Command("activate", "lights", room, _room(_LIGHTS_ON_ROOM, room)) for room in _ROOMS),
        Command("activate", "lamp", "none", ("turn on the lamp", "switch on the lamp", "lamp on",
                                             "turn the lamp on", "switch the lamp on", "put the lamp on")),
        Command("activate", "music", "none", ("play the music", "start the music", "play some music", "music on",
                                              "put on some music", "turn the music on")),
        Command("deactivate", "lights", "none", ("turn off the lights", "switch off the lights", "lights off",
                                                 "turn the lights off", "kill the lights", "switch the lights off")),
        *(Command("deactivate", "lights", room, _room(_LIGHTS_OFF_ROOM, room)) for room in _ROOMS),
        Command("deactivate", "lamp", "none", ("turn off the lamp", "switch off the lamp", "lamp off",
                                               "turn the lamp off", "switch the lamp off", "shut off the lamp")),
        Command("deactivate", "music", "none", ("stop the music", "pause the music", "music off",
                                                "turn off the music", "switch the music off", "stop playing music")),
        Command("increase", "heat", "none", ("turn up the heat", "make it warmer", "increase the temperature",
                                             "heat up", "more heat please", "it is too cold in here")),
        *(Command("increase", "heat", room, _room(_HEAT_UP_ROOM, room)) for room in _ROOMS),
        Command("increase", "volume", "none", ("turn up the volume", "louder please", "increase the volume",
                                               "volume up", "make it louder", "i cannot hear that")),
        Command("decrease", "heat", "none", ("turn down the heat", "make it cooler", "decrease the temperature",
                                             "heat down", "less heat please", "it is too hot in here")),
        *(Command("decrease", "heat", room, _room(_HEAT_DOWN_ROOM, room)) for room in _ROOMS),
        Command("decrease", "volume", "none", ("turn down the volume", "quieter please", "decrease the volume",
                                               "volume down", "make it quieter", "that is too loud")),
        *(Command("change language", language, "none", (
            f"change the language to {language}", f"switch to {language}", f"set the language to {language}",
            f"use {language}", f"{language} please", f"i want to use {language}"))
          for language in ("chinese", "english", "german", "korean")),
        Command("change language", "none", "none", ("change the language", "switch the language",
                                                    "set a different language", "open the language settings",
                                                    "use another language", "i need a different language")),
        Command("bring", "juice", "none", ("bring me some juice", "get me some juice", "fetch me a juice",
                                           "i would like some juice", "juice please", "go get me some juice")),
        Command("bring", "newspaper", "none", ("bring me the newspaper", "get me the newspaper",
                                               "fetch the newspaper", "i need the newspaper", "newspaper please",
                                               "go get the newspaper")),
        Command("bring", "shoes", "none", ("bring me my shoes", "get me my shoes", "fetch my shoes",
                                           "i need my shoes", "shoes please", "go get my shoes")),
        Command("bring", "socks", "none", ("bring me my socks", "get me my socks", "fetch my socks",
                                           "i need my socks", "socks please", "go get my socks")),
    ]
    return tuple(commands)


COMMANDS: tuple[Command, ...] = _build()
"""Every intent with its phrasings, in a fixed order."""

INTENTS: tuple[str, ...] = tuple(c.intent for c in COMMANDS)
"""The intent labels, in the order of ``COMMANDS`` (a label's index is its class id)."""

ACTIONS: tuple[str, ...] = tuple(dict.fromkeys(c.action for c in COMMANDS))
OBJECTS: tuple[str, ...] = tuple(dict.fromkeys(c.object for c in COMMANDS))

_BY_INTENT = {c.intent: c for c in COMMANDS}


def command(intent: str) -> Command:
    """The ``Command`` of an intent label; an unknown label is a ``ConfigError``."""
    if intent not in _BY_INTENT:
        raise ConfigError("intent", f"one of the {len(INTENTS)} command intents (e.g. {INTENTS[0]!r})", intent)
    return _BY_INTENT[intent]
