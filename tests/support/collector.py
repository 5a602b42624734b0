"""Collectors for tests: in-process (:func:`start_collector`) or as a ``tingbao collector``
child process (:func:`collector_process`), both on a config from
:func:`support.configs.write_collector_config`."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

from support.commands import metrics, tingbao
from support.configs import write_collector_config
from support.wait import wait_for
from tingbao.collector import cli
from tingbao.collector.service import Collector


def start_collector(stack, directory: Path, **kwargs) -> Collector:
    """An in-process collector, started and subscribed (``kwargs`` as for
    :func:`write_collector_config`)."""
    collector = Collector(cli.load_config(write_collector_config(stack, directory, **kwargs)))
    collector.start()
    assert collector.ready.wait(10), f"collector did not subscribe: {collector.counters()}"
    return collector


def metrics_port(config: Path) -> int:
    """The ``[collector] metrics_port`` of a collector config file."""
    return tomllib.loads(Path(config).read_text())["collector"]["metrics_port"]


def collector_process(config: Path, log: Path, *, wait: bool = True, timeout: float = 30.0
                      ) -> subprocess.Popen:
    """``tingbao collector --config CONFIG`` (output appended to ``log``, working directory
    the config's). With ``wait``, returns once it has subscribed (before that, a message
    with no subscriber at all would be dropped by the broker); it needs a metrics_port."""
    config = Path(config)
    p = tingbao("collector", "--config", config, log=log, cwd=config.parent)
    if wait:
        port = metrics_port(config)
        try:
            wait_for(lambda: p.poll() is not None or (metrics(port) or {}).get("subscribed"),
                     timeout, f"the collector of {config.name} to subscribe", interval=0.1,
                     detail=lambda: log.read_text()[-2000:])
            assert p.poll() is None, log.read_text()[-2000:]
        except BaseException:
            p.kill()  # the caller never gets it: do not leave it behind
            p.wait()
            raise
    return p
