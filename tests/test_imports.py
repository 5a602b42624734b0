"""The ``tingbao`` command loads only what it runs, and dependencies point one way
(ARCHITECTURE.md): edge ← collector ← analysis ← dashboards."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from support.commands import TINGBAO

REPO = Path(__file__).resolve().parents[1]
LAYERS = ["edge", "collector", "analysis", "dashboards"]
"""Lowest first: a layer may import from the layers before it, never from those after."""


def _imported_modules(argv: list[str], tmp_path) -> set[str]:
    """Modules imported by ``tingbao ARGV`` (from ``python -X importtime``)."""
    python, *command = TINGBAO
    done = subprocess.run([python, "-X", "importtime", *command, *argv], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    mods = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            mods.add(line.rsplit("|", 1)[1].strip())
    assert "tingbao.edge.cli.main" in mods  # importtime output was read
    return mods


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    d = tmp_path_factory.mktemp("rec")
    t = np.arange(48000 * 4) / 48000  # a calibrator recording needs ≥ 2.5 s
    sf.write(d / "tone.wav", 0.1 * np.sin(2 * np.pi * 1000 * t), 48000)
    return d


@pytest.mark.parametrize("argv", [
    ["levels", "tone.wav", "--pa-per-unit", "1"],
    ["calibrate", "tone.wav", "--level", "94"],
])
def test_edge_commands_import_no_server_code(argv, recording):
    mods = _imported_modules(argv, recording)
    assert "tingbao.edge.meter" in mods if argv[0] == "levels" else True
    server = sorted(m for m in mods if m.startswith(("tingbao.collector", "tingbao.analysis",
                                                     "tingbao.dashboards", "paho")))
    assert server == [], f"tingbao {argv[0]} imported {server}"


def test_help_imports_no_subcommand(tmp_path):
    mods = _imported_modules(["--help"], tmp_path)
    assert not [m for m in mods if m.startswith("tingbao.") and m not in {
        "tingbao.edge", "tingbao.edge.cli", "tingbao.edge.cli.main", "tingbao.edge.sources",
        "tingbao.edge.sources.chunk"}]


def _imports(path: Path) -> list[str]:
    """Absolute names of the tingbao modules a file imports (relative imports resolved)."""
    package = "tingbao." + ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                out.append(".".join(base + ([node.module] if node.module else [])))
            else:
                out.append(node.module or "")
    return [m for m in out if m.startswith("tingbao.")]


def test_dependencies_point_one_way():
    wrong = []
    for i, layer in enumerate(LAYERS):
        higher = tuple(f"tingbao.{h}" for h in LAYERS[i + 1:])
        for path in sorted((REPO / layer).rglob("*.py")):
            for mod in _imports(path):
                if higher and mod.startswith(higher):
                    wrong.append(f"{path.relative_to(REPO)} imports {mod}")
    assert wrong == [], "\n".join(wrong)


def test_the_check_sees_a_wrong_import(tmp_path, monkeypatch):
    """The walker above resolves relative imports (so the rule cannot pass vacuously)."""
    bad = REPO / "edge" / "_tmp_wrong_import_probe.py"
    bad.write_text("from ..collector import schema\n")
    try:
        assert "tingbao.collector" in _imports(bad)
    finally:
        bad.unlink()


@pytest.mark.slow  # three tingbao processes
def test_levels_without_calibration_says_so_and_a_closed_pipe_is_quiet(recording):
    cmd = [*TINGBAO, "levels", str(recording / "tone.wav"), "--interval", "0.1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert "relative to 1 Pa per unit" in done.stderr
    # a reader that closes the pipe after one line
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read().decode()
    code = p.wait(60)
    assert first.startswith(b"{")
    assert "Error" not in err and "Traceback" not in err, err
    assert code in (0, 141)
    done = subprocess.run([*TINGBAO, "levels", str(recording / "tone.wav"), "--pa-per-unit",
                           "0.5"], capture_output=True, text=True, timeout=120)
    assert "relative to 1 Pa" not in done.stderr


def test_commands_run_blas_on_one_thread_unless_told(tmp_path):
    # the command sets OPENBLAS/OMP/MKL_NUM_THREADS = 1 before numpy is first imported (a
    # multithreaded BLAS spends ~10x the meter's CPU spinning on its small products); a value
    # the user set is kept. numpy must not be imported before that point: the probe checks
    # that importing the command module is what brings numpy in.
    import os
    import sys

    probe = ("import os, sys; assert 'numpy' not in sys.modules; "
             "import tingbao.edge.cli.main; assert 'numpy' in sys.modules; "
             "print(os.environ['OPENBLAS_NUM_THREADS'], os.environ['OMP_NUM_THREADS'])")
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1"]
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env={**env, "OPENBLAS_NUM_THREADS": "2"}, timeout=60)
    assert done.stdout.split() == ["2", "1"], done.stderr
