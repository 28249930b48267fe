"""Quarantine layer definitions."""
