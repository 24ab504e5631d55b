"""Offline datasets and builders for speech (nothing downloads from a hub). None yet."""
