"""The stack's two exceptions.

* :class:`StackError`: the stack cannot be set up, started, stopped or asked; the text says
  what to do (install a package, free a port, restore a file, look at a log).
* :class:`InfluxUnreachable`: InfluxDB gave no HTTP answer at all (connection refused or
  reset, timeout). It is a StackError and also a ``ConnectionError`` (an ``OSError``), as the
  stack's earlier urllib code raised, so callers that catch either keep working.
"""

from __future__ import annotations


class StackError(RuntimeError):
    """The stack cannot be set up, started or stopped; the text says what to do."""


class InfluxUnreachable(StackError, ConnectionError):
    """InfluxDB did not answer (no HTTP status): it is not running, or not yet."""
