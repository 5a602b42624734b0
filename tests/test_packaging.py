"""tingbao installed from a wheel, not from the checkout: ``tingbao stack up --detach``,
``status`` and ``down`` run from another directory with the installed package, whose config
templates come from the package data :mod:`tingbao.configs`.

How the installation is made (about 15 s, little network):

1. the package directories named in pyproject.toml (``package-dir``), pyproject.toml and
   README.md are copied to a temporary directory, so the build writes no ``build/`` or
   ``*.egg-info`` into the shared checkout;
2. ``pip wheel --no-deps`` builds the wheel there (pip's build isolation takes setuptools
   and wheel from its cache, or from PyPI the first time);
3. a fresh venv, without pip and without the system site-packages, gets the wheel from this
   interpreter's pip: ``pip --python VENV/bin/python install --no-deps --no-index WHEEL``;
4. the run-time dependencies (pyproject's ``dependencies`` and the ``server`` extra, with
   what they require: numpy, scipy, paho-mqtt) are not downloaded again: their files in
   this venv are linked into one directory that a ``.pth`` file puts on the new venv's
   ``sys.path``. Only those distributions are linked — never tingbao itself nor the
   editable install's finder — so ``import tingbao`` can only find the wheel's copy.

Mosquitto and InfluxDB must be installed: without them the test fails (it does not skip)
with the ``apt-get install`` line.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tingbao.collector.stack import StackError, require_tools, stop_from_state

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def _run(argv: list, *, cwd: Path, env: dict | None = None, timeout: float = 120
         ) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _check(done: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    if done.returncode != 0:
        pytest.fail(f"{what} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n"
                    f"{done.stderr[-3000:]}", pytrace=False)
    return done


def _requirement_name(req: str) -> str:
    return re.match(r"[A-Za-z0-9._-]+", req.strip()).group(0)


def _runtime_distributions(project: dict) -> list[importlib.metadata.Distribution]:
    """The installed distributions tingbao needs at run time (dependencies and the
    ``server`` extra), with their own requirements (extras left out)."""
    todo = [*project["dependencies"], *project["optional-dependencies"]["server"]]
    found: dict[str, importlib.metadata.Distribution] = {}
    while todo:
        req = todo.pop()
        name = _requirement_name(req)
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in found:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            if ";" in req:  # an environment marker that does not apply here
                continue
            pytest.fail(f"{name} (needed by tingbao) is not installed in {sys.prefix}",
                        pytrace=False)
        found[key] = dist
        todo += [r for r in dist.requires or [] if "extra ==" not in r]
    return list(found.values())


def _link_dependencies(dists, target: Path) -> None:
    """Symlink the top-level files and directories of ``dists`` into ``target``."""
    target.mkdir()
    for dist in dists:
        tops = {f.parts[0] for f in dist.files or [] if f.parts[0] not in ("..", "__pycache__")}
        for top in tops:
            src = Path(dist.locate_file(top))
            if src.exists() and not (target / top).exists():
                (target / top).symlink_to(src)


def _install_wheel(tmp: Path) -> Path:
    """Build tingbao's wheel from a copy of the checkout and install it into a new venv;
    returns the venv's directory."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    src = tmp / "src"
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for directory in sorted(set(pyproject["tool"]["setuptools"]["package-dir"].values())):
        shutil.copytree(REPO / directory, src / directory, ignore=ignore)
    wheels = tmp / "wheels"
    _check(_run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, src],
                cwd=tmp, timeout=180), "building the wheel (pip wheel)")
    (wheel,) = wheels.glob("tingbao-*.whl")

    venv = tmp / "venv"
    _check(_run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp),
           "python -m venv")
    python = venv / "bin" / "python"
    _check(_run([sys.executable, "-m", "pip", "--python", python, "install", "-q",
                 "--no-deps", "--no-index", wheel], cwd=tmp),
           "installing the wheel into the new venv")
    site = Path(_check(_run([python, "-c", "import sysconfig; print(sysconfig.get_path("
                                            "'purelib'))"], cwd=tmp), "venv site").stdout.strip())
    deps = tmp / "deps"
    _link_dependencies(_runtime_distributions(pyproject["project"]), deps)
    (site / "tingbao-test-deps.pth").write_text(f"{deps}\n", encoding="utf-8")
    return venv


def test_installed_wheel_runs_the_stack(tmp_path):
    try:
        require_tools()
    except StackError as e:
        pytest.fail(str(e), pytrace=False)  # names: apt-get install mosquitto ... influxdb

    venv = _install_wheel(tmp_path / "build")
    work = tmp_path / "elsewhere"  # not the checkout: nothing to import from the cwd
    work.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    python, tingbao = venv / "bin" / "python", venv / "bin" / "tingbao"

    where = json.loads(_check(_run([python, "-c", (
        "import json, tingbao.collector.stack as s, tingbao.configs as c; "
        "print(json.dumps([s.__file__, c.__file__, str(s.CONFIG_DIR)]))")], cwd=work, env=env),
        "importing the installed package").stdout)
    for path in where:
        assert Path(path).resolve().is_relative_to(venv.resolve()), where
        assert not Path(path).resolve().is_relative_to(REPO), where
    assert (Path(where[2]) / "mosquitto.conf.template").is_file()
    assert (Path(where[2]) / "influxdb.conf.template").is_file()

    data = work / "stack-data"
    up = _run([tingbao, "stack", "up", "--detach", "--data-dir", data], cwd=work, env=env)
    try:
        _check(up, "tingbao stack up --detach (installed)")
        assert f"tingbao stack down --data-dir {data}" in up.stdout
        status = _check(_run([tingbao, "stack", "status", "--data-dir", data], cwd=work,
                             env=env), "tingbao stack status (installed)")
        state = json.loads(status.stdout)
        for part in ("mqtt", "influxdb"):
            assert state[part]["alive"] and state[part]["answers"], state
        # the configs were rendered from the installed templates
        assert "allow_anonymous false" in Path(state["mqtt"]["config"]).read_text()
        assert "auth-enabled = true" in Path(state["influxdb"]["config"]).read_text()
    finally:
        down = _run([tingbao, "stack", "down", "--data-dir", data], cwd=work, env=env)
        if down.returncode != 0 and (data / "state.json").exists():
            stop_from_state(data)  # leave no detached servers behind
    _check(down, "tingbao stack down (installed)")
    assert json.loads(down.stdout) == {"influxdb": "stopped", "mqtt": "stopped"}
