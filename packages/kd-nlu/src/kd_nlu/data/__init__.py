"""Offline datasets and builders for language understanding (nothing downloads from a hub)."""
