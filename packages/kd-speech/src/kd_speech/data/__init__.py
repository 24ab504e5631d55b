"""Offline speech data for kd-speech (nothing downloads): a synthesized spoken-command intent set, real
recordings from Debian's pocketsphinx-testdata, a user's own audio folder, features and augmentation.

- ``commands``: 31 Fluent-Speech-Commands-like intents (action, object, location) with six phrasings each;
- ``synth``: espeak-ng and flite synthesis at 16 kHz; ``builder``: the deterministic, cached, voice-split set;
- ``testdata``: LibriVox and cards recordings with transcripts; ``folder``: audio folder + CSV, validated;
- ``audio``: soundfile I/O and torchaudio resampling; ``features``: log-mel / fbank; ``augment``: noise and
  reverberation; ``dataset``: a torch ``Dataset`` and a padding collate.
"""

from kd_speech.data.audio import SAMPLE_RATE, Utterance, audio_info, decode_audio, encode_audio, read_audio, to_rate
from kd_speech.data.augment import Augment, add_noise, measured_snr, reverberate, synthetic_rir
from kd_speech.data.builder import (
    SPLITS,
    CommandSet,
    CommandSetConfig,
    build_command_set,
    choose_voices,
    command_set_dir,
    plan_utterances,
    split_voices,
)
from kd_speech.data.commands import COMMANDS, INTENTS, LOCATIONS, Command, command, intent_name
from kd_speech.data.dataset import SpeechDataset, collate_audio, pad_sequences
from kd_speech.data.features import LogMel, log_mel, num_frames
from kd_speech.data.folder import read_audio_folder
from kd_speech.data.synth import (
    ESPEAK_ACCENTS,
    ESPEAK_VARIANTS,
    FLITE_VOICES,
    Voice,
    require_synthesizer,
    synthesize,
    synthesizer_version,
)
from kd_speech.data.testdata import read_testdata

__all__ = ["COMMANDS", "ESPEAK_ACCENTS", "ESPEAK_VARIANTS", "FLITE_VOICES", "INTENTS", "LOCATIONS", "SAMPLE_RATE",
           "SPLITS", "Augment", "Command", "CommandSet", "CommandSetConfig", "LogMel", "SpeechDataset", "Utterance",
           "Voice", "add_noise", "audio_info", "build_command_set", "choose_voices", "collate_audio", "command",
           "command_set_dir", "decode_audio", "encode_audio", "intent_name", "log_mel", "measured_snr",
           "num_frames", "pad_sequences", "plan_utterances", "read_audio", "read_audio_folder", "read_testdata",
           "require_synthesizer", "reverberate", "split_voices", "synthesize", "synthesizer_version",
           "synthetic_rir", "to_rate"]
