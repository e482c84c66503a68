"""With ``xp_gc_freeze = true``, while this process runs experiments, what its collection built
stays out of the garbage collector's full passes.

A session of a big grid holds its collected tree (modules, items, their marks, parameters and
fixture definitions: about 18 objects a test) until it ends. Every full pass of Python's cycle
collector walks all of it and finds nothing to free, and the passes come more often as each
run adds its reports: at 10,000 trivial runs, three or four passes cost 0.37-0.57 s (0.18 s
frozen), 20-40 µs a run. ``gc.freeze()`` once collection is over moves what exists then to the
collector's permanent generation, which its passes skip; what the tests allocate is collected
as before.

Off by default, because a suite can tell: while frozen, those objects are not in
``gc.get_objects()`` nor in ``gc.get_referrers()`` (Hypothesis's ``register_random``, imported
by trio during a test, then warns that its generator is referred to by nothing), and a cycle of
them dropped during the tests stays in memory until the session ends.

The objects are unfrozen as the session is cleaned up (before pytest's last collection, which
looks for unraisable exceptions): the interpreter's own last passes at exit skip frozen objects,
whose finalizers would then run after the modules they need are gone. A process (or a suite's
conftest) that froze objects first keeps its own freeze: this plugin then does nothing.
"""

from __future__ import annotations

import functools
import gc

import pytest

INI_KEY = "xp_gc_freeze"
#: Set while this plugin holds the collector's permanent generation.
_FROZEN_KEY = pytest.StashKey[bool]()


def freeze_collected(config: pytest.Config) -> None:
    """Freeze the objects that exist now (collection is over, experiments are to run), once per session."""
    if _FROZEN_KEY in config.stash or not config.getini(INI_KEY):
        return
    if not hasattr(gc, "freeze") or gc.get_freeze_count():
        return  # no freeze on this interpreter (PyPy), or someone froze first: theirs to undo
    gc.freeze()
    config.stash[_FROZEN_KEY] = True
    config.add_cleanup(functools.partial(_unfreeze, config))


def _unfreeze(config: pytest.Config) -> None:
    if config.stash.get(_FROZEN_KEY, False):
        del config.stash[_FROZEN_KEY]
        gc.unfreeze()
