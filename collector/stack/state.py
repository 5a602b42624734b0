"""A stack started elsewhere: ``DATA_DIR/state.json``, written by ``tingbao stack up``
(:meth:`Stack.write_state <tingbao.collector.stack.Stack.write_state>`), read back to show
the status of the servers it lists or to stop them (``tingbao stack status|down``).

A pid in the file counts as alive only while ``/proc/PID/cmdline`` still names that
server's config file, so a recycled pid is neither reported nor signalled. The status lists
the servers that are down (``"down"``); ``tingbao stack up`` on the same directory starts
those again and leaves the running one alone.
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


SERVERS = (("mqtt", "mosquitto"), ("influxdb", "influxd"))
"""(key in ``state.json``, process name) of the stack's servers."""


def status_from_state(data_dir: str | os.PathLike[str]) -> dict:
    """``state.json`` with, for each server, whether its pid is alive (and is that server)
    and whether its port answers now, and ``"down"``: the keys (``mqtt``, ``influxdb``) of
    the servers whose process is not running."""
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
    state["down"] = [key for key, _ in SERVERS if not state.get(key, {}).get("alive")]
    return state


def status_lines(state: dict, data_dir: str | os.PathLike[str]) -> list[str]:
    """One line per server of a :func:`status_from_state` answer: running (pid, address) or
    DOWN, with the command that starts it again."""
    host = state.get("host", HOST)
    out = []
    for key, name in SERVERS:
        part = state.get(key, {})
        where = f"{host}:{part.get('port')}"
        if part.get("alive"):
            answers = "answers" if part.get("answers") else "does NOT answer"
            out.append(f"{name}: running, pid {part.get('pid')}, {where} {answers}")
        else:
            out.append(f"{name}: DOWN (pid {part.get('pid')} is not running); "
                       f"`tingbao stack up --data-dir {data_dir}` starts it again on {where}")
    return out


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
