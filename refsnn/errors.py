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


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; the message says which epoch was interrupted and what was kept on disk.

    A ``KeyboardInterrupt`` (so code that stops on Ctrl-C still stops); the CLI prints the message and exits 130.
    """


#: how CPython reports an exception raised inside a C (numba) function that did not pass it on
_LOST_EXCEPTION = "returned a result with an exception set"


def is_interrupt(exc: BaseException) -> bool:
    """True if ``exc`` is Ctrl-C: a ``KeyboardInterrupt``, or the ``SystemError`` CPython raises when Ctrl-C
    arrives inside a numba kernel ("CPUDispatcher(...) returned a result with an exception set", with the
    ``KeyboardInterrupt`` as its cause)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, KeyboardInterrupt):
            return True
        if not (isinstance(exc, SystemError) and _LOST_EXCEPTION in str(exc)):
            return False
        exc = exc.__cause__ or exc.__context__
    return False


class ConfigError(RefsnnError, ValueError):
    """A configuration that cannot be used; the message names the section, the key and the value."""
