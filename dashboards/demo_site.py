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

__all__ = ["DemoShifts", "demo_shifts", "demo_registry"]

SHIFT_LINE = re.compile(r"^(\s*shift\s*=\s*)\{[^}\n]*\}", re.MULTILINE)
"""An enterprise's inline ``shift = { … }`` table (one line, as the registry writes it)."""


@dataclasses.dataclass(frozen=True)
class DemoShifts:
    """The local shift start (``HH:MM``) per enterprise id, and the fast enterprise (the
    one whose shift is mostly past, for ``--speed``; None without)."""

    starts: dict[str, str]
    fast: str | None = None


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
                  poll_s: float = 5.0):
    """Write to ``out`` the registry ``site`` with the shift starts of ``shifts``
    (``days_per_week = 7``, hours unchanged) and ``[analysis] recent_s``/``poll_s`` (s);
    returns the copy loaded and checked. Raises ValueError when the file's shift tables are
    not one ``shift = { … }`` line per enterprise in file order."""
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
    header = ("# tingbao demo: a copy of " + str(site) + " whose shifts start just before the "
              "demo (7 days a week)\n# and whose analysis looks at a short recent window; "
              "written by tingbao demo, overwritten on each run.\n")
    out.write_text(header + text, encoding="utf-8")
    copy = load_registry(out)
    for e in copy.enterprises:
        if e.shift.start != shifts.starts[e.id] or e.shift.days_per_week != 7:
            raise ValueError(f"{out}: the shift of {e.id} was not rewritten")
    return copy
