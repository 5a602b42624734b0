"""``tingbao site check FILE``: check a site registry and summarise what it declares (the
same checks every server-side service applies when it loads or reloads the file)."""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("site", help="check a site registry file (enterprises, sites, meters, "
                                    "job types)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = actions.add_parser("check", help="check the file and print a summary")
    c.add_argument("file", help="site registry TOML (see configs/site.example.toml)")
    c.set_defaults(func=run_check)


def run_check(args) -> int:
    from .registry import load_registry

    reg = load_registry(args.file)  # ConfigError (a ValueError): one line, exit 2
    p = reg.profile
    out = sys.stdout
    out.write(f"{args.file}: OK (sha256 {reg.digest[:16]}…)\n")
    out.write(f"  deployment   {reg.deployment.name_zh} / {reg.deployment.name_en}, "
              f"time zone {reg.deployment.timezone}\n")
    out.write(f"  regulation   {p.id}: {p.name_en}; LEX,8h limit {p.lex_limit_db:g} dB(A), "
              f"{p.exchange_rate_db:g} dB exchange (checked {p.checked})\n")
    for e in reg.enterprises:
        meters, jobs = reg.meters_of(e.id), reg.jobs_of(e.id)
        out.write(f"  {e.id:14s} {e.group:10s} {e.industry:18s} shift {e.shift.start} "
                  f"{e.shift.hours:g} h × {e.shift.days_per_week} d/week; {len(meters)} meters, "
                  f"{len(jobs)} job types\n")
    return 0
