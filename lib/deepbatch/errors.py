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


class LockHeldError(DeepbatchError):
    """Another live run holds the lock for this stage and run date."""

    exit_code = 6


class CommitRecoveryError(DeepbatchError):
    """An interrupted commit cannot be rolled forward: its staged data is gone."""

    exit_code = 1


class ResumeMismatchError(DeepbatchError):
    """--resume with a checkpoint made for another dataset version, class list or model."""

    exit_code = 2


class TrainingIncompleteError(DeepbatchError):
    exit_code = 1


class ExportMismatchError(DeepbatchError):
    """The exported ONNX graph does not predict what the torch model predicts, beyond the tolerance."""

    exit_code = 1


class SourceUnavailableError(DeepbatchError):
    """A source that is not files could not be read: the connection was refused, or the table, query or a column is missing."""

    exit_code = 1


class CorruptModelError(DeepbatchError):
    """A model folder's files no longer match the checksums its train commit recorded."""

    exit_code = 7
