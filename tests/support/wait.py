"""Waiting in tests: on a condition (:func:`wait_for`), or for a stretch of time that is itself
part of what a test does (:func:`hold`).

A fixed ``time.sleep`` that waits for something is a guess: too short on a loaded machine, too
long everywhere else. Wait for the condition instead. A pause that IS the test (an outage that
lasts 30 s, a consumer slow on purpose, a window in which a duplicate would show) goes through
:func:`hold`, which says why.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

POLL_S = 0.05
"""Default polling interval of :func:`wait_for`."""


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, what: str = "condition",
             interval: float = POLL_S, detail: Callable[[], object] | None = None) -> T:
    """Poll ``predicate()`` every ``interval`` seconds until it returns something true, and
    return that. After ``timeout`` seconds fail with an AssertionError naming ``what`` was
    waited for (and the text of ``detail()``, when given: a log tail, the last answer)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            message = f"timed out after {timeout:g} s waiting for {what}"
            if detail is not None:
                message += f": {detail()}"
            raise AssertionError(message)
        time.sleep(interval)


def hold(seconds: float, why: str) -> None:
    """Let ``seconds`` of wall time pass on purpose: the pause is part of the test, not a
    wait for something (``why`` says what it is; it shows in a traceback)."""
    assert why, "say why this pause is not a wait on a condition"
    if seconds > 0:
        time.sleep(seconds)
