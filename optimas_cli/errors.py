"""Errors worded for the user. Every module raises these; none of them imports anything."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config problem, worded for the user: which file, which key, which value."""
