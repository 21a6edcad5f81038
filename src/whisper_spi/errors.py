"""Errors the CLI turns into one clear line instead of a traceback."""


class WhisperSpiError(Exception):
    """Base class: a user-facing error whose message names the file, key or value at fault."""


class CheckpointError(WhisperSpiError):
    """A model checkpoint that cannot be read (truncated, corrupt, wrong spec)."""


class ModelSpecError(WhisperSpiError):
    """A model spec that does not resolve to a loadable model."""


class ConfigError(WhisperSpiError):
    """A configuration value that fails validation."""


class AudioError(WhisperSpiError):
    """An audio file that cannot be used."""


class DataError(WhisperSpiError):
    """An input file that does not match its data contract."""
