"""pytest set-up for the whole suite.

Shared helpers and fixtures live in the package ``tests/support`` (see its docstring); test
modules import from ``support.…``, never from each other. The fixtures are registered here as
plugins. Markers (registered in pyproject.toml, ``--strict-markers``):

* ``stack`` — the test starts real servers: set here on every test using the ``stack`` or
  ``fresh_stack`` fixture;
* ``live_audio`` — the test records through a private PulseAudio server: set here on every
  test using ``pulse_server``;
* ``slow`` — long runs (fault injection, hostile streams, the agent in real time, live
  audio); ``pytest -m "not slow"`` is the inner loop, plain ``pytest`` runs everything.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# ``support`` is imported from this directory whatever the rootdir and import mode
sys.path.insert(0, str(Path(__file__).resolve().parent))

pytest_plugins = ["support.stack", "support.pulse"]

_MARK_BY_FIXTURE = {"stack": "stack", "fresh_stack": "stack", "pulse_server": "live_audio"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        for fixture in getattr(item, "fixturenames", ()):
            mark = _MARK_BY_FIXTURE.get(fixture)
            if mark and mark not in {m.name for m in item.iter_markers()}:
                item.add_marker(getattr(pytest.mark, mark))
