"""This package's own programs, started in processes of their own: the folding process
(``store/folder.py``) and the frame keeper (``frame_keeper.py``), and the locks the keepers of
one store share. No pytest, no pandas.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: What runs a module's ``main`` in a new interpreter (:func:`python_command`), the package found
#: where the interpreter looks first, then where this module is (whatever put it on this
#: process's path): appended, never ahead of the standard library.
_CHILD = (
    "import sys; sys.path.append(sys.argv.pop(1)); from importlib import import_module; "
    "sys.exit(import_module(sys.argv.pop(1)).main())"
)
#: The lock a frame keeper holds while it works, in the store's side folder (``frame_keeper.py``).
KEEPER_LOCK = "keeper.lock"
#: The lock the one keeper waiting for :data:`KEEPER_LOCK` holds meanwhile (beside it).
KEEPER_QUEUE_LOCK = "keeper.next.lock"
#: Starts its arguments in the background and ends at once: the program started is nobody's
#: child to wait for (a ``Popen`` of a running program, dropped, warns; a zombie would linger).
_BACKGROUND = '"$@" &'


def python_command(module: str, args: list[str]) -> list[str]:
    """The command that runs ``module.main()`` (it reads ``sys.argv``) with ``args``, in this
    interpreter, this package found where this process found it."""
    package_root = str(Path(__file__).resolve().parents[2])
    return [sys.executable, "-c", _CHILD, package_root, module, *args]


def lock_keeper(side_folder: Path, *, wait: bool, name: str = KEEPER_LOCK) -> int | None:
    """A descriptor of ``side_folder``'s keeper lock (``name``), locked (``flock``, exclusive), or
    None when another process holds it and ``wait`` is false, or it cannot be made (or no
    ``flock`` here). The lock goes when the last descriptor of it is closed (the process ends)."""
    try:
        import fcntl
    except ImportError:  # Windows: no keeper
        return None
    try:
        side_folder.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(side_folder / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(descriptor)
        return None
    return descriptor


def start_keeper(command: list[str], side_folder: Path) -> None:
    """Start the frame keeper ``command`` in the background, in a process session of its own
    (the terminal's Ctrl-C is not for it), nobody's child and not waited for, handing it the
    keeper lock of ``side_folder`` when this process gets it at once (``--locked FD``), so that
    the lock is held from before this process ends. Best effort: nothing is raised. Not on
    Windows (no ``flock``, no ``/bin/sh``)."""
    if os.name != "posix":
        return
    lock = lock_keeper(side_folder, wait=False)
    if lock is not None:
        command = [*command, "--locked", str(lock)]
    try:
        # The shell starts the keeper and ends: waited for here, a millisecond or two.
        subprocess.run(
            ["/bin/sh", "-c", _BACKGROUND, "sh", *command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=() if lock is None else (lock,),
            start_new_session=True,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        pass  # no keeper: the next load() builds the frames
    finally:
        if lock is not None:
            os.close(lock)  # the keeper's copy holds the lock now (or nobody's, if it did not start)
