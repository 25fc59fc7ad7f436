"""Named errors. Each message says what failed, where, and what to do about it."""

from __future__ import annotations


class DeepbatchError(Exception):
    """Base class; the CLI maps subclasses to exit codes."""

    exit_code = 1


class ConfigError(DeepbatchError):
    exit_code = 2


class SchemaMismatchError(DeepbatchError):
    exit_code = 1


class MissingInputError(DeepbatchError):
    exit_code = 1


class ReconciliationError(DeepbatchError):
    """records_in != records_out + quarantined + deduplicated."""

    exit_code = 4


class QuarantineThresholdExceeded(DeepbatchError):
    """Too large a share of a table was quarantined; nothing was published."""

    exit_code = 3


class DemoDataError(DeepbatchError):
    exit_code = 1
