"""A stack started elsewhere: ``DATA_DIR/state.json``, written by ``tingbao stack up``
(:meth:`Stack.write_state <tingbao.collector.stack.Stack.write_state>`), read back to show
the status of the servers it lists or to stop them (``tingbao stack status|down``).

A pid in the file counts as alive only while ``/proc/PID/cmdline`` still names that
server's config file, so a recycled pid is neither reported nor signalled.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import time
from pathlib import Path

from .errors import StackError
from .processes import HOST, pid_alive, port_answers


def load_state(data_dir: str | os.PathLike[str]) -> dict:
    """The ``state.json`` of a stack started with ``tingbao stack up``; raises StackError when
    there is none."""
    path = Path(data_dir) / "state.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StackError(f"no stack state in {path}: start one with "
                         f"`tingbao stack up --data-dir {data_dir}`") from None
    except (OSError, ValueError) as e:
        raise StackError(f"cannot read {path}: {e}") from e


def status_from_state(data_dir: str | os.PathLike[str]) -> dict:
    """``state.json`` with, for each server, whether its pid is alive (and is that server)
    and whether its port answers now."""
    state = load_state(data_dir)
    for key in ("mqtt", "influxdb"):
        part = state.get(key, {})
        part["alive"] = pid_alive(part.get("pid"), part.get("config"))
        part["answers"] = port_answers(part.get("port") or 0, state.get("host", HOST), 0.5)
        if key == "mqtt" and part.get("tls_port") and part.get("ca_file"):
            try:
                context = ssl.create_default_context(cafile=part["ca_file"])
            except OSError:
                context = None
            part["tls_answers"] = context is not None and port_answers(
                part["tls_port"], state.get("host", HOST), 0.5, ssl_context=context)
    return state


def stop_from_state(data_dir: str | os.PathLike[str], timeout: float = 10.0) -> dict:
    """Stop the servers listed in ``state.json`` (SIGTERM, SIGKILL after ``timeout``
    seconds). Returns ``{"mqtt": outcome, "influxdb": outcome}`` with outcome one of
    ``stopped``, ``killed``, ``not running``."""
    state = load_state(data_dir)
    outcome = {}
    for key in ("influxdb", "mqtt"):
        part = state.get(key, {})
        pid, config = part.get("pid"), part.get("config")
        if not pid_alive(pid, config):
            outcome[key] = "not running"
            continue
        os.kill(pid, signal.SIGTERM)
        outcome[key] = "stopped"
        deadline = time.monotonic() + timeout
        while pid_alive(pid, config):
            if time.monotonic() > deadline:
                if outcome[key] == "killed":
                    raise StackError(f"{key} (pid {pid}) survives SIGKILL; look at it with "
                                     f"`ps -p {pid} -o pid,stat,cmd`")
                os.kill(pid, signal.SIGKILL)
                outcome[key] = "killed"
                deadline = time.monotonic() + 10.0
            time.sleep(0.05)
    state["stopped_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    path = Path(data_dir) / "state.json"
    path.write_text(json.dumps(state, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return outcome
