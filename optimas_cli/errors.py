"""Errors worded for the user. Every module raises these; none of them imports anything."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config problem, worded for the user: which file, which key, which value."""


class DiskFull(OSError):
    """A write found no space left on its device: the message names the path and the free
    space there. An OSError (ENOSPC), so what catches those catches it too."""

    def __init__(self, message: str):
        super().__init__(28, message)  # errno.ENOSPC

    def __str__(self) -> str:
        return str(self.strerror)
