"""The demo's own copy of the site registry: shifts that are running now.

The registry's enterprises start their shifts at fixed local times (07:30, 08:00 …) on six
days a week, so a demo started in the evening would see no running shift and no in-shift
alert (GBZ/T 189.8-2007 clause 3: the exposure is of the working day). :func:`demo_registry`
writes a copy of the registry whose shifts start shortly before the demo in the deployment's
local time, on every day of the week (``days_per_week = 7``), and whose ``[analysis]`` looks at
a short recent window often (``recent_s``, ``poll_s``), so that a loud post's projected
LEX,8h (exposure so far + the rest of the shift at the recent LAeq) is evaluated within
seconds. Everything else — meters, job types, profile, limits — is the registry's, byte for
byte: the copy is a text edit of the file, checked by loading it again.

The pilot evaluation (issue 14: a difference in differences of the correct-wearing rate between
pilot and comparison enterprises, :mod:`tingbao.dashboards.demo_pilot`) needs enough
enterprises per group for enterprise-clustered errors: with the example's three (two pilots,
one comparison) the wild cluster bootstrap has 6³ = 216 distinct draws and its 95 % interval
spans thousands of percentage points. :func:`survey_only_enterprises` tops each group up to
:data:`MIN_PER_GROUP` with *survey-only* enterprises — registry enterprises without sites,
meters or job types (the registry allows them), clearly named so — that the copy appends; only
spot-check surveys are generated for them.

Units: times are local wall-clock times of the registry's ``[deployment] timezone``;
durations s.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
import zoneinfo
from pathlib import Path

__all__ = ["DemoShifts", "MIN_PER_GROUP", "SurveyOnly", "demo_registry", "demo_shifts",
           "survey_only_enterprises"]

SHIFT_LINE = re.compile(r"^(\s*shift\s*=\s*)\{[^}\n]*\}", re.MULTILINE)
"""An enterprise's inline ``shift = { … }`` table (one line, as the registry writes it)."""


@dataclasses.dataclass(frozen=True)
class DemoShifts:
    """The local shift start (``HH:MM``) per enterprise id, and the fast enterprise (the
    one whose shift is mostly past, for ``--speed``; None without)."""

    starts: dict[str, str]
    fast: str | None = None


@dataclasses.dataclass(frozen=True)
class SurveyOnly:
    """An enterprise of the demo copy without meters: only surveyed (module docstring)."""

    id: str
    name_zh: str
    name_en: str
    industry: str
    group: str

    def toml(self, start: str, hours: float = 8.0) -> str:
        """Its ``[[enterprises]]`` table, the shift starting at local ``start`` (HH:MM)."""
        return (f'\n[[enterprises]]\nid = "{self.id}"\nname_zh = "{self.name_zh}"\n'
                f'name_en = "{self.name_en}"\nindustry = "{self.industry}"\n'
                f'group = "{self.group}"\nshift = {{ start = "{start}", hours = {hours!r}, '
                f"days_per_week = 7 }}\n")


MIN_PER_GROUP = 4
"""Enterprises per group (pilot, comparison) the demo's pilot evaluation has at least: 8 in
all gives the wild cluster bootstrap 6⁸ ≈ 1.7 million distinct draws (Webb weights) and a
DiD interval of about ±12 percentage points at 48 observations per enterprise and year."""

_EXTRA_INDUSTRIES = {"pilot": ("machinery", "light_industry", "building_materials"),
                     "comparison": ("building_materials", "machinery", "light_industry")}


def survey_only_enterprises(registry, per_group: int = MIN_PER_GROUP) -> tuple[SurveyOnly, ...]:
    """The survey-only enterprises that top the registry's pilot and comparison groups up to
    ``per_group`` each (none when it has enough): ids ``demo-pilot-N`` / ``demo-comp-N``
    (N counting on from the group's registry enterprises), industries in turn."""
    out = []
    for group, zh, en, tag in (("pilot", "试点", "pilot", "pilot"),
                               ("comparison", "对照", "comparison", "comp")):
        have = sum(1 for e in registry.enterprises if e.group == group)
        taken = {e.id for e in registry.enterprises}
        for k in range(have + 1, per_group + 1):
            eid = f"demo-{tag}-{k}"
            if eid in taken:
                continue
            inds = _EXTRA_INDUSTRIES[group]
            out.append(SurveyOnly(eid, f"示例{zh}企业{k}（仅抽查，无测点）",
                                  f"Example {en} enterprise {k} (survey only, no meters)",
                                  inds[(k - have - 1) % len(inds)], group))
    return tuple(out)


def _minute_floor(t: dt.datetime) -> dt.datetime:
    return t.replace(second=0, microsecond=0)


MIN_LIVE_S = 15.0
"""The ``--speed`` shift keeps at least this much of itself to be measured live, s."""


def demo_shifts(registry, now: dt.datetime, *, lead_s: float = 0.0,
                fast: str | None = None, speed: float = 1.0) -> DemoShifts:
    """Shift starts for a demo that starts at ``now`` (aware datetime).

    Every enterprise's shift starts on the whole minute at least ``lead_s`` s before ``now``
    (default 0: the minute ``now`` is in, so the shift is less than a minute old when the
    meters start and none is reported offline before its first interval). The ``fast``
    enterprise (``--speed speed``) instead starts so that only ``hours / speed`` of its
    shift remain: ``start = now − hours·3600·(1 − 1/speed)`` s, raised to the next whole
    minute (a shift starts on a minute; flooring could leave no live part at all), and at
    least ``MIN_LIVE_S`` of it live; the elapsed part is back-filled by agents that run faster
    than real time, the rest is measured live."""
    tz = zoneinfo.ZoneInfo(registry.deployment.timezone)
    local = now.astimezone(tz)
    starts = {}
    for e in registry.enterprises:
        back_s = lead_s
        if e.id == fast:
            if not speed > 1:
                raise ValueError(f"--speed {speed!r}: more than 1 (times real time)")
            live_s = max(e.shift.hours * 3600.0 / speed, MIN_LIVE_S)
            back_s = max(lead_s, e.shift.hours * 3600.0 - live_s)
            start = _minute_floor(local - dt.timedelta(seconds=back_s))
            if start < local - dt.timedelta(seconds=back_s):
                start += dt.timedelta(minutes=1)  # up to the next minute: more live, not less
            starts[e.id] = start.strftime("%H:%M")
            continue
        starts[e.id] = _minute_floor(local - dt.timedelta(seconds=back_s)).strftime("%H:%M")
    return DemoShifts(starts, fast)


def _set_key(text: str, table: str, key: str, value: str) -> str:
    """``key = value`` in the TOML ``[table]`` of ``text`` (replaced, else added to it, else a
    new table at the end)."""
    header = re.search(rf"^\[{re.escape(table)}\]\s*$", text, re.MULTILINE)
    if header is None:
        return text.rstrip("\n") + f"\n\n[{table}]\n{key} = {value}\n"
    nxt = re.search(r"^\[", text[header.end():], re.MULTILINE)
    end = header.end() + (nxt.start() if nxt else len(text) - header.end())
    body = text[header.end():end]
    line = re.compile(rf"^{re.escape(key)}\s*=[^\n#]*", re.MULTILINE)
    body = (line.sub(f"{key} = {value} ", body, count=1) if line.search(body)
            else f"\n{key} = {value}" + body)
    return text[:header.end()] + body + text[end:]


def demo_registry(site: Path, out: Path, shifts: DemoShifts, *, recent_s: float = 60.0,
                  poll_s: float = 5.0, survey_only: tuple[SurveyOnly, ...] = ()):
    """Write to ``out`` the registry ``site`` with the shift starts of ``shifts``
    (``days_per_week = 7``, hours unchanged) and ``[analysis] recent_s``/``poll_s`` (s), and
    the ``survey_only`` enterprises appended (their shifts start with the first registry
    enterprise's); returns the copy loaded and checked. Raises ValueError when the file's
    shift tables are not one ``shift = { … }`` line per enterprise in file order."""
    from tingbao.collector.registry import load_registry

    original = load_registry(site)
    text = site.read_text(encoding="utf-8")
    found = list(SHIFT_LINE.finditer(text))
    ents = original.enterprises
    if len(found) != len(ents):
        raise ValueError(f"{site}: expected one 'shift = {{ … }}' line per enterprise "
                         f"({len(ents)}), found {len(found)}")
    for match, e in reversed(list(zip(found, ents, strict=True))):
        table = (f'{{ start = "{shifts.starts[e.id]}", hours = {e.shift.hours!r}, '
                 f"days_per_week = 7 }}")
        text = text[:match.start()] + match.group(1) + table + text[match.end():]
    for key, value in (("recent_s", recent_s), ("poll_s", poll_s)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"[analysis] {key} = {value!r}: a positive number of seconds")
        text = _set_key(text, "analysis", key, repr(float(value)))
    if survey_only:
        first = shifts.starts[ents[0].id]
        text = (text.rstrip("\n") + "\n\n# survey-only enterprises of the demo's pilot "
                "evaluation (tingbao.dashboards.demo_site)\n"
                + "".join(x.toml(first) for x in survey_only))
    header = ("# tingbao demo: a copy of " + str(site) + " whose shifts start just before the "
              "demo (7 days a week)\n# and whose analysis looks at a short recent window; "
              "written by tingbao demo, overwritten on each run.\n")
    out.write_text(header + text, encoding="utf-8")
    copy = load_registry(out)
    extra = {x.id for x in survey_only}
    for e in copy.enterprises:
        if e.id in extra:
            continue
        if e.shift.start != shifts.starts[e.id] or e.shift.days_per_week != 7:
            raise ValueError(f"{out}: the shift of {e.id} was not rewritten")
    return copy
