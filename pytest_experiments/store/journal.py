"""The journal: an append-only file per writing process, folded into the store in batches.

What a process records (run starts, metric points, run ends) is first appended to its own
journal with one unbuffered ``os.write`` on an ``O_APPEND`` descriptor: once the call returns
the bytes are in the page cache, which survives a SIGKILL of the process (not a power loss:
the guarantee of SQLite's ``synchronous=NORMAL``). The store catches up in batches
(:meth:`Store.fold_journals`): the writer folds its own journal between runs (once a second at
most), or hands that to a folding process of its own (``store/folder.py``), and folds it at its
end; a crashed writer's journal is folded by the next process that writes the store. A fold
reads the journal from the offset stored with it, applies what it finds and moves the offset
on in one store transaction, so that two processes folding the same journal at once fold it
exactly once. Readers that do not write read the part not folded yet
(:mod:`pytest_experiments.store.journal_view`).

The file, one record a line, UTF-8::

    H <json: who writes (session, host, pid, pid namespace, process start, worker)>
    S <json: run id, node id, module, experiment, param hash, started at, folder> <json: params>
    P <run id> <seq> <step or empty> <value as repr> <json: metric name>
    E <json: run id, status, times, code, error, tags, artefacts> <json: result> <json: metrics,
      or = when they are the result's very text> <json: logged params> <json: metadata>

fields separated by tabs (compact JSON holds no tab or newline). A run's process, session and
worker are the header's. The values are the JSON text the store keeps, written as they are: a
JSON string holding them would escape each quote, a cost per character. A function's source is
written with the first run of it in the journal, later runs name it by its hash (the store keeps
code by hash, and a fold takes a journal's lines in order). The lines of older journals (``S``
and ``E`` as one JSON list of every field, ASCII) read as before. A line without its newline (a
write cut short) is not a record yet.
Journals live in ``journals/`` of an SQLite store's folder, or of a server store's artefacts
root (which every host sees). No pytest, no SQL.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

from pytest_experiments.model import Artifact, RunEnd, RunStart
from pytest_experiments.store.liveness import Liveness, Process
from pytest_experiments.values import FLOAT_ONLY, RawJSON, ascii_dumps, dumps

#: The folder of journals, in a store's root.
JOURNALS_DIR = "journals"
SUFFIX = ".journal"
#: At most this many bytes of a journal are folded in one transaction (a crashed writer's
#: journal of a million points is folded in several, each exactly once).
FOLD_CHUNK = 1 << 19

_loads = json.JSONDecoder().decode
_POINT = re.compile(r"^P\t([^\t\n]*)\t(\d+)\t(-?\d*)\t([^\t\n]*)\t([^\n]*)$", re.MULTILINE)
_OTHER = re.compile(r"^[^P\n].*$", re.MULTILINE)
_dumps = ascii_dumps
# Positions in the records (written positionally: a tenth shorter, and faster both ways).
_PARAMS = RunStart._fields.index("params")
_ERROR = RunEnd._fields.index("error_type")
#: What the runs of one process share, written once in its journal's header, in this order.
SHARED_FIELDS = ("session_id", "worker", "host", "pid", "pid_namespace", "pid_started")
_shared = itemgetter(*map(RunStart._fields.index, SHARED_FIELDS))
#: The rest of a run's start but its parameters, in the order of a start line.
_OWN_FIELDS = ("run_id", "node_id", "module", "experiment", "param_hash", "started_at", "dir")
_own = itemgetter(*map(RunStart._fields.index, _OWN_FIELDS))
_ARTIFACTS = RunEnd._fields.index("artifacts")
#: An end line's metrics when they are its result, as text: the usual trivial run returns a dict
#: of floats, which are its metrics (printing a float is most of what writing one costs).
SAME_AS_RESULT = "="


def _same_text(metrics: dict[str, float], result: Any) -> bool:
    """Whether ``metrics`` are written as the very text of ``result``: the same floats by the same
    names in the same order. A zero is left out: 0.0 == -0.0, and their texts differ."""
    return (
        type(result) is dict
        and metrics == result
        and list(metrics) == list(result)
        and FLOAT_ONLY.issuperset(map(type, metrics.values()))
        and FLOAT_ONLY.issuperset(map(type, result.values()))  # an int 3 equals 3.0, and prints as 3
        and 0.0 not in metrics.values()
    )


def journals_dir(root: Path) -> Path:
    """Where the journals of the store whose run folders are under ``root`` live."""
    return root / JOURNALS_DIR


def journal_files(root: Path) -> list[Path]:
    """The journals of a store, oldest name first (none when there is no folder)."""
    try:
        names = os.listdir(journals_dir(root))
    except OSError:
        return []
    return [journals_dir(root) / name for name in sorted(names) if name.endswith(SUFFIX)]


class JournalWriter:
    """This process's journal: every record one ``os.write`` of a whole line.

    ``point`` is the hot path (``xp.log_metric``): a formatted line and a write, a few
    microseconds; nothing is kept in memory but the encoded metric names.
    """

    def __init__(self, root: Path, writer: Process, session_id: str, worker: str = "main") -> None:
        folder = journals_dir(root)
        folder.mkdir(parents=True, exist_ok=True)
        # The name only has to be unique; who writes is in the header.
        name = f"{session_id}-{writer.pid}-{secrets.token_hex(4)}{SUFFIX}"
        self.path = folder / name
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        self._names: dict[str, str] = {}
        # What every run of this process shares, as a RunStart holds it: left out of its line.
        self._shared = (session_id, worker, writer.host, writer.pid, writer.pid_namespace, writer.started)
        #: The functions whose source a line of this journal holds already.
        self._sources: set[str] = set()
        header = {"session_id": session_id, **writer._asdict(), "worker": worker}
        self._write(f"H\t{_dumps(header)}\n")

    def _write(self, line: str) -> None:
        data = line.encode()
        try:
            written = os.write(self._fd, data)
            while written < len(data):  # a short write (a signal, a nearly full disk): the rest, in order
                written += os.write(self._fd, data[written:])
        except OSError as exc:  # named after the journal, so that it reads as the store's failure
            raise OSError(exc.errno, exc.strerror, str(self.path)) from None

    def start(self, start: RunStart) -> None:
        """A run starts (``running``)."""
        # Positional, its parameters as the store keeps them: a fold passes that text on as it is.
        if _shared(start) != self._shared:
            # Another process's run (never the plugin's): every field, as older journals hold them.
            self._write(f"S\t{_dumps((*start[:_PARAMS], dumps(start.params), *start[_PARAMS + 1 :]))}\n")
            return
        self._write(f"S\t{_dumps(_own(start))}\t{dumps(start.params)}\n")

    def point(self, run_id: str, name: str, seq: int, step: int | None, value: float) -> None:
        """One logged point of metric ``name``."""
        encoded = self._names.get(name)
        if encoded is None:
            encoded = _dumps(name)
            if len(self._names) < 10_000:  # a run naming a new metric every step is not cached
                self._names[name] = encoded
        data = f"P\t{run_id}\t{seq}\t{'' if step is None else step}\t{value!r}\t{encoded}\n".encode()
        try:  # the whole line in one write: an O_APPEND write of a few bytes is never split
            if os.write(self._fd, data) == len(data):
                return
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(self.path)) from None
        raise OSError(errno.ENOSPC, "short write to the journal", str(self.path))

    def end(self, end: RunEnd) -> None:
        """A run ends; its points were written as they were logged."""
        # Positional, without points (P records), its JSON values as the store keeps them.
        source = end.code_source
        if source is not None and end.code_sha256 is not None:
            if end.code_sha256 in self._sources:
                source = None  # an earlier line of this journal holds it
            else:
                self._sources.add(end.code_sha256)
        record = (
            end.run_id, end.status, end.finished_at, end.duration, end.code_sha256, source, *end[_ERROR:_ARTIFACTS],
            [list(artifact) for artifact in end.artifacts] if end.artifacts else (),
        )  # fmt: skip
        logged = dumps(end.logged_params) if end.logged_params else "{}"  # most runs log no parameter
        metrics = SAME_AS_RESULT if _same_text(end.metrics, end.result) else dumps(end.metrics)
        values = f"{dumps(end.result)}\t{metrics}\t{logged}\t{dumps(end.metadata)}"
        self._write(f"E\t{_dumps(record)}\t{values}\n")

    def size(self) -> int:
        """How many bytes were written so far."""
        return os.fstat(self._fd).st_size

    def touch(self) -> None:
        """Mark the journal as written now: its age tells other hosts whether the writer lives."""
        os.utime(self._fd)

    def close(self) -> None:
        """Close the file (it stays until it is folded)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@dataclass
class Batch:
    """The records of a journal between two offsets, grouped for one store transaction."""

    #: Who wrote the journal (None: its header is not in this batch).
    writer: Process | None = None
    starts: list[RunStart] = field(default_factory=list)
    #: (run id, metric name, seq, step, value)
    points: list[tuple[str, str, int, int | None, float]] = field(default_factory=list)
    ends: list[RunEnd] = field(default_factory=list)
    #: The offset just after the last whole line read.
    end: int = 0
    #: Whether the read stopped at its limit: more may follow.
    more: bool = False

    def latest(self) -> dict[str, dict[str, float]]:
        """Each run's latest value of each metric with points here, for runs that did not end here."""
        ended = {end.run_id for end in self.ends}
        latest: dict[str, dict[str, float]] = {}
        for run_id, name, _, _, value in self.points:
            if run_id not in ended:
                latest.setdefault(run_id, {})[name] = value
        return latest

    def __len__(self) -> int:
        return len(self.starts) + len(self.points) + len(self.ends)


def read_batch(path: Path, offset: int, limit: int | None = FOLD_CHUNK) -> Batch:
    """The whole records of the journal at ``path`` from ``offset`` (at most about ``limit`` bytes).

    A journal that is gone (folded and removed meanwhile) reads as an empty batch ending at ``offset``.
    """
    batch = Batch(end=offset)
    try:
        with open(path, "rb") as file:
            header = _header(file.readline())  # who writes, whatever the offset
            file.seek(offset)
            data = file.read() if limit is None else file.read(limit)
    except OSError:
        return batch
    shared = None
    if header is not None:
        batch.writer, shared = header
    batch.more = limit is not None and len(data) >= limit
    last = data.rfind(b"\n")
    if last < 0:
        return batch
    batch.end = offset + last + 1
    text = data[: last + 1].decode("utf-8", "replace")
    # Points are most of a journal: found by one regular expression over the whole chunk and
    # converted in one comprehension (a third of the time of a loop over lines); the few other
    # records line by line. Their relative order does not matter to a fold: a run's start comes
    # before its points and its end in any chunk (see ``Batch``), and points keep their order.
    if not (text.startswith("P\t") or "\nP\t" in text):
        # No point (a journal of many short runs): splitting the lines costs less than the searches.
        others = text.split("\n")
    else:
        names: dict[str, str] = {}
        try:
            batch.points = [
                (run_id, names.get(name) or names.setdefault(name, _loads(name)), int(seq),
                 int(step) if step else None, float(value))
                for run_id, seq, step, value, name in _POINT.findall(text)
            ]  # fmt: skip
        except ValueError:  # a damaged line (never written by this module): the others still count
            batch.points = []
            for line in text.splitlines():
                if line.startswith("P"):
                    _parse(line, batch, shared)
        others = _OTHER.findall(text)
    for line in others:
        _parse(line, batch, shared)
    return batch


#: What a run's start leaves to its journal's header: session, worker, host, pid, pid namespace, process start.
Shared = tuple[str, str, str, int, str, str]


def _header(line: bytes) -> tuple[Process, Shared] | None:
    """Who writes the journal, and what its runs' starts share, from its first line."""
    if not line.startswith(b"H\t") or not line.endswith(b"\n"):
        return None
    try:
        fields = _loads(line[2:].decode("utf-8"))
        writer = Process(str(fields["host"]), int(fields["pid"]), str(fields["pid_namespace"]), str(fields["started"]))
        worker = str(fields.get("worker", "main"))  # older journals wrote it with every run
        return writer, (str(fields["session_id"]), worker, *writer)
    except (ValueError, KeyError, TypeError):
        return None


def _parse(line: str, batch: Batch, shared: Shared | None) -> None:
    kind, _, rest = line.partition("\t")
    try:
        if kind == "P":
            run_id, seq, step, value, name = rest.split("\t", 4)
            batch.points.append((run_id, _loads(name), int(seq), int(step) if step else None, float(value)))
        elif kind == "S":
            batch.starts.append(_start(rest, shared))
        elif kind == "E":
            batch.ends.append(_end(rest))
    except (ValueError, TypeError):
        pass  # a damaged line (never written by this module): the rest of the journal still counts


def _start(rest: str, shared: Shared | None) -> RunStart:
    """A start line's run (its parameters stay JSON text, a :class:`RawJSON`, for the store)."""
    own, tab, params = rest.partition("\t")
    if not tab:  # every field in one list, as older journals and other processes' runs write it
        fields = _loads(rest)
        fields[_PARAMS] = RawJSON(fields[_PARAMS])
        return RunStart(*fields)
    if shared is None:
        raise ValueError("a start line without its journal's header")
    values: dict[str, Any] = dict(zip(_OWN_FIELDS, _loads(own), strict=True))
    values.update(zip(SHARED_FIELDS, shared, strict=True))
    values["params"] = RawJSON(params)  # the store's text, passed on as it is
    return RunStart(**values)


def _end(rest: str) -> RunEnd:
    """An end line's run: result, metrics, logged params and metadata stay JSON text (RawJSON) for the store."""
    parts = rest.split("\t")
    if len(parts) == 1:  # older journals: every field in one list, the values as JSON strings
        read: list[Any] = _loads(rest)
        fields = [*read[:4], RawJSON(read[4]), RawJSON(read[5]), [], *map(RawJSON, read[6:8]), *read[8:-1]]
        fields.append(tuple(Artifact(*artifact) for artifact in read[-1]) if read[-1] else ())
        return RunEnd(*fields)
    own, result, metrics, logged_params, metadata = parts
    if metrics == SAME_AS_RESULT:
        metrics = result
    run_id, status, finished_at, duration, *code_to_tags, artifacts = _loads(own)
    fields = [
        run_id, status, finished_at, duration, RawJSON(result), RawJSON(metrics), [], RawJSON(logged_params),
        RawJSON(metadata), *code_to_tags, tuple(Artifact(*artifact) for artifact in artifacts),
    ]  # fmt: skip
    return RunEnd(*fields)


def writer_is_live(writer: Process | None, path: Path, liveness: Liveness) -> bool:
    """Whether the journal at ``path`` may still be written to.

    In sight, the writer's process decides; out of sight, the journal's age does (its writer
    touches it with every heartbeat): live while younger than the lease.
    """
    try:
        touched = path.stat().st_mtime
    except OSError:
        return False
    if writer is None:  # not even a header: a writer that died as it opened the file, or is opening it
        return time.time() - touched < liveness.lease
    return liveness.is_live(writer, touched, None, time.time())


def records(path: Path) -> Iterator[str]:
    """Every whole line of a journal (for tests and debugging)."""
    with open(path, encoding="utf-8") as file:
        for line in file:
            if line.endswith("\n"):
                yield line.rstrip("\n")
