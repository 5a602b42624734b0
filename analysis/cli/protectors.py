"""``tingbao protectors --config SITE --date YYYY-MM-DD [--enterprise E] [--format
table|json|csv]``: the effective exposure under hearing protection for the shift that starts
on that local date (:mod:`tingbao.analysis.protection_exposure`, GB/T 23466-2009 with the
ISO 4869-2 methods).

One row per job: its LEX,8h, the protector(s) issued, the protected LEX,8h by the best method
of each task and by each method that fits (``lex_octave_band``, ``lex_hml``, ``lex_snr``),
the derating rule, the GB/T 23466 verdict, flags and notes. One row per post: its LAeq, LC,
the octave spectrum's source (1/1 or 1/3 bands) and the catalogue's adequate protectors,
best first (``id L'A verdict``). Only closed days (``tingbao analyze`` wrote their results)
have rows."""

from __future__ import annotations

from .common import date_arg, emit_rows, open_site, site_arguments


def register(sub) -> None:
    p = sub.add_parser("protectors", help="effective exposure under hearing protectors "
                                          "(GB/T 23466, ISO 4869-2) for one day")
    site_arguments(p)
    p.add_argument("--date", type=date_arg, required=True, metavar="YYYY-MM-DD",
                   help="local date on which the shift starts")
    p.add_argument("--enterprise", metavar="ID", help="one enterprise (default: all)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.set_defaults(func=run)


def _r(x, nd: int = 1):
    return None if x is None else round(float(x), nd)


def objects(day) -> list[dict]:
    """The rows of one :class:`~tingbao.analysis.protection_exposure.DayProtection`."""
    rows = []
    for j in day.jobs:
        rows.append({
            "kind": "job", "enterprise": j.enterprise, "job": j.job,
            "date": j.date.isoformat(), "profile": day.profile, "lex_8h": _r(j.lex_db),
            "protectors": "+".join(j.protectors), "protected_lex_8h": _r(j.protected_lex_db),
            "methods": ",".join(j.methods),
            **{f"lex_{m}": _r(v) for m, v in j.by_method.items()},
            "derating": j.derating, "verdict": j.verdict.code if j.verdict else None,
            "verdict_zh": j.verdict.name_zh if j.verdict else None,
            "eu_status": j.eu_status,
            "flags": ",".join(j.flags), "notes": " | ".join(j.notes)})
    for p in day.posts:
        s = p.spectrum
        rows.append({
            "kind": "post", "enterprise": p.enterprise, "meter": p.meter,
            "channel": p.channel, "date": p.date.isoformat(), "profile": day.profile,
            "laeq": _r(p.la_db), "lex_8h": _r(p.lex_db), "lc": _r(s.lc_db if s else None),
            "bands": f"1/{s.fraction}" if s and s.fraction else None,
            "derating": p.derating,
            "adequate": "; ".join(f"{r.protector.id} {r.protected.level_db:.1f} "
                                  f"{r.verdict.code}" for r in p.ranked)})
    return rows


def table(rows: list[dict]) -> str:
    out = []
    jobs = [r for r in rows if r["kind"] == "job"]
    posts = [r for r in rows if r["kind"] == "post"]
    if jobs:
        out.append("工种 job | LEX,8h | 护听器 protector | 佩戴后 protected | 方法 method | "
                   "折减 derating | 评价 verdict")
        for r in jobs:
            out.append(f"{r['enterprise']}/{r['job']} | {r['lex_8h']} | {r['protectors'] or '—'}"
                       f" | {r['protected_lex_8h']} | {r['methods'] or '—'} | {r['derating']}"
                       f" | {r['verdict_zh'] or '—'} {r['verdict'] or ''}"
                       + (f" | EU {r['eu_status']}" if r["eu_status"] else "")
                       + (f" [{r['flags']}]" if r["flags"] else ""))
            for k in ("lex_octave_band", "lex_hml", "lex_snr"):
                if r.get(k) is not None:
                    out.append(f"    {k[4:]}: {r[k]}")
            if r["notes"]:
                out.append(f"    注 note: {r['notes']}")
    if posts:
        out.append("岗位 post | LAeq | LC | 频带 bands | 合适的护听器 adequate protectors")
        for r in posts:
            out.append(f"{r['enterprise']}/{r['meter']}:{r['channel']} | {r['laeq']} | "
                       f"{r['lc']} | {r['bands'] or '—'} | {r['adequate'] or '—'}")
    if not rows:
        out.append("无已关闭班次的结果 no closed-day results (run tingbao analyze first)")
    return "\n".join(out) + "\n"


def run(args) -> int:
    from tingbao.edge.cli.main import CliError

    from ..protection_exposure import compute

    site = open_site(args)
    rows = []
    for ent in site.enterprises:
        try:
            rows += objects(compute(site.reader, site.reg, ent, args.date))
        except ValueError as e:  # a catalogue id the registry names wrongly
            raise CliError(str(e)) from None
    emit_rows(rows, args.format, table)  # every value a scalar: every key a column
    return 0
