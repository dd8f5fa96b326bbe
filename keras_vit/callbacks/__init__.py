"""Training callbacks."""

from keras_vit.callbacks.crash_safe_backup import CrashSafeBackup

__all__ = ["CrashSafeBackup"]
