"""The ``tingbao`` command: dispatch by name, then import.

Subcommands are plug-ins registered under the entry-point group ``tingbao.commands`` (see
pyproject.toml), each a ``register(subparsers)`` function in its own module. The dispatcher
reads the command name from the argument list first and loads only that one entry point, so
``tingbao levels`` on a device imports the meter and nothing of the collector, analysis,
dashboards or paho (tests/test_imports.py checks it with ``python -X importtime``).
``tingbao --help`` lists the commands from :data:`SUMMARIES` without importing any of them.

Errors a user can fix (:class:`CliError`, configuration, source and OS errors) print one line
``tingbao COMMAND: error: …`` on stderr and exit with 2. A reader that closes the pipe early
(``tingbao levels rec.wav | head``) ends the command quietly with the status of a process
ended by SIGPIPE (141), as ``cat`` and ``yes`` do.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib.metadata import entry_points

# The meter's matrix products are small (blocks of 16–64 samples): a multithreaded BLAS wakes
# its threads for each and spins, spending about ten times the CPU for no gain in time
# (measured 2026-12-02 on 2 cores, 60 s of 48 kHz noise: the meter with 1/3-octave bands
# 19.7 ms of CPU per audio second with OpenBLAS's default threads, 1.8 ms with one; without
# bands 1.0 vs 0.5). bench/edge_core.py measures with one thread; so does every command, unless
# the environment says otherwise. Set before numpy is first imported (the next line).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from ..sources.chunk import SourceError  # noqa: E402 (after the BLAS threads are set)

SUMMARIES = {
    "levels": "interval levels (LAeq, EA, LCpeak, LAFmax, …) of a WAV/FLAC recording",
    "calibrate": "derive S (Pa per unit) from an acoustic-calibrator recording",
    "scene": "measure a synthetic factory scene live on this device",
    "agent": "run the edge agent of one meter (source → meter → outbox → MQTT)",
    "collector": "store meter messages from MQTT in InfluxDB (validate, batch, dead-letter)",
    "stack": "start, stop or inspect the local Mosquitto + InfluxDB stack",
    "demo": "the demo: stack, simulated meters, collector, levels arriving in InfluxDB",
    "site": "check a site registry file (enterprises, sites, meters, job types)",
    "import": "store an inspector's recording (WAV/FLAC) as a meter's levels in InfluxDB",
    "analyze": "close shifts, compute exposure and raise alerts (service, or --from/--to)",
    "exposure": "LEX,8h ± U, grade and profiles per post and job for one day",
    "alerts": "list, acknowledge or resolve alerts",
    "verify": "check the hash chain of stored exposure records",
    "report": "the inspector's report (HTML and PDF) of an enterprise over a period",
    "serve": "the live page: floor view, alerts, exposure and reports in a browser",
    "dashboards": "export Grafana provisioning or push the dashboards to a Grafana",
}
"""One line per known command for ``tingbao --help`` (a plug-in not listed here shows its
entry point instead)."""

EXIT_SIGPIPE = 128 + 13


class CliError(Exception):
    """An error the user can fix; printed as one line without a traceback."""


def _commands() -> dict:
    return {ep.name: ep for ep in entry_points(group="tingbao.commands")}


def _overview(commands: dict) -> str:
    width = max(len(n) for n in commands) if commands else 8
    lines = ["usage: tingbao COMMAND [options]   (tingbao COMMAND --help for its options)", "",
             "听保 tingbao — noise-hazard and hearing-protection monitoring.", "", "commands:"]
    for name in sorted(commands):
        lines.append(f"  {name:{width}s}  {SUMMARIES.get(name, commands[name].value)}")
    return "\n".join(lines) + "\n"


def build_parser(command: str, commands: dict | None = None) -> argparse.ArgumentParser:
    """The parser of one command (its entry point is imported here, and only it)."""
    commands = _commands() if commands is None else commands
    parser = argparse.ArgumentParser(prog="tingbao")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    try:
        register = commands[command].load()
    except (ImportError, AttributeError) as e:  # an extra that is not installed here
        raise CliError(f"the command {command!r} is not available here ({e}); install the "
                       "server extra: pip install 'tingbao[server]'") from e
    register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = _commands()
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(_overview(commands))
        return 0 if argv else 2
    command = argv[0]
    if command not in commands:
        sys.stderr.write(f"tingbao: unknown command {command!r}; one of "
                         f"{', '.join(sorted(commands))} (tingbao --help)\n")
        return 2
    try:
        args = build_parser(command, commands).parse_args(argv)
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # the reader went away (``| head``): no traceback, no "Exception ignored" at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_SIGPIPE
    except KeyboardInterrupt:
        return 130
    except (CliError, SourceError, ValueError, OSError) as e:
        # ValueError: ConfigError, CalibrationError, ContractError
        print(f"tingbao {command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
