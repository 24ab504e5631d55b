"""Bodies of ``kd-speech``'s own commands (``data build``); ``kd_speech.cli`` parses and dispatches."""
