"""Pause and continue in the same run: which runs resume continues, how a paused run is
reported, and the interrupt hook.

- ``xp.pause(reason)`` raises :class:`~pytest_experiments.run.RunPaused` in the body; the
  recorder's call wrapper turns it into a skip of the call (pytest's outcome for a body that
  stopped on purpose: exit status 0), marks the report (:func:`mark_paused`, in
  ``user_properties``, which crosses xdist's channel), and the run is stored ``paused``.
  :class:`PausedReports` shows such a report as ``paused`` (``P``) in the progress and the
  final line, in whichever process reports it: an xdist controller has it from the start, any
  other process from its first paused run (:func:`show_paused`), so that a session that pauses
  nothing pays no hook call for it in each phase of each test.
- With ``--xp-resume`` (and ``--xp-retry-failed``), :class:`Continuing` says which grid points'
  latest runs are continued rather than run anew: a ``paused`` one, and an ``interrupted`` one
  when its experiment opts in (``@pytest.mark.experiment(continue_runs=True)``). The claim
  itself continues it (``Store.continue_run``), so that of several resuming sessions exactly
  one does.
- :func:`call_interrupt_hook`: ``pytest_experiments_run_interrupt`` when Ctrl-C or SIGTERM
  (which the plugin turns into a ``KeyboardInterrupt``) stops a run in flight.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pytest_experiments.model import INTERRUPTED, PAUSED, GridKey, GridState
from pytest_experiments.plugin.identity import point_key

if TYPE_CHECKING:
    from pytest_experiments.run import Run

#: The ``user_properties`` entry of a paused call's report: ``(PAUSED_PROPERTY, reason)``.
PAUSED_PROPERTY = "xp_paused"
#: What a continued run's latest status may be: paused always, interrupted when the experiment opts in.
_PAUSED_ONLY = (PAUSED,)
_PAUSED_OR_INTERRUPTED = (PAUSED, INTERRUPTED)


def continues_interrupted(item: pytest.Item) -> bool:
    """Whether ``item``'s experiment continues its interrupted runs (``continue_runs=True``)."""
    mark = item.get_closest_marker("experiment")
    return mark is not None and mark.kwargs.get("continue_runs", False) is True


class Continuing:
    """Which grid points resume continues, from the snapshot it decided from."""

    def __init__(self, states: dict[GridKey, GridState]) -> None:
        self._states = states

    @staticmethod
    def needed(states: dict[GridKey, GridState]) -> bool:
        """Whether any grid point's latest run may be continued (else claims need not ask, per item)."""
        return any(status in _PAUSED_OR_INTERRUPTED for status, _ in states.values())

    def statuses(self, item: pytest.Function) -> tuple[str, ...]:
        """The statuses of ``item``'s latest run that make the claim continue it; () for a new run."""
        state = self._states.get(point_key(item))
        if state is None or state[0] not in _PAUSED_OR_INTERRUPTED:
            return ()
        if continues_interrupted(item):
            return _PAUSED_OR_INTERRUPTED
        return _PAUSED_ONLY if state[0] == PAUSED else ()


def pause_skip(reason: str) -> BaseException:
    """The skip that ends a paused body (its message is what pytest shows for it)."""
    return pytest.skip.Exception(f"xp: paused: {reason}" if reason else "xp: paused")


def mark_paused(report: pytest.TestReport, reason: str, config: pytest.Config) -> None:
    """Mark a call report as a paused run's (builtin types: it crosses xdist's channel), and show
    it so in this process (the report's hooks come after this)."""
    report.user_properties.append((PAUSED_PROPERTY, reason))
    show_paused(config)


def show_paused(config: pytest.Config) -> None:
    """Register :class:`PausedReports` in this process, once (and never when it is blocked with ``-p no:``)."""
    if not config.pluginmanager.has_plugin(PAUSED_REPORTS) and not config.pluginmanager.is_blocked(PAUSED_REPORTS):
        config.pluginmanager.register(PausedReports(), PAUSED_REPORTS)


def paused_reason(report: pytest.TestReport) -> str | None:
    """The pause's reason of a report :func:`mark_paused` marked, else None."""
    for entry in report.user_properties:
        if len(entry) == 2 and entry[0] == PAUSED_PROPERTY:
            return str(entry[1])
    return None


#: The name :class:`PausedReports` is registered under.
PAUSED_REPORTS = "xp-paused-reports"


class PausedReports:
    """A paused run's call shows as ``paused`` (``P``, ``PAUSED``), counted so in pytest's final line."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_teststatus(
        self, report: pytest.TestReport, config: pytest.Config
    ) -> tuple[str, str, tuple[str, dict[str, bool]]] | None:
        if report.when == "call" and report.skipped and paused_reason(report) is not None:
            return "paused", "P", ("PAUSED", {"yellow": True})
        return None


def call_interrupt_hook(item: pytest.Item, run: Run, exc: BaseException) -> None:
    """``pytest_experiments_run_interrupt(run)`` when Ctrl-C or SIGTERM stopped ``run`` (a
    ``KeyboardInterrupt``; the plugin raises one for SIGTERM). A hook that fails does not stop
    the run from being stored: its error is kept in the run's metadata."""
    if not isinstance(exc, KeyboardInterrupt):
        return
    try:
        item.ihook.pytest_experiments_run_interrupt(run=run)
    except Exception as error:
        run.metadata["interrupt_hook_error"] = f"{type(error).__name__}: {error}"
