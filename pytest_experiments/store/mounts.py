"""Which filesystem a path is on, from the mount table: an SQLite store must be on a local one.

SQLite in WAL mode keeps its lock state in shared memory (the ``-shm`` file, memory-mapped)
and relies on POSIX locks: on a filesystem served over the network, processes on different
hosts do not see each other's shared memory, and the locks are missing or unreliable, so
concurrent writers corrupt the database. Those filesystems are refused when a session starts,
with the two ways out: a PostgreSQL store, or one SQLite store per node on its local disk
(``--xp-shard``) merged afterwards (``pytest-experiments merge``).

The table is ``/proc/self/mountinfo`` (else ``/proc/mounts``; neither exists outside Linux,
where nothing is checked). ``XP_MOUNT_TABLE`` names another file to read instead: a test hook,
so that the refusal can be tested end to end with a faked table.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

#: Filesystem types (as the mount table names them) on which an SQLite store is refused:
#: network and cluster filesystems, and FUSE filesystems over the network or object storage.
#: ``9p`` is what WSL2 mounts Windows drives with, and what VMs share folders over.
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "lustre", "gpfs", "beegfs", "glusterfs",
    "ceph", "orangefs", "pvfs2", "9p", "fuse.sshfs", "fuse.glusterfs", "fuse.ceph-fuse", "fuse.s3fs",
    "fuse.gcsfuse", "fuse.rclone", "fuse.juicefs",
})  # fmt: skip
#: The test hook: a file read instead of the system's mount table.
MOUNT_TABLE_ENV = "XP_MOUNT_TABLE"
_SYSTEM_TABLES = ("/proc/self/mountinfo", "/proc/mounts")
# The kernel writes a space, tab, newline or backslash in a path as an octal escape.
_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    return _ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), field)


def parse_mount_table(text: str) -> list[tuple[str, str]]:
    """``(mount point, filesystem type)`` of each mount, in table order.

    Reads both formats: ``/proc/self/mountinfo`` (``ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS
    [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS``) and ``/proc/mounts`` (``SOURCE MOUNTPOINT
    FSTYPE OPTIONS 0 0``). Lines that are neither are skipped.
    """
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" in fields and len(fields) >= 7 and fields[0].isdigit():
            separator = fields.index("-")
            if separator + 1 < len(fields):
                mounts.append((_unescape(fields[4]), fields[separator + 1]))
        elif len(fields) >= 3:
            mounts.append((_unescape(fields[1]), fields[2]))
    return mounts


def filesystem_of(path: str, table: str) -> tuple[str, str] | None:
    """``(filesystem type, mount point)`` that ``path`` (absolute, resolved) is on: its longest
    mount point prefix, the later of two mounts on the same point (it hides the earlier)."""
    found: tuple[str, str] | None = None
    for mount_point, fstype in parse_mount_table(table):
        inside = path == mount_point or path.startswith(mount_point.rstrip("/") + "/")
        if inside and (found is None or len(mount_point) >= len(found[1])):
            found = (fstype, mount_point)
    return found


def network_filesystem(path: str, table: str) -> tuple[str, str] | None:
    """``(filesystem type, mount point)`` when ``path`` is on a network filesystem, else None."""
    found = filesystem_of(path, table)
    return found if found is not None and found[0].lower() in NETWORK_FILESYSTEMS else None


def read_mount_table() -> str | None:
    """The mount table's text (``XP_MOUNT_TABLE``'s file when set), or None where there is none."""
    override = os.environ.get(MOUNT_TABLE_ENV)
    for name in (override,) if override else _SYSTEM_TABLES:
        try:
            with open(name, encoding="utf-8", errors="surrogateescape") as table:
                return table.read()
        except OSError:
            continue
    return None


def network_store_problem(folder: Path) -> str | None:
    """Why an SQLite store in ``folder`` (an existing folder) cannot be used there, or None."""
    table = read_mount_table()
    if table is None:
        return None
    resolved = os.path.realpath(folder)
    found = network_filesystem(resolved, table)
    if found is None:
        return None
    fstype, mount_point = found
    return (
        f"{resolved} is on a network filesystem ({fstype}, mounted at {mount_point}), where SQLite's locks "
        "fail and concurrent writers corrupt the store; use a PostgreSQL store (--xp-store=postgresql://...), "
        "or one SQLite store per node on a local disk (--xp-shard) merged afterwards (pytest-experiments merge)"
    )
