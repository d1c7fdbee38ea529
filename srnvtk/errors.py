"""Exceptions srnvtk raises for problems a user can fix."""


class SRNError(Exception):
    """Base class: bad input, bad settings or a bad file, with a message meant for users."""


class InputError(SRNError, ValueError):
    """The volume handed to the encoder cannot be compressed (NaNs, constant, wrong shape...)."""


class SettingsError(SRNError, ValueError):
    """A model, training or decoding setting is out of range."""


class FileFormatError(SRNError, OSError):
    """A .srn file is missing, truncated, corrupted or not a srnvtk file."""


class TrainingAborted(SRNError):  # noqa: N818 (a stop the caller asked for, not a failure)
    """Training was stopped by the caller's abort callback."""


class DamagedFileError(FileFormatError):
    """A .srn file that cannot be parsed: truncated, corrupted, missing a part, or too slow to parse."""
