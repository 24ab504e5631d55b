"""Offline datasets and builders for generative models (nothing downloads from a hub). None yet."""
