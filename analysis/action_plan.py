"""The hearing-protection action (听力保护行动) as data: the correct-wearing-rate indicator's
2020 baseline, its milestones and tingbao's rule for wear time at the ear, read from
``data/hearing_action_plan.toml`` (noise-standards.md, "The indicator the pilots are judged
by"; "Checked 2026-11-29 / The pilot statistics").

One loader for the statistics (:mod:`.wearing_rate`) and for the views that read their
results back (:mod:`.pilot_results`: the page, the Grafana board, the pilot report). It imports
no numpy, so the views do not load it. Rates here are fractions (0.537), as the data file's
``rate_pct`` / 100.
"""

from __future__ import annotations

import dataclasses
import functools
import tomllib
from importlib import resources

__all__ = ["PLAN_FILE", "ActionPlan", "Milestone", "load_plan", "milestones"]

PLAN_FILE = "data/hearing_action_plan.toml"
"""The action plan's data (indicator, baseline, milestones, edge rule) in the
``tingbao.analysis`` package."""


@dataclasses.dataclass(frozen=True)
class Milestone:
    """The rate the plan asks for by the end of ``year`` (fraction), and where it is from."""

    year: int
    rate: float
    source: str
    provisional: bool = False


@dataclasses.dataclass(frozen=True)
class ActionPlan:
    """:data:`PLAN_FILE`: baseline (year, rate as a fraction), milestones, the edge rule
    (``worn_share_min`` fraction of the decided time, ``min_assessed_s`` s) and the plan's
    names."""

    baseline_year: int
    baseline_rate: float
    milestones: tuple[Milestone, ...]
    worn_share_min: float
    min_assessed_s: float
    plan_zh: str
    plan_en: str


@functools.cache
def load_plan() -> ActionPlan:
    """The plan data shipped with the package (read once)."""
    text = resources.files("tingbao.analysis").joinpath(PLAN_FILE).read_text(encoding="utf-8")
    d = tomllib.loads(text)
    return ActionPlan(
        baseline_year=int(d["baseline"]["year"]), baseline_rate=d["baseline"]["rate_pct"] / 100,
        milestones=tuple(Milestone(int(m["year"]), m["rate_pct"] / 100, m["source"],
                                   bool(m.get("provisional", False)))
                         for m in d["milestones"]),
        worn_share_min=float(d["edge"]["worn_share_min"]),
        min_assessed_s=float(d["edge"]["min_assessed_s"]),
        plan_zh=d["plan_zh"], plan_en=d["plan_en"])


def milestones(reg=None) -> dict[int, Milestone]:
    """{year: Milestone} (rates as fractions): the data file's, or the registry's
    ``[deployment]`` ``wearing_rate_milestones``/``milestone_years`` when a deployment set
    other ones."""
    plan = {m.year: m for m in load_plan().milestones}
    if reg is not None:
        d = reg.deployment
        own = dict(zip(d.milestone_years, d.wearing_rate_milestones, strict=True))
        if own != {y: m.rate for y, m in plan.items()}:
            return {y: Milestone(y, r, "site registry [deployment]") for y, r in own.items()}
    return plan
