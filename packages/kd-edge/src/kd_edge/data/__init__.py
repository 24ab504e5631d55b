"""Offline datasets and builders for edge deployment (nothing downloads from a hub)."""
