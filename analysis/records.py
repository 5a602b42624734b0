"""One shift's exposure as the records the ledger stores (``exposure`` points) and as the
JSON objects ``tingbao exposure --format json`` prints: one mapping of names to values for
both, so the store, the command and the reports never disagree.

Post keys: ``kind`` = ``post``, ``enterprise``, ``site``, ``meter``, ``channel``, ``date``
(the shift's local start date), ``laeq`` (dB(A) over the measured time), ``duration_h`` (the
shift), ``coverage`` (fraction measured), ``lex_8h`` and ``u_db`` (expanded, k = 1.65),
``grade`` (``0``, ``I`` … ``IV``), ``noise_work``, ``extrapolated``, ``flags``, ``profile``,
``lcpeak_max`` / ``lzpeak_max`` / ``lafmax_max`` (dB), the impulse counts ``imp_120`` …,
the GBZ 2.2 peak check (``peak_limit_db``, ``peak_exceeded``, ``n_impulses``) and the
side-by-side profiles. Job keys: ``kind`` = ``job``, ``job`` and the tasks instead of meter
and channel (stored as the JSON string field ``tasks``). Values that are not numbers (no
data) are left out of records and are ``null`` in JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable

from tingbao.collector import schema

from .exposure import DayExposure, JobExposure, PostExposure
from .ledger import Record

__all__ = ["day_records", "job_object", "post_object"]


def _num(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return round(x, 6) if math.isfinite(x) else None


def post_object(p: PostExposure, extra: dict | None = None) -> dict:
    """The JSON object of a post (module docstring)."""
    s = p.sums
    obj = {
        "kind": "post", "enterprise": p.enterprise, "site": p.site, "meter": p.meter,
        "channel": p.channel, "date": p.date.isoformat(), "laeq": _num(p.laeq),
        "duration_h": _num(p.duration_h), "coverage": _num(p.coverage),
        "lex_8h": _num(p.lex_8h), "u_db": _num(p.u_db),
        "grade": p.grade.code if p.grade else None,
        "noise_work": p.grade.noise_work if p.grade else None,
        "extrapolated": p.extrapolated, "flags": ",".join(p.flags), "profile": p.profile,
        "lcpeak_max": _num(s.lcpeak_db), "lzpeak_max": _num(s.lzpeak_db),
        "lafmax_max": _num(s.lafmax_db), "covered_s": _num(s.covered_s),
        "ea": s.ea_pa2s if s.ea_pa2s > 0 else None,
    }
    for thr, n in sorted(s.impulses.items()):
        obj[schema.impulse_field(thr)] = int(n)
    if extra:
        obj.update(extra)
    return obj


def job_object(j: JobExposure, extra: dict | None = None) -> dict:
    """The JSON object of a job (module docstring)."""
    obj = {
        "kind": "job", "enterprise": j.enterprise, "job": j.job, "date": j.date.isoformat(),
        "laeq": _num(j.laeq), "duration_h": _num(j.duration_h), "coverage": _num(j.coverage),
        "lex_8h": _num(j.lex_8h), "u_db": _num(j.u_db),
        "grade": j.grade.code if j.grade else None,
        "noise_work": j.grade.noise_work if j.grade else None,
        "flags": ",".join(j.flags), "profile": j.profile,
        "tasks": [{"what": t.what, "hours": t.hours, "laeq": _num(t.laeq), "source": t.source,
                   "meter": t.meter, "channel": t.channel, "coverage": _num(t.coverage)}
                  for t in j.tasks],
    }
    if extra:
        obj.update(extra)
    return obj


_TAG_KEYS = ("kind", "enterprise", "meter", "channel", "job", "profile")


def _record(obj: dict, time_ns: int) -> Record:
    tags = {k: str(obj[k]) for k in _TAG_KEYS if obj.get(k) is not None}
    fields = {}
    for k, v in obj.items():
        if k == "tasks" and v:
            fields[k] = json.dumps(v, ensure_ascii=False, sort_keys=True)  # a job's tasks
            continue
        if k in _TAG_KEYS or v is None or isinstance(v, (list, dict)):
            continue
        if isinstance(v, str) and k == "flags" and not v:
            continue
        fields[k] = v
    return Record(tags, fields, time_ns)


def _extras(extras: dict | None, key) -> tuple[dict, list[dict]]:
    e = (extras or {}).get(key) or {}
    return e.get("extra") or {}, list(e.get("profiles") or ())


def day_records(day: DayExposure, extras: dict | None = None) -> list[Record]:
    """The ``exposure`` records of a day: one per post and job in the profile in force
    (with the ``extra`` fields of :func:`tingbao.analysis.daily.compute_days`), and one per
    post or job and side-by-side profile (``profiles``: field dicts with a ``profile``
    key), all at the shift's start."""
    t = day.shift.period.start_ns
    out = []
    for p in day.posts:
        extra, views = _extras(extras, ("post", (p.meter, p.channel)))
        out.append(_record(post_object(p, extra), t))
        for v in views:
            out.append(_record({"kind": "post", "enterprise": p.enterprise, "meter": p.meter,
                                "channel": p.channel, "date": p.date.isoformat(), **v}, t))
    for j in day.jobs:
        extra, views = _extras(extras, ("job", j.job))
        out.append(_record(job_object(j, extra), t))
        for v in views:
            out.append(_record({"kind": "job", "enterprise": j.enterprise, "job": j.job,
                                "date": j.date.isoformat(), **v}, t))
    return out


def objects(day: DayExposure, extras: dict | None = None) -> Iterable[dict]:
    """JSON objects of a day, posts then jobs; the side-by-side profiles under
    ``"profiles"``."""
    for p in day.posts:
        extra, views = _extras(extras, ("post", (p.meter, p.channel)))
        yield post_object(p, {**extra, "profiles": views})
    for j in day.jobs:
        extra, views = _extras(extras, ("job", j.job))
        yield job_object(j, {**extra, "profiles": views})
