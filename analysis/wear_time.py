"""A worker's measured wear time of one local date, from the protection records of the edge
(:mod:`tingbao.edge.protection`, stored as ``schema.PROTECTION``) into ``schema.WEAR_DAILY``.

The sums are InfluxDB's (``SUM(worn_s)``, ``SUM(assessed_s)`` per meter and worker, and the
assessed seconds of the states removed, poor_fit and voice), never rows pulled into Python:
a day of 1 s records is 28 800 points per worker. Seconds, not interval counts, so partial
intervals (corrupt audio, the stream's ends) weigh what they covered.

* ``worn_s``: seconds worn correctly, the edge's ``worn`` and ``voice`` intervals (a talking
  worker whose high-frequency attenuation held: the protector is in place);
* ``assessed_s``: seconds whose state could be decided (not ``quiet``, not ``no_audio``);
* ``removed_s``, ``poor_fit_s``, ``voice_s``: the assessed seconds of those states;
* ``share`` = worn_s / assessed_s (absent when nothing was assessed).

The measured share is the edge's counterpart of the spot-checked correct-wearing rate
(issue 14 item 5: a worker-day counts as worn correctly by its share).

The statements are :func:`tingbao.collector.schema.wear_sums`'s.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from tingbao.collector import schema
from tingbao.collector.lineprotocol import line

from .shifts import local_days, local_midnight_ns

STATE_SECONDS = (("removed", "removed_s"), ("poor_fit", "poor_fit_s"), ("voice", "voice_s"))
"""(edge state, WEAR_DAILY field of its assessed seconds)."""


@dataclasses.dataclass(frozen=True)
class WearDay:
    """One worker's wear time on one local date at one meter; seconds (s)."""

    enterprise: str
    meter: str
    worker: str
    date: dt.date
    worn_s: float
    assessed_s: float
    removed_s: float
    poor_fit_s: float
    voice_s: float

    @property
    def share(self) -> float | None:
        """worn_s / assessed_s, None when nothing was assessed."""
        return self.worn_s / self.assessed_s if self.assessed_s > 0 else None


def wear_sums(period: schema.Period, enterprise: str, rp: str | None = None) -> list[str]:
    """InfluxQL statements of the sums of ``period`` per (meter, worker)
    (:func:`tingbao.collector.schema.wear_sums`): first ``worn`` = SUM(worn_s) and
    ``assessed`` = SUM(assessed_s), then SUM(assessed_s) AS ``assessed`` of each state of
    :data:`STATE_SECONDS`, in that order."""
    return schema.wear_sums(period, enterprise, [state for state, _ in STATE_SECONDS], rp)


def wear_days(reader, enterprise: str, date: dt.date, timezone: str) -> list[WearDay]:
    """Every (meter, worker) with protection records on local ``date`` of ``enterprise``,
    with its sums (InfluxDB's), sorted by worker and meter."""
    first, *by_state = wear_sums(local_days(date, date, timezone), enterprise)
    acc: dict[tuple[str, str], dict[str, float]] = {}
    for r in reader.query_rows(first):
        acc[(r["meter"], r["worker"])] = {"worn_s": float(r["worn"] or 0.0),
                                          "assessed_s": float(r["assessed"] or 0.0)}
    for (_, field), q in zip(STATE_SECONDS, by_state, strict=True):
        for r in reader.query_rows(q):
            acc.setdefault((r["meter"], r["worker"]), {})[field] = float(r["assessed"] or 0.0)
    return [WearDay(enterprise, meter, worker, date,
                    **{f: d.get(f, 0.0) for f in ("worn_s", "assessed_s", "removed_s",
                                                  "poor_fit_s", "voice_s")})
            for (meter, worker), d in sorted(acc.items(), key=lambda kv: kv[0][::-1])]


def wear_lines(days: list[WearDay], timezone: str) -> list[str]:
    """The ``schema.WEAR_DAILY`` points of ``days`` (at each date's local midnight)."""
    out = []
    for w in days:
        fields = {"worn_s": w.worn_s, "assessed_s": w.assessed_s, "removed_s": w.removed_s,
                  "poor_fit_s": w.poor_fit_s, "voice_s": w.voice_s, "share": w.share}
        tags = {"enterprise": w.enterprise, "meter": w.meter, "worker": w.worker}
        out.append(line(schema.WEAR_DAILY, tags, fields, local_midnight_ns(w.date, timezone)))
    return out


def close_day(reader, writer, enterprise: str, date: dt.date, timezone: str
              ) -> list[WearDay]:
    """Sum local ``date`` of ``enterprise`` and write its WEAR_DAILY points (into
    ``schema.RP_FOREVER``; writing again overwrites the same points). Returns the days."""
    days = wear_days(reader, enterprise, date, timezone)
    if days:
        writer.write(wear_lines(days, timezone), rp=schema.RP_FOREVER)
    return days
