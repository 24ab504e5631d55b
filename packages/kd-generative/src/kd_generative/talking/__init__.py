"""Wav2Lip-style talking faces: speech with force-aligned phone timings (:mod:`speech`, :mod:`align`), real
faces whose mouths follow those phones (:mod:`visemes`, :mod:`render`, :mod:`faces`, :mod:`dataset`), the
generator and its compact student (:mod:`generator`), a SyncNet-style lip-sync expert (:mod:`expert`) and
LSE-D / LSE-C style scores (:mod:`lipsync`); :mod:`megamind` reads a real talking clip for evaluation.

Import the submodules directly; this package file imports nothing heavy.
"""
