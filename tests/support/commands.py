"""The ``tingbao`` command as a child process, and what tests ask of running processes.

``tingbao`` runs as ``python -c "…main(sys.argv[1:])"`` with this interpreter: the installed
command would do the same, while ``python -m tingbao.edge.cli.main`` would load main.py twice
(as ``__main__`` and as its module)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

TINGBAO = [sys.executable, "-c",
           "import sys; from tingbao.edge.cli.main import main; sys.exit(main(sys.argv[1:]))"]
"""argv prefix that runs the ``tingbao`` command."""


def tingbao(*args, log: Path | None = None, cwd: Path | None = None) -> subprocess.Popen:
    """Start ``tingbao ARGS``. With ``log`` its stdout and stderr are appended to that file;
    without, they are text pipes (read them with ``communicate()``)."""
    argv = [*TINGBAO, *map(str, args)]
    if log is None:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=cwd)
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)


def run_tingbao(*args, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``tingbao ARGS`` to its end; returns it with text ``stdout`` and ``stderr``."""
    return subprocess.run([*TINGBAO, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics(port: int, timeout: float = 2.0) -> dict | None:
    """A collector's ``GET /metrics`` on ``port``; None when nothing answers there."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
            return json.loads(r.read())
    except OSError:
        return None
