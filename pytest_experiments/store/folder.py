"""A folding process: folds one writer's journal into the store while the writer runs tests.

A fold (reading the journal, building rows, SQLite's or the server's work) costs a recording
process about a third of what recording a trivial run costs. A session that records for more
than a moment hands its folds to a process of its own (in effect ``python -m
pytest_experiments.store.folder``), which runs beside the tests, on another core when there is
one, and folds the journal as often as its writer would (once a second) until the writer
closes the pipe it reads (or dies: the pipe closes then too), then folds it once more and exits.

Nothing here decides what a fold does: :meth:`Store.fold_journals` folds exactly once whoever
folds, so the writer's own last fold, a reader's, and this process's may meet. A store that
cannot take the journal stops the session as a failed write does: this process raises the
session's stop flag (:func:`raise_stop_flag`), which every process of the session looks at
before each experiment, and exits. Once its writer is closing, it raises no flag: the writer's
own last fold meets the failure and says so. No pytest.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

from pytest_experiments.store.children import python_command
from pytest_experiments.store.location import describe_failure, shown

#: The shortest period between two folds (a test's setting of 0 must not spin).
MIN_PERIOD_S = 0.01
#: How long a closing writer waits for its folding process's last fold before folding itself.
EXIT_WAIT_S = 60.0


def describe_writing(error: BaseException, location: Path | str) -> str:
    """One line for ``error``, met while writing the store at ``location`` (a folder or a URL)."""
    message = describe_failure(error, location)
    return f"cannot write the store {shown(location)} ({type(error).__name__}: {error})" if message is None else message


def raise_stop_flag(flag: str, message: str) -> None:
    """Create the session's stop flag holding ``message``, unless another process raised it first.

    Best effort: without the flag, the session's other processes stop at their own failure.
    """
    try:
        descriptor = os.open(flag, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return
    try:
        os.write(descriptor, message.encode())
    except OSError:
        pass  # an empty flag still stops the others
    finally:
        os.close(descriptor)


class FoldingProcess:
    """The writer's side: starts the folding process and, as the writer closes, waits for its last fold."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process

    @classmethod
    def start(
        cls,
        location: Path | str,
        artifacts: Path | None,
        lease: float,
        journal: Path,
        stop_flag: str,
        every: float,
    ) -> FoldingProcess:
        """Start folding ``journal`` into the store at ``location`` every ``every`` seconds;
        raises ``OSError`` if it cannot start."""
        if not sys.executable:
            raise OSError("no Python interpreter to start")
        args = python_command(__name__, [str(location), str(journal), stop_flag])
        args += ["--lease", repr(lease), "--every", repr(every)]
        if artifacts is not None:
            args += ["--artifacts", str(artifacts)]
        process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return cls(process)

    def alive(self) -> bool:
        """Whether the process still runs (a waitpid without waiting)."""
        return self._process.poll() is None

    def finish(self, timeout: float = EXIT_WAIT_S) -> None:
        """Ask for the last fold (the pipe closes) and wait for it; past ``timeout``, kill the process."""
        with contextlib.suppress(OSError):
            if self._process.stdin is not None:
                self._process.stdin.close()
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pytest_experiments.store.folder")
    parser.add_argument("location", help="the store: a folder or a server store's URL")
    parser.add_argument("journal", type=Path, help="the journal to fold")
    parser.add_argument("stop_flag", help="the session's stop flag, raised when the store fails")
    parser.add_argument("--lease", type=float, required=True)
    parser.add_argument("--every", type=float, required=True, help="seconds between two folds")
    parser.add_argument("--artifacts", type=Path, default=None)
    return parser.parse_args(argv)


def _writer_closed(timeout: float) -> bool:
    """Wait up to ``timeout`` for the writer to close its end of the pipe (or to die)."""
    readable, _, _ = select.select([sys.stdin.buffer], [], [], timeout)
    return bool(readable) and not os.read(sys.stdin.fileno(), 4096)


def main(argv: list[str] | None = None) -> int:
    """Fold the journal every ``--every`` seconds until the writer closes the pipe, then once more."""
    # Ctrl-C and a scheduler's SIGTERM reach the whole process group: the writer handles them,
    # and closes the pipe when it is done; this process folds until then.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    options = _parse(sys.argv[1:] if argv is None else argv)
    from pytest_experiments.store.base import Store

    location: Path | str = options.location
    closing = False
    try:
        with Store.open(location, lease=options.lease, artifacts=options.artifacts) as store:
            while not closing:
                closing = _writer_closed(max(options.every, MIN_PERIOD_S))
                store.fold_journals([options.journal])
    except Exception as exc:
        if not closing:  # a closing writer's own last fold meets the failure, and says so
            raise_stop_flag(options.stop_flag, describe_writing(exc, location))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
