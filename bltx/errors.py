"""Errors that mean "the user gave us something wrong".

Everything raised as a `BltxError` is caught by `python -m bltx.run`, printed as one line on
stderr and turned into exit code 2. Messages must name the problem and the fix, and fit on
one line: no tracebacks for bad input.
"""


class BltxError(Exception):
    """Base class for user-facing errors (bad recipe, missing file, wrong checkpoint)."""

    def __init__(self, message: str):
        # One line, always: a multi-line message would break the "one clear line" promise.
        super().__init__(" ".join(str(message).split()))


class ConfigError(BltxError):
    """A recipe or component table is malformed: unknown key, bad type, unknown component."""


class DataError(BltxError):
    """A data source is missing, empty or unusable."""


class CheckpointError(BltxError):
    """A checkpoint is missing, corrupt or belongs to another model."""
