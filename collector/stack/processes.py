"""Server processes and their liveness: finding ``mosquitto``, ``mosquitto_passwd`` and
``influxd``, starting and stopping one server (:class:`Server`), whether a pid still is that
server, which loopback TCP ports are free or answer, and the tail of a log.

A server's stdout and stderr are appended to its log file; it is stopped with SIGTERM, then
SIGKILL after a timeout (seconds). With ``detach=True`` it gets a session of its own and
outlives the Python process that started it (the ``tingbao stack up --detach`` case); a pid
from ``state.json`` is checked against ``/proc/PID/cmdline`` before it is signalled, so a
recycled pid is never killed. Such a server, still running when a later ``tingbao stack up``
starts the other one, is a :class:`RunningServer`: known by its pid, left alone.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from .errors import StackError

HOST = "127.0.0.1"
"""Every listener of the stack is on loopback."""
INSTALL_HINT = "apt-get install mosquitto mosquitto-clients influxdb"
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
"""Searched after PATH for the servers (Debian installs mosquitto in /usr/sbin, which a
normal user's PATH may lack). :func:`require_tools` reads the value in force from the
package, ``tingbao.collector.stack.SBIN_DIRS``, so that is the one to change."""


def require_tools() -> dict[str, str]:
    """Paths of ``mosquitto``, ``mosquitto_passwd`` and ``influxd``; raises StackError naming
    the packages to install when one is missing."""
    sbin_dirs = getattr(sys.modules.get(__package__), "SBIN_DIRS", SBIN_DIRS)
    found, missing = {}, []
    path = os.pathsep.join([os.environ.get("PATH", ""), *sbin_dirs])
    for tool in ("mosquitto", "mosquitto_passwd", "influxd"):
        where = shutil.which(tool, path=path)
        if where is None:
            missing.append(tool)
        else:
            found[tool] = where
    if missing:
        raise StackError(f"{', '.join(missing)} not found: the tingbao stack needs Mosquitto 2 "
                         f"and InfluxDB 1.x; install them with: {INSTALL_HINT}")
    return found


def mosquitto_version(binary: str) -> str | None:
    """The version printed by ``mosquitto -h`` (e.g. ``2.0.11``), or None."""
    try:
        out = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=10,
                             stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"mosquitto version (\S+)", out)
    return m.group(1) if m else None


# --------------------------------------------------------------------------------- ports
def free_ports(n: int, host: str = HOST, exclude: Iterable[int] = ()) -> list[int]:
    """``n`` distinct TCP ports free on ``host`` right now, none in ``exclude`` (held open
    together while picking, so they differ)."""
    socks, ports, exclude = [], [], set(exclude)
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((host, 0))
            port = s.getsockname()[1]
            if port not in exclude:
                ports.append(port)
        return ports
    finally:
        for s in socks:
            s.close()


def port_free(port: int, host: str = HOST) -> bool:
    """Whether a listener could bind ``host:port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def port_answers(port: int, host: str = HOST, timeout: float = 1.0,
                 ssl_context: ssl.SSLContext | None = None) -> bool:
    """Whether a TCP connect to ``host:port`` (and a TLS handshake, given ``ssl_context``)
    succeeds within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if ssl_context is not None:
                with ssl_context.wrap_socket(sock, server_hostname=host):
                    pass
            return True
    except OSError:  # ssl.SSLError is an OSError
        return False


# ------------------------------------------------------------------------ pids and logs
def tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file (or a note that there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:]) or f"({path} is empty)"


def _proc_state(pid: int) -> str | None:
    """The /proc state letter of ``pid`` (``Z`` zombie), or None when there is no such
    process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def pid_alive(pid: int | None, must_contain: str | None = None) -> bool:
    """Whether process ``pid`` runs (not a zombie) and, if given, its command line contains
    ``must_contain`` (guards against a recycled pid)."""
    if not pid:
        return False
    state = _proc_state(pid)
    if state is None or state in "ZX":
        return False
    if must_contain is not None:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return False
        return must_contain in cmdline
    return True


# ------------------------------------------------------------------------------ servers
class Server:
    """One server process: started with its output appended to a log file, stopped with
    SIGTERM then SIGKILL."""

    def __init__(self, name: str, argv: list[str], log: Path, cwd: Path):
        self.name, self.argv, self.log, self.cwd = name, argv, log, cwd
        self.proc: subprocess.Popen | None = None
        self.detached = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, *, detach: bool = False) -> None:
        """Start the process; ``detach=True`` gives it a session of its own."""
        if self.alive:
            raise StackError(f"{self.name} runs already (pid {self.pid})")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            out.write(f"\n--- tingbao stack: starting {' '.join(self.argv)}\n".encode())
            out.flush()
            try:
                self.proc = subprocess.Popen(
                    self.argv, cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=detach, close_fds=True)
            except OSError as e:
                raise StackError(f"cannot start {self.argv[0]}: {e}; {INSTALL_HINT}") from e
        self.detached = detach

    def send(self, sig: int) -> None:
        if self.alive:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
        """Stop with ``sig`` (SIGTERM), then SIGKILL after ``timeout`` seconds; returns the
        exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def failure(self, what: str) -> StackError:
        """A StackError saying ``what`` went wrong, the exit code if the process ended, and
        the last lines of its log."""
        code = self.proc.poll() if self.proc else None
        exited = f" ({self.name} exited with code {code})" if code is not None else ""
        return StackError(f"{what}{exited}; last lines of {self.log}:\n{tail(self.log)}")


class RunningServer(Server):
    """A server started earlier (by a ``tingbao stack up --detach``) and still running, known
    only by its ``pid`` from ``state.json``: it counts as alive while ``/proc/PID/cmdline``
    contains ``marker`` (its config file), it is signalled by pid, and it is never started by
    this object (a new :class:`Server` takes its place once it is down)."""

    def __init__(self, name: str, argv: list[str], log: Path, cwd: Path, pid: int,
                 marker: str):
        super().__init__(name, argv, log, cwd)
        self._pid = pid
        self.marker = marker
        self.detached = True

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def alive(self) -> bool:
        return pid_alive(self._pid, self.marker)

    def start(self, *, detach: bool = False) -> None:
        raise StackError(f"{self.name} (pid {self._pid}) was started elsewhere"
                         + (" and runs already" if self.alive else "; start a new one"))

    def send(self, sig: int) -> None:
        if self.alive:
            os.kill(self._pid, sig)

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
        """Send ``sig`` (SIGTERM), then SIGKILL after ``timeout`` seconds, and wait until the
        process is gone (its exit code belongs to its parent: None)."""
        if not self.alive:
            return None
        os.kill(self._pid, sig)
        deadline = time.monotonic() + timeout
        killed = False
        while self.alive:
            if time.monotonic() > deadline:
                if killed:
                    raise StackError(f"{self.name} (pid {self._pid}) survives SIGKILL")
                os.kill(self._pid, signal.SIGKILL)
                killed, deadline = True, time.monotonic() + 10.0
            time.sleep(0.05)
        return None
