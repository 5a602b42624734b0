"""The private PulseAudio server for live-audio tests. A pytest plugin (``pytest_plugins`` in
tests/conftest.py); tests using ``pulse_server`` are marked ``live_audio``.

``pulse_server`` starts a private PulseAudio server (no sound card needed) so that the
sounddevice/PortAudio input path is tested with real audio, as described in
/work/shared/reference/infrastructure.md: a null sink ``factory`` whose monitor is the
default source, reached through the ALSA ``pulse`` device.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.wait import wait_for

PULSE_INSTALL_HINT = (
    "install with: apt-get install pulseaudio pulseaudio-utils libportaudio2 libasound2-plugins"
)


@dataclasses.dataclass(frozen=True)
class PulseServer:
    """A running private PulseAudio server.

    Attributes:
        dir: its runtime directory (socket, pid file, config).
        socket: path of its native-protocol socket.
        env: environment for client programs (paplay, pactl) talking to it.
        sink: name of its null sink; ``sink + ".monitor"`` is the default source.
    """

    dir: Path
    socket: Path
    env: dict[str, str]
    sink: str = "factory"

    def play(self, path: str | os.PathLike[str]) -> subprocess.Popen[bytes]:
        """Start ``paplay`` of a sound file into the null sink; returns the process."""
        return subprocess.Popen(
            ["paplay", f"--device={self.sink}", os.fspath(path)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )


def _require_tools() -> None:
    missing = [tool for tool in ("pulseaudio", "paplay", "pactl") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"live-audio tests need {', '.join(missing)}; {PULSE_INSTALL_HINT}",
                    pytrace=False)
    from tingbao.edge.sources import SourceError, live

    try:
        live._sounddevice()
    except SourceError as exc:
        pytest.fail(f"{exc}; {PULSE_INSTALL_HINT}", pytrace=False)


@pytest.fixture(scope="module")
def pulse_server() -> Iterator[PulseServer]:
    """Start a private PulseAudio server in a temporary directory for this test module.

    Sets ``XDG_RUNTIME_DIR``, ``PULSE_SERVER`` and ``PULSE_SOURCE`` in ``os.environ``
    (restored afterwards) and makes PortAudio enumerate devices again, so that the
    sounddevice device ``"pulse"`` records the null sink's monitor. Fails, not skips,
    when PulseAudio or PortAudio are missing.
    """
    _require_tools()
    from tingbao.edge.sources import refresh_devices

    # short path: a unix socket path must fit in 108 bytes
    rundir = Path(tempfile.mkdtemp(prefix="tb-pulse-"))
    sock = rundir / "pulse.sock"
    settings = {
        "XDG_RUNTIME_DIR": str(rundir),
        "PULSE_SERVER": f"unix:{sock}",
        "PULSE_SOURCE": "factory.monitor",
    }
    # HOME too for the server and clients, so that nothing is written to the real home
    env = {**os.environ, **settings, "HOME": str(rundir)}
    cmd = [
        "pulseaudio", "-n", "--daemonize=yes", "--exit-idle-time=-1", "--log-target=stderr",
        "-L", f"module-native-protocol-unix auth-anonymous=1 socket={sock}",
        "-L", "module-null-sink sink_name=factory",
        "-L", "module-always-sink",
    ]  # fmt: skip
    started = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
    if started.returncode != 0:
        shutil.rmtree(rundir, ignore_errors=True)
        pytest.fail(f"pulseaudio did not start (exit {started.returncode}): "
                    f"{started.stderr.strip()[-2000:]}", pytrace=False)

    killed = False

    def kill() -> None:
        nonlocal killed
        if killed:
            return
        killed = True
        subprocess.run(["pulseaudio", "--kill"], env=env, capture_output=True, timeout=30)
        # wait until the server is gone, so that the directory can be removed
        wait_for(lambda: subprocess.run(["pulseaudio", "--check"], env=env,
                                        capture_output=True).returncode != 0,
                 10.0, f"pulseaudio in {rundir} to exit after --kill")

    try:
        last = {}

        def answers() -> bool:
            last["info"] = subprocess.run(["pactl", "info"], env=env, capture_output=True,
                                          text=True)
            return last["info"].returncode == 0 and "factory" in last["info"].stdout

        wait_for(answers, 15.0, f"pulseaudio to answer on {sock}",
                 detail=lambda: last["info"].stderr.strip())

        with pytest.MonkeyPatch.context() as mp:
            for key, value in settings.items():
                mp.setenv(key, value)
            refresh_devices()  # PortAudio must see the server through ALSA's pulse plugin
            try:
                yield PulseServer(dir=rundir, socket=sock, env=env)
            finally:
                kill()
        refresh_devices()  # forget the server's devices
    finally:
        kill()
        shutil.rmtree(rundir, ignore_errors=True)
