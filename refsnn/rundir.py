"""The output directory of a run: taken by one run at a time, checked before the first epoch.

    RunLock(out_dir)                  the directory's lock: ``out_dir/.refsnn.lock`` holds the pid of the run
                                      using it; a second run is refused with a ``RunDirError`` naming the
                                      directory and that pid; the lock of a dead process is taken over
    check_overwrite(out_dir, epoch)   refuse to overwrite a history that has gone further than ``epoch``

Taking the lock is also the check that the directory can be written: it creates the directory and a file in
it, so ``--out`` at an existing file, under a file or in a read-only place fails before any training.

The lock is an advisory ``flock`` on the lock file: the kernel releases it when the process ends, however it
ends (SIGKILL included), so a lock file left by a dead run holds no lock and the next run takes it over.
Where ``fcntl`` does not exist the lock is the file itself, taken over when the pid written in it is dead.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import RunDirError
from .files import remove_stale_temps, temp_path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

LOCK_NAME = ".refsnn.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # pragma: no cover
        return False
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _read_pid(path: Path):
    try:
        text = path.read_text().strip()
        return int(text.split()[0]) if text else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None


class RunLock:
    """Hold ``out_dir`` for one run (a context manager, or ``acquire()`` / ``release()``)."""

    def __init__(self, out_dir):
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / LOCK_NAME
        self._fd = None

    def _make_dir(self) -> None:
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise RunDirError(f"output directory {str(self.out_dir)!r}: a file is in the way (the path or one of "
                              "its parents is a file, not a directory); choose another --out") from None
        except OSError as e:
            raise RunDirError(f"output directory {str(self.out_dir)!r} cannot be created: "
                              f"{e.strerror or e}") from None

    def _refuse(self, pid) -> None:
        who = f"process {pid}" if pid is not None else "another process"
        raise RunDirError(f"output directory {str(self.out_dir)!r} is in use by another run ({who}, lock file "
                          f"{self.path.name}); wait for it to finish or choose another --out")

    def acquire(self) -> "RunLock":
        self._make_dir()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | (0 if fcntl else os.O_EXCL), 0o644)
        except FileExistsError:  # pragma: no cover - the non-POSIX lock
            pid = _read_pid(self.path)
            if pid is not None and _pid_alive(pid):
                self._refuse(pid)
            self.path.unlink(missing_ok=True)
            return self.acquire()
        except OSError as e:
            raise RunDirError(f"output directory {str(self.out_dir)!r} is not writable: {e.strerror or e}; "
                              "choose another --out") from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                self._refuse(_read_pid(self.path))
            except OSError:  # pragma: no cover - a file system without locks: go on, unlocked
                pass
            if not _same_file(fd, self.path):  # the holder removed the file between our open and our lock
                os.close(fd)
                return self.acquire()
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        try:  # the lock file may be old: prove that a new file can be made here (root ignores chmod, so ask the OS)
            probe = temp_path(self.out_dir / "probe")
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            self.release()
            raise RunDirError(f"output directory {str(self.out_dir)!r} is not writable: {e.strerror or e}; "
                              "choose another --out") from None
        remove_stale_temps(self.out_dir)
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            self.path.unlink(missing_ok=True)
        except OSError:  # a directory that became read-only: the file stays, the lock goes with the descriptor
            pass
        finally:
            os.close(fd)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def history_epochs(out_dir) -> int:
    """The number of epoch records in ``out_dir``/history.json (0 if there is none or it cannot be read)."""
    try:
        doc = json.loads((Path(out_dir) / "history.json").read_text())
        return len(doc["epochs"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def check_overwrite(out_dir, epoch: int, force: bool = False) -> None:
    """A run starting after ``epoch`` epochs would rewrite ``out_dir``/history.json: refuse (``RunDirError``) if
    that history has more than ``epoch`` epochs, unless ``force``."""
    done = history_epochs(out_dir)
    if done > epoch and not force:
        start = f"resumes after epoch {epoch}" if epoch else "starts from epoch 0"
        resume = Path(out_dir) / "checkpoint.npz"
        hint = f"resume it (--resume {resume}), " if resume.is_file() and not epoch else ""
        raise RunDirError(f"output directory {str(out_dir)!r} holds the history of a run that reached epoch {done}; "
                          f"this run {start} and would overwrite it: {hint}choose another --out, or pass --force")
