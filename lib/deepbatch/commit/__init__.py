"""The commit protocol: staging, one atomic journal file per commit, locks, and recovery."""

from deepbatch.commit.lock import acquire as acquire_lock
from deepbatch.commit.protocol import MARKER, Commit, LockSettings
from deepbatch.commit.recovery import RecoveryReport, recover, verify_outputs

__all__ = ["MARKER", "Commit", "LockSettings", "RecoveryReport", "acquire_lock", "recover", "verify_outputs"]
