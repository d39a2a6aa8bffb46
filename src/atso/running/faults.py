"""Fault injection for resume tests: ``ATSO_FAULT=point`` makes the process die there, like SIGKILL."""

from __future__ import annotations

import os
import signal

ENVIRONMENT_VARIABLE = "ATSO_FAULT"


def maybe_crash(point: str) -> None:
    """Kill this process with SIGKILL when ``point`` equals the ``ATSO_FAULT`` variable."""
    if os.environ.get(ENVIRONMENT_VARIABLE) == point:
        os.kill(os.getpid(), signal.SIGKILL)
