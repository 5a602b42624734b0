"""``tingbao alerts --config SITE [--stack DIR] ACTION``: list, acknowledge or resolve the
alerts the analysis service raised (the lifecycle and its storage:
:mod:`tingbao.analysis.alert_store`).

* ``list [--enterprise E] [--state S] [--rule R] [--meter M] [--worker W] [--since DATE]
  [--until DATE] [--limit N] [--format table|json]``: newest first; a table with Chinese and
  English headers (the subject column: the post, or the worker and job of a hearing-screening
  alert), or JSON, one alert per line;
* ``show ID``: one alert (its worker, when it is about one) and every change of its history;
* ``ack ID --who NAME --note TEXT``, ``resolve ID --who NAME --note TEXT``: the change is
  stored in InfluxDB, then published on ``tingbao/v1/{enterprise}/alerts``; prints the new
  state. Resolving an open alert without acknowledging it is allowed;
* ``publish ID``: publish the alert's current state again (after a publication failed).

Dates and times are local to the registry's ``[deployment] timezone``. Exit status 0; 1 when
a change was stored but could not be published (the line says how to send it again); 2 with
one line ``tingbao alerts: error: …`` for an unknown id, a change the lifecycle does not
allow, a bad argument or an unreachable server.
"""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata

from tingbao.edge.cli.main import CliError

STATE_ZH = {"open": "待处理", "acknowledged": "已确认", "resolved": "已解决"}
SEVERITY_ZH = {"info": "提示", "warning": "警告", "critical": "严重"}
COLUMNS = (("编号", "id"), ("状态", "state"), ("规则", "rule"), ("测点/通道", "meter/ch"),
           ("班次日期", "shift date"), ("级别", "severity"), ("内容", "text_zh"),
           ("处理人", "who"))
TEXT_COLUMNS = 40
"""Display columns of ``text_zh`` in the table (a CJK character takes two)."""


def register(sub) -> None:
    p = sub.add_parser(
        "alerts", help="list, acknowledge or resolve alerts",
        description="告警 / Alerts: list them, acknowledge or resolve one (open → acknowledged → "
        "resolved, or open → resolved). Every change is stored in InfluxDB and published "
        "on MQTT (tingbao/v1/{enterprise}/alerts).")
    _servers(p, None)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    ls = actions.add_parser("list", help="list alerts, newest first")
    _servers(ls, argparse.SUPPRESS)
    ls.add_argument("--enterprise", metavar="ID")
    ls.add_argument("--state", choices=["open", "acknowledged", "resolved"],
                    help="current state")
    ls.add_argument("--rule", metavar="RULE", help="e.g. lex_projected, meter_offline")
    ls.add_argument("--meter", metavar="ID")
    ls.add_argument("--worker", metavar="ID",
                    help="a worker's pseudonym (hearing-screening alerts)")
    ls.add_argument("--since", metavar="YYYY-MM-DD", help="opened on or after this local date")
    ls.add_argument("--until", metavar="YYYY-MM-DD", help="opened on or before this local date")
    ls.add_argument("--limit", type=int, default=200, metavar="N",
                    help="at most N alerts (default 200)")
    ls.add_argument("--format", choices=["table", "json"], default="table",
                    help="table (default) or json: one object per line")
    ls.set_defaults(func=run_list)

    show = actions.add_parser("show", help="one alert and its history")
    _servers(show, argparse.SUPPRESS)
    show.add_argument("id", help="alert id (16 hex digits, from `list`)")
    show.set_defaults(func=run_show)

    for name, verb in (("ack", "acknowledge"), ("resolve", "resolve")):
        a = actions.add_parser(name, help=f"{verb} an alert (stored and published)")
        _servers(a, argparse.SUPPRESS)
        a.add_argument("id", help="alert id (16 hex digits, from `list`)")
        a.add_argument("--who", required=True, metavar="NAME",
                       help="who does it (1-200 printable characters)")
        a.add_argument("--note", required=True, metavar="TEXT",
                       help="what was done or decided (1-2000 characters)")
        a.set_defaults(func=run_change, change=name)

    pub = actions.add_parser("publish", help="publish an alert's current state again")
    _servers(pub, argparse.SUPPRESS)
    pub.add_argument("id", help="alert id")
    pub.set_defaults(func=run_publish)


def _servers(p, default) -> None:
    """``--config`` and ``--stack`` (accepted before and after the action)."""
    p.add_argument("--config", metavar="SITE", default=default,
                   help="site registry TOML (configs/site.example.toml)")
    p.add_argument("--stack", metavar="DIR", default=default,
                   help="data directory of the local stack (overrides the registry's [stack] "
                        "data_dir; ignored when the registry names [influx]/[mqtt] servers)")


# -------------------------------------------------------------------------------- set-up
def _registry(args):
    from tingbao.collector.registry import load_registry

    if not args.config:
        raise CliError("give the site registry with --config SITE")
    return load_registry(args.config)  # ConfigError (a ValueError): one line, exit 2


def _store(args, reg, *, publish=None):
    from ..alert_store import AlertStore
    from .common import connect

    return AlertStore(*connect(reg, args, writer=True), publish)


def _publisher(args, reg):
    from .common import open_publisher

    return open_publisher(reg, args)  # connects in the background, while InfluxDB is read


def _influx_errors(fn):
    def wrapped(args) -> int:
        from tingbao.collector.influx import InfluxError

        from ..alert_store import UnknownAlert

        try:
            return fn(args)
        except UnknownAlert as e:
            raise CliError(str(e)) from None
        except InfluxError as e:
            raise CliError(f"InfluxDB: {e}; check that it runs (tingbao stack status)"
                           ) from None
    return wrapped


# -------------------------------------------------------------------------------- output
def _width(text: str) -> int:
    """Display columns of ``text`` (East Asian wide and full-width characters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _fit(text: str, columns: int) -> str:
    """``text`` on one line, cut to ``columns`` display columns (with … when cut)."""
    text = " ".join(text.split())
    if _width(text) <= columns:
        return text
    out, used = [], 0
    for c in text:
        w = _width(c)
        if used + w > columns - 1:
            break
        out.append(c)
        used += w
    return "".join(out) + "…"


def _pad(text: str, columns: int) -> str:
    return text + " " * max(0, columns - _width(text))


def _subject(s) -> str:
    if s.meter is not None:
        return s.meter if s.channel is None else f"{s.meter}/{s.channel}"
    if s.worker is not None:
        return f"worker {s.worker}" + (f" (job {s.job})" if s.job else "")
    return f"job {s.job}" if s.job else "—"


def _who(s) -> str:
    return s.resolved_by or s.acknowledged_by or "—"


def table(states) -> str:
    """The alerts as a text table, headers in Chinese and English."""
    rows = [[f"{zh} {en}" for zh, en in COLUMNS]]
    for s in states:
        rows.append([s.id, f"{STATE_ZH[s.state]} {s.state}", s.rule, _subject(s), s.shift_date,
                     f"{SEVERITY_ZH[s.severity]} {s.severity}", _fit(s.text_zh, TEXT_COLUMNS),
                     _fit(_who(s), 24)])
    widths = [max(_width(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(_pad(c, w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def _local(ns: int | None, tz: str) -> str:
    import datetime as dt
    import zoneinfo

    if ns is None:
        return "—"
    t = dt.datetime.fromtimestamp(ns / 1e9, zoneinfo.ZoneInfo(tz))
    return t.isoformat(sep=" ", timespec="seconds")


def describe(s, tz: str) -> str:
    """One alert: what, where, the texts and its changes so far (local times)."""
    out = [f"告警 alert {s.id}  {STATE_ZH[s.state]} {s.state}",
           f"  规则 rule {s.rule}  测点 post {_subject(s)}  班次 shift {s.shift_date}  "
           f"标准 profile {s.profile}  级别 severity {SEVERITY_ZH[s.severity]} {s.severity}"
           + (f"  第 {s.occurrence + 1} 次 occurrence {s.occurrence}" if s.occurrence else ""),
           *([f"  劳动者 worker {s.worker}"] if s.worker is not None else []),
           *(f"  {t}" for t in s.text_zh.splitlines()),
           *(f"  {t}" for t in s.text_en.splitlines()),
           f"  发出 opened        {_local(s.opened_ns, tz)}"]
    for zh, en, ns, who, note in (
            ("确认", "acknowledged", s.acknowledged_ns, s.acknowledged_by, s.acknowledged_note),
            ("解决", "resolved", s.resolved_ns, s.resolved_by, s.resolved_note)):
        if ns is not None:
            first, *more = (note or "").splitlines() or [""]
            out.append(f"  {zh} {en:13s} {_local(ns, tz)}  {who}: {first}")
            out += [f"      {t}" for t in more]
    if s.state == "resolved" and s.acknowledged_ns is None:
        out.append("  (resolved without acknowledgement / 未经确认直接解决)")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------- actions
def _day_ns(date: str, tz: str, flag: str, *, next_day: bool = False) -> int:
    import datetime as dt

    try:
        d = dt.date.fromisoformat(date)
    except ValueError:
        raise CliError(f"{flag} {date!r} is not a date YYYY-MM-DD") from None
    if next_day:
        d += dt.timedelta(days=1)
    from ..shifts import local_midnight_ns

    return local_midnight_ns(d, tz)


@_influx_errors
def run_list(args) -> int:
    reg = _registry(args)
    tz = reg.deployment.timezone
    if args.limit < 1:
        raise CliError(f"--limit {args.limit}: give a positive number")
    since = _day_ns(args.since, tz, "--since") if args.since else None
    until = _day_ns(args.until, tz, "--until", next_day=True) if args.until else None
    store = _store(args, reg)
    states = store.list(enterprise=args.enterprise, state=args.state, rule=args.rule,
                        meter=args.meter, since_ns=since, until_ns=until, limit=args.limit,
                        worker=args.worker)
    out = sys.stdout
    if args.format == "json":
        for s in states:
            out.write(json.dumps(s.as_dict(), ensure_ascii=False, separators=(",", ":"))
                      + "\n")
        return 0
    if not states:
        out.write("没有符合条件的告警 / no alerts match\n")
        return 0
    out.write(table(states))
    return 0


@_influx_errors
def run_show(args) -> int:
    reg = _registry(args)
    store = _store(args, reg)
    s = store.get(args.id)
    out = sys.stdout
    out.write(describe(s, reg.deployment.timezone))
    out.write("  历史 history:\n")
    for t in store.history(args.id):
        note = " ".join(t.note.split())
        out.write(f"    {_local(t.time_ns, reg.deployment.timezone)}  {t.state:12s} {t.who}"
                  + (f": {note}" if note else "") + "\n")
    return 0


@_influx_errors
def run_change(args) -> int:
    from ..alert_store import InvalidTransition, NotPublished

    reg = _registry(args)
    publish, close = _publisher(args, reg)
    try:
        store = _store(args, reg, publish=publish)
        change = store.acknowledge if args.change == "ack" else store.resolve
        try:
            state = change(args.id, args.who, args.note)
        except InvalidTransition as e:
            raise CliError(str(e)) from None
        except NotPublished as e:
            sys.stdout.write(describe(e.state, reg.deployment.timezone))
            _not_published(args, e)
            return 1
    finally:
        close()
    sys.stdout.write(describe(state, reg.deployment.timezone))
    return 0


@_influx_errors
def run_publish(args) -> int:
    from ..alert_store import NotPublished

    reg = _registry(args)
    publish, close = _publisher(args, reg)
    try:
        state = _store(args, reg, publish=publish).republish(args.id)
    except NotPublished as e:
        _not_published(args, e)
        return 1
    finally:
        close()
    sys.stdout.write(f"已发布 published {state.id} {state.state}\n")
    return 0


def _not_published(args, e) -> None:
    sys.stderr.write(f"tingbao alerts: warning: {e.__cause__ or e}; the change IS stored. "
                     f"Once the broker is back: tingbao alerts --config {args.config} "
                     f"publish {e.state.id}\n")
