"""``tingbao demo`` end to end: from the packaged site registry, the stack, one agent per
synthetic meter of the first enterprise, the collector (known meters from the registry), and
rows of levels with projected LEX,8h and GBZ/T 229.4 grades read back from InfluxDB."""

from __future__ import annotations

import re

import pytest
from support.commands import run_tingbao

from tingbao.analysis.gbzt189_8 import projected_lex_8h
from tingbao.analysis.gbzt229_4 import grade
from tingbao.collector.registry import load_registry
from tingbao.dashboards.demo import example_site

ROW = re.compile(r"^(\S+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+"
                 r"([\d.]+)\s+(.+)$")


@pytest.mark.slow
@pytest.mark.stack
def test_demo_runs_from_the_registry(tmp_path):
    done = run_tingbao("demo", "--duration", "14", "--data-dir", str(tmp_path / "d"),
                       timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    registry = load_registry(example_site())
    ent = registry.enterprises[0]
    synthetic = {m.id for m in registry.meters_of(ent.id) if m.source.kind == "synthetic"}
    rows = [ROW.match(line) for line in done.stdout.splitlines()]
    rows = [r for r in rows if r and r.group(1) in synthetic]
    assert {r.group(1) for r in rows} == synthetic, done.stdout[-3000:]
    shift_s = ent.shift.hours * 3600
    checked = 0
    for r in rows:
        covered, ea, projected = float(r.group(2)), float(r.group(6)), float(r.group(8))
        if ea < 1.0:  # EA is printed to 3 decimals: too coarse below 1 Pa²·s to recompute
            continue
        # the projection is over the covered seconds and the enterprise's shift (1 decimal
        # printed; EA printed to 3 decimals)
        assert projected == pytest.approx(projected_lex_8h(ea, covered, shift_s), abs=0.15)
        checked += 1
        g = grade(projected, registry.profile)
        assert r.group(9).strip() in {grade(projected - 0.05).label,
                                      grade(projected + 0.05).label, g.label}
    assert checked >= len(synthetic), done.stdout[-3000:]
    assert "stopped; data and logs are in" in done.stdout
