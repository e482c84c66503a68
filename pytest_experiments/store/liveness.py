"""Whether the process that wrote a ``running`` run can still be running it.

A run records who runs it: host, pid namespace, pid and the process's start time. A reader
decides from that and the heartbeat of the run's session:

- a finished session runs nothing any more;
- out of sight (another host, another pid namespace, or another boot: before a reboot, or a
  machine sharing the hostname) only the heartbeat can tell: the run is live while its session
  renewed the heartbeat within the lease;
- in sight the process decides at once: a pid that no process holds is dead, and a pid held
  by a process that started at another time was reused, so the run's process is dead too.
  Where the start time cannot be read (no ``/proc``, a run written by an older version), a
  live pid is not proof enough: the heartbeat must be within the lease too.

No pytest, no SQL: every store backend shares this.
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path
from typing import NamedTuple

# Defined in the package (the plugin's options need it in every session), the backends' default.
from pytest_experiments.store import DEFAULT_LEASE_S as DEFAULT_LEASE_S


class Process(NamedTuple):
    """Who runs a run, as written with it."""

    host: str
    pid: int
    #: The pid namespace (Linux): containers sharing a hostname have different ones.
    pid_namespace: str = ""
    #: :func:`process_start` of ``pid`` when the run was written ("" when unknown).
    started: str = ""


def pid_namespace() -> str:
    """This process's pid namespace (Linux), so that containers sharing a hostname differ."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


@functools.cache
def _boot_id() -> str:
    # Start times count from boot: after a reboot the same pid and start time may recur.
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` from the third (state) on; None without one."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    return stat.rsplit(")", 1)[-1].split()


def _start_of(fields: list[str]) -> str:
    # Field 22, starttime: clock ticks since boot at which the process started. A tick is
    # 10 ms, and a pid is handed out again only after the whole pid space went round.
    return f"{_boot_id()}:{fields[19]}" if len(fields) > 19 else ""


def process_start(pid: int) -> str:
    """When process ``pid`` started, as an opaque token ("" when it cannot be read).

    Two processes that held the same pid one after the other have different tokens.
    """
    fields = _stat_fields(pid)
    return "" if fields is None else _start_of(fields)


def pid_is_dead(pid: int) -> bool:
    """True when no live process has ``pid`` on this host (zombies count as dead)."""
    return _running_start(pid) is None


def _running_start(pid: int) -> str | None:
    """None when ``pid`` is not a live process here, else its start token ("" when unknown)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # another user's process: it exists
    fields = _stat_fields(pid)
    if fields is None:
        return ""
    # Linux: a killed child not yet reaped by its parent still answers kill(0).
    return None if fields[0] == "Z" else _start_of(fields)


class Liveness:
    """Judges runs from the point of view of this process (see the module doc)."""

    def __init__(self, lease: float) -> None:
        #: Seconds a session's heartbeat stays valid.
        self.lease = lease
        self.host = socket.gethostname()
        self.pid_namespace = pid_namespace()

    def is_live(self, process: Process, heartbeat: float | None, finished: float | None, now: float) -> bool:
        """Whether ``process`` can still be running a run of a session with this ``heartbeat``
        (its last renewal, seconds since the epoch) and ``finished`` time, at ``now``."""
        if finished is not None:
            return False
        fresh = heartbeat is not None and heartbeat >= now - self.lease
        if not self._in_sight(process):
            return fresh
        current = _running_start(process.pid)
        if current is None:
            return False
        if current and process.started:
            return current == process.started  # otherwise the pid was reused
        return fresh

    def _in_sight(self, process: Process) -> bool:
        """Whether ``process`` ran on this machine, in this pid namespace, since the last boot."""
        if process.host != self.host or process.pid_namespace != self.pid_namespace:
            return False
        # Another boot id: written before a reboot, or on another machine with the same
        # hostname (the initial pid namespace has the same number on every Linux machine).
        return not process.started or process.started.rpartition(":")[0] == _boot_id()
