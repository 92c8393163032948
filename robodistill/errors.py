"""Error types that map to the CLI's exit codes (docs/design.md section 3)."""

from __future__ import annotations


class UsageError(Exception):
    """Bad usage, bad config or bad input file: the CLI prints one line and exits with code 2."""


class ConfigError(UsageError):
    """A config file or override that does not satisfy the schema."""


class ExportVerificationError(RuntimeError):
    """An exported policy that does not reproduce the student: a run-time failure (exit code 1)."""
