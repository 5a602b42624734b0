"""A simulated pilot evaluation (issue 14) for tests: the generator itself — true rates
55 % → 78 % (pilots) and 55 % → 60 % (comparison), enterprise-level variation, :func:`simulate`
of many pilots as arrays, the survey headers and file writers — lives in the package
(:mod:`tingbao.dashboards.demo_pilot`, which the demo uses too) and is re-exported here; this
module adds what only tests need: a registry of ``pe01``…/``ce01``… enterprises and survey rows
of one replicate of :func:`simulate`.
"""

from __future__ import annotations

import datetime as dt

from tingbao.dashboards.demo_pilot import (  # noqa: F401 - re-exported for the tests
    SIGMA,
    SURVEY_HEADER_EN,
    SURVEY_HEADER_ZH,
    TRUE_DID_PP,
    TRUE_RATES,
    Simulated,
    logit_mean_for,
    mean_rate,
    simulate,
    write_csv,
    write_xlsx,
)


def registry_toml(stack_dir, *, pilots: int, comparisons: int, tz: str = "Asia/Shanghai"
                  ) -> str:
    """A site registry of the simulated enterprises ``pe01``… (pilots, machinery) and
    ``ce01``… (comparison, light industry), each with one workshop, no meters."""
    out = [f'[deployment]\ntimezone = "{tz}"\n[stack]\ndata_dir = "{stack_dir}"\n']
    for i, eid in enumerate(enterprise_ids(pilots, comparisons)):
        pilot = i < pilots
        out.append(f'[[enterprises]]\nid = "{eid}"\nname_zh = "模拟企业{eid}"\n'
                   f'industry = "{"machinery" if pilot else "light_industry"}"\n'
                   f'group = "{"pilot" if pilot else "comparison"}"\n'
                   f'[[sites]]\nid = "{eid}-ws1"\nenterprise = "{eid}"\nname_zh = "冲压车间"\n')
    return "\n".join(out)


def enterprise_ids(pilots: int, comparisons: int) -> list[str]:
    """``pe01``… (``pilots`` of them) then ``ce01``… (``comparisons``)."""
    return ([f"pe{i + 1:02d}" for i in range(pilots)]
            + [f"ce{i + 1:02d}" for i in range(comparisons)])


def survey_rows(sim: Simulated, replicate: int, dates: tuple[dt.date, dt.date],
                comparisons: int) -> list[list[str]]:
    """Survey rows (Chinese answers 是/否, worker pseudonyms ``w<ent>-<period>-<i>``) of one
    replicate; the baseline's on ``dates[0]``, the follow-up's on ``dates[1]``. A worker who
    does not wear is recorded 否/否; one who wears but not correctly 是/否, and one in ten of
    the workers not wearing correctly is such a badly-worn case."""
    ids = enterprise_ids(sim.pilots, comparisons)
    rows = []
    worn = sim.worn[replicate]
    for e, eid in enumerate(ids):
        for t in (0, 1):
            for w in range(worn.shape[2]):
                ok = bool(worn[e, t, w])
                wearing = ok or (w % 10 == 0)
                rows.append([dates[t].isoformat(), eid, f"{eid}-ws1", "press-1",
                             f"w{eid}-{t}-{w:03d}", "是" if wearing else "否",
                             "是" if ok else "否", "3M 1100" if wearing else ""])
    return rows
