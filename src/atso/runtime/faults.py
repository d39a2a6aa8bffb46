"""Fault injection for resume tests: ``ATSO_FAULT=point`` makes the process die there, like SIGKILL.

``ATSO_FAULT=point#N`` dies the N-th time the process reaches ``point`` (e.g. ``write:model.pt#3``, the
third model file written). Points: ``train:<job>:<iteration>`` (after that iteration and its checkpoint),
``label:<job>:<n>`` (after the n-th label map of a fold), ``after:<job>`` (the job is recorded finished),
``write:<file name>`` (the temporary file is complete, not yet renamed into place).
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENVIRONMENT_VARIABLE = "ATSO_FAULT"

_reached: Counter[str] = Counter()


def maybe_crash(point: str) -> None:
    """Kill this process with SIGKILL when ``point`` is the one ``ATSO_FAULT`` names (its N-th time for ``#N``)."""
    wanted = os.environ.get(ENVIRONMENT_VARIABLE)
    if not wanted:
        return
    name, _, nth = wanted.partition("#")
    if point != name:
        return
    _reached[point] += 1
    if _reached[point] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
