"""How the ``refsnn`` command ends when something goes wrong: one line on stderr and an exit status.

    report(exc, debug) -> status     called by ``refsnn.cli.main`` with any exception a command raised

    a RefsnnError (``refsnn.errors``: a bad configuration, a damaged checkpoint,
    an unusable output directory, a diverged run), a missing or unreadable file   "refsnn: error: ...", status 2
    Ctrl-C: KeyboardInterrupt, also when it arrives inside a numba kernel and
    surfaces as "SystemError: CPUDispatcher(...) returned a result with an
    exception set"; a run says what it kept (``RunInterrupted``)                  "interrupted: ...", status 130
    the reader of stdout went away (``refsnn summary ... | head``)                nothing more, status 141
    numba's cache of compiled kernels is damaged (an UnpicklingError or EOFError
    raised while numba reads it)                                                  the directory to clear, status 2
    argparse's exits (usage errors, --help, --version)                            unchanged
    anything else                                                                 a bug: the traceback

With ``refsnn --debug COMMAND`` the traceback is printed before the message.
"""
from __future__ import annotations

import errno
import os
import pickle
import sys
import traceback
import warnings
from pathlib import Path

from .errors import RefsnnError, RunInterrupted, is_interrupt

#: exit status when stdout's reader has gone (128 + SIGPIPE, what a shell reports for a program killed by it)
BROKEN_PIPE_STATUS = 141
INTERRUPTED_STATUS = 130
ERROR_STATUS = 2


def report(exc: BaseException, debug: bool = False) -> int:
    """The exit status for ``exc`` after telling the user on stderr; re-raises ``SystemExit`` and bugs."""
    if isinstance(exc, SystemExit):
        raise exc
    if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
        return _quiet_stdout()
    if debug:
        traceback.print_exception(exc)
    if is_interrupt(exc):
        detail = str(exc) if isinstance(exc, RunInterrupted) else ""
        print(f"\nrefsnn: {detail}" if detail else "\ninterrupted", file=sys.stderr)
        return INTERRUPTED_STATUS
    cache = numba_cache_dir(exc)
    if cache is not None:
        message = (f"numba's cache of compiled kernels is damaged ({type(exc).__name__}: {exc}); delete the cache "
                   f"files in {cache} (rm {cache}/*.nbi {cache}/*.nbc) and run again: the kernels are recompiled "
                   "and cached anew")
    elif isinstance(exc, RefsnnError):
        message = str(exc)
    elif isinstance(exc, OSError) and exc.filename is not None:
        message = f"{exc.strerror or exc}: {exc.filename!s}"
    else:
        raise exc
    print(f"refsnn: error: {message}", file=sys.stderr)
    return ERROR_STATUS


def one_line_warnings(show=None):
    """A ``warnings.showwarning`` for the command line: a warning class of refsnn's own (``CheckpointWarning``)
    prints as "refsnn: warning: ..." (no file and line); any other goes to ``show`` (the default display)."""
    show = show or warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if category.__module__.startswith("refsnn"):
            print(f"refsnn: warning: {message}", file=file or sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)
    return showwarning


def _quiet_stdout() -> int:
    """stdout's reader has gone: point stdout at /dev/null so that the final flush at exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout is not a file (captured, replaced)
        pass
    return BROKEN_PIPE_STATUS


def _frames(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        tb = exc.__traceback__
        while tb is not None:
            yield tb.tb_frame
            tb = tb.tb_next
        exc = exc.__cause__ or exc.__context__


def numba_cache_dir(exc: BaseException):
    """The directory of numba's cache if ``exc`` was raised while numba read a cached kernel (a damaged index or
    data file), else None."""
    if not isinstance(exc, (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError,
                            IndexError, KeyError)):
        return None
    caching = os.path.join("numba", "core", "caching.py")
    for frame in _frames(exc):
        if frame.f_code.co_filename.endswith(caching):
            owner = frame.f_locals.get("self")
            for attr in ("_index_path", "_cache_path"):
                path = getattr(owner, attr, None)
                if isinstance(path, str):
                    return Path(path).parent if attr == "_index_path" else Path(path)
            return Path(os.environ.get("NUMBA_CACHE_DIR") or "the __pycache__ directories of refsnn/kernels")
    return None
