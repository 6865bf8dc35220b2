"""Errors that report a user's mistake or a damaged file, not a bug in refsnn.

The command line (``refsnn.cli.main``) prints the message of any ``RefsnnError`` on stderr and exits
with status 2, without a traceback unless ``--debug`` is given. Raise a subclass (or ``RefsnnError``
itself) whenever the message alone tells the user what to fix: name the file, the setting or the
argument, the value found and what is allowed.

This module imports nothing from refsnn, so every layer of the package may use it.
"""


class RefsnnError(Exception):
    """Base of the errors the CLI reports as a message (exit status 2)."""


class CheckpointError(RefsnnError):
    """A checkpoint or history file is missing, damaged, inconsistent or incompatible with the run."""


class RunDirError(RefsnnError):
    """An output directory cannot be used: not writable, a file, or in use by another run."""


class TrainingDiverged(RefsnnError):
    """Training produced non-finite values; the message names the epoch, the step and the last good checkpoint."""
