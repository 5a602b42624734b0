"""``tingbao demo``: the whole system on one machine, from the site registry.

It starts the local stack (Mosquitto + InfluxDB); one edge agent process per synthetic meter
of **every** enterprise of the registry (real-time factory scenes at 48 kHz; an agent costs
about 1 % of a core, so one process per meter keeps each meter's MQTT session and log its
own); the collector, its known meters from the registry; the analysis service
(``tingbao analyze``); and the live page (``tingbao serve``), whose address and the
inspector's demo sign-in (user ``inspector``, a password drawn at each start and stored only
as an Argon2id hash in ``DATA_DIR/users.toml``) it prints. A table of the levels and projected
LEX,8h stored in InfluxDB, and each alert as it is raised, go to the terminal.

The registry's shifts start at fixed times, so the demo runs on its own copy,
``DATA_DIR/site.demo.toml`` (:mod:`tingbao.dashboards.demo_site`): every shift starts on the
minute the demo starts in, seven days a week, and the analysis projects the rest of the
shift at the LAeq of the last 60 s, every 5 s. A loud post (stamping, grinding: 91-98 dB(A))
then projects LEX,8h >= 85 dB(A) and ``lex_projected`` is raised within a minute.

``--speed N`` (N > 1) runs one shift N times faster than real time: the shift of
``--enterprise`` (default: the first with synthetic meters) is placed so that only
``hours / N`` of it remain (an 8 h shift at N = 60: 8 min); the elapsed ``hours·(1 - 1/N)``
are back-filled for its loudest synthetic meter by an agent with ``realtime = false``
(niced; about 100-150x real time on one core, so an 8 h shift takes 3-5 min on a 2-core
machine while the live demo keeps the other core), the rest is measured live. The other
meters of that enterprise have its last ``hours / N`` only (low coverage; offline before).
Once the shift has ended and the back-fill is in, the demo closes it (``tingbao analyze
--from D --to D``: LEX,8h per post and job, exceedance alerts) and writes the inspector's report
(``tingbao report``) into ``DATA_DIR/reports``, which the page serves.

The pilot evaluation (``/pilot``, issue 14) is filled once the stack is up
(:mod:`tingbao.dashboards.demo_pilot`): spot-check surveys of a baseline and a follow-up year
(UTF-8 CSV, GBK CSV, XLSX), audiograms and fit tests are written into ``DATA_DIR/pilot``,
imported through the importers of ``tingbao observations|audiograms|fit-tests import``, a day
of wear time at the ear is simulated, and the wearing rates (every scope, per year, the DiD)
and the hearing screening are computed and stored. Its difference in differences needs more
enterprises than the registry's three, so the demo copy adds survey-only enterprises
(:func:`tingbao.dashboards.demo_site.survey_only_enterprises`). With ``--speed`` the screening
runs again after the shift is closed: the jobs' LEX,8h then set the exam intervals and overdue
exams appear.

Everything runs under ``--data-dir`` (default ``var/demo``). Without a terminal the demo stops
by itself (after 120 s, or with ``--speed`` once the report is written), as it does after
``--duration`` seconds; Ctrl-C or SIGTERM stops every process it started and keeps the data
(``tingbao stack up --data-dir var/demo/stack`` brings the database back). Run until
Ctrl-C, the synthetic scenes last 12 h (then those meters go offline on the page).
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time
from importlib import resources
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("demo", help="the demo: stack, simulated meters of every enterprise, "
                                    "collector, analysis service and the live page")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds to run (0 = until Ctrl-C; default: until Ctrl-C on a "
                        "terminal, else 120 s, or with --speed until the report is written)")
    p.add_argument("--data-dir", default=os.path.join("var", "demo"))
    p.add_argument("--site", default=None, metavar="FILE",
                   help="site registry (default: the packaged configs/site.example.toml)")
    p.add_argument("--enterprise", default=None, metavar="ID",
                   help="the enterprise of the terminal table and of the --speed shift "
                        "(default: every enterprise; --speed: the first with synthetic meters)")
    p.add_argument("--speed", type=float, default=None, metavar="N",
                   help="run one shift N times faster than real time (N > 1): only hours/N "
                        "of it remain live, the rest is back-filled; then it is closed and "
                        "reported")
    p.add_argument("--host", default="127.0.0.1", help="the live page's address")
    p.add_argument("--port", type=int, default=8470,
                   help="the live page's port (default 8470; 0 or busy: a free one)")
    p.set_defaults(func=run)


def example_site() -> Path:
    """The packaged example registry."""
    return Path(str(resources.files("tingbao.configs") / "site.example.toml"))


def _python_cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from tingbao.edge.cli.main import main; "
            "sys.exit(main(sys.argv[1:]))", *args]


def _write(path: Path, text: str, mode: int = 0o600) -> str:
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)
    return str(path)


def _toml(s: str) -> str:
    import json

    return json.dumps(s, ensure_ascii=False)  # a TOML basic string


def agent_config(d: Path, stack, meter, seed: int, duration_s: float, *,
                 realtime: bool = True, name: str | None = None) -> str:
    """The agent TOML of one synthetic meter of the registry: ``duration_s`` s of its scene,
    paced to the wall clock (``realtime``) or as fast as the CPU allows and stamped ending
    now (the back-fill of ``--speed``, under its own MQTT client id ``name``)."""
    pw = _write(d / f"{meter.id}.password", stack.mqtt_account(meter.id).password)
    name = name or meter.id
    client = (f"client_id = {_toml(name)}\nbacklog_per_s = 5000.0\nwindow = 500"
              if name != meter.id else "")
    return _write(d / f"agent-{name}.toml", f"""
[meter]
id = {_toml(meter.id)}
enterprise = {_toml(meter.enterprise)}
site = {_toml(meter.site)}
interval_s = 1.0
[source]
kind = "synthetic"
profile = {_toml(meter.source.scene)}
seed = {seed}
duration_s = {duration_s}
realtime = {"true" if realtime else "false"}
[mqtt]
host = {_toml(stack.host)}
port = {stack.mqtt_port}
password_file = {_toml(pw)}
{client}
[outbox]
path = {_toml(str(d / f'outbox-{name}.sqlite'))}
[status]
every_s = 5.0
""")


def collector_config(d: Path, stack, site: Path, metrics_port: int) -> str:
    """The collector TOML: the stack's accounts, known meters from the registry ``site``."""
    m = _write(d / "collector-mqtt.password", stack.mqtt_account("collector").password)
    w, r = stack.influx_account("writer"), stack.influx_account("reader")
    wp = _write(d / "influx-writer.password", w.password)
    rp = _write(d / "influx-reader.password", r.password)
    return _write(d / "collector.toml", f"""
[mqtt]
host = {_toml(stack.host)}
port = {stack.mqtt_port}
username = "collector"
password_file = {_toml(m)}
client_id = "demo-collector"
[influx]
url = {_toml(stack.influx_url)}
username = {_toml(w.username)}
password_file = {_toml(wp)}
[collector]
site = {_toml(str(site))}
metrics_port = {metrics_port}
[rollups]
username = {_toml(r.username)}
password_file = {_toml(rp)}
""")


def rows(stack, enterprise: str) -> dict[tuple[str, str], dict]:
    """Latest levels and the exposure of the last hour per (meter, channel), from InfluxDB."""
    from tingbao.collector import schema

    answer = stack.influx("reader").query_rows(schema.latest_levels(enterprise=enterprise))
    return {(r["meter"], r["channel"]): r for r in answer}


def run(args) -> int:
    import datetime as dt

    from tingbao.analysis.gbzt189_8 import projected_lex_8h
    from tingbao.analysis.gbzt229_4 import grade
    from tingbao.analysis.shifts import shift_at
    from tingbao.collector.registry import load_registry
    from tingbao.collector.stack import Stack, free_ports
    from tingbao.edge.cli.main import CliError

    from .demo_site import demo_registry, demo_shifts, survey_only_enterprises

    site = Path(args.site).resolve() if args.site else example_site()
    original = load_registry(site)
    synthetic = [m for m in original.meters if m.source.kind == "synthetic"]
    if not synthetic:
        raise CliError(f"{site} declares no meter with a synthetic source to simulate")
    ids = [e.id for e in original.enterprises]
    if args.enterprise is not None and args.enterprise not in ids:
        raise CliError(f"--enterprise {args.enterprise!r}: one of {', '.join(ids)}")
    fast = None
    if args.speed is not None:
        if not args.speed > 1:
            raise CliError(f"--speed {args.speed:g}: more than 1 (times real time)")
        fast = args.enterprise or next(m.enterprise for m in synthetic)
        if not any(m.enterprise == fast for m in synthetic):
            raise CliError(f"--speed: {fast} has no synthetic meter to back-fill")
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    duration = args.duration if args.duration is not None else (
        0.0 if tty else (None if fast else 120.0))  # None: until the report is written

    d = Path(args.data_dir).resolve()
    (d / "agents").mkdir(parents=True, exist_ok=True)
    (d / "reports").mkdir(exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    shifts = demo_shifts(original, now, fast=fast, speed=args.speed or 1.0)
    copy_path = d / "site.demo.toml"
    survey_only = survey_only_enterprises(original)
    reg = demo_registry(site, copy_path, shifts, survey_only=survey_only)
    now_ns = time.time_ns()
    fast_window = shift_at(reg, fast, now_ns) if fast else None
    stack = Stack(d / "stack")
    extra = f" (+{len(survey_only)} survey-only for the pilot evaluation)" if survey_only else ""
    print(f"听保 tingbao demo — {len(original.enterprises)} enterprises{extra}, "
          f"{len(synthetic)} simulated "
          f"meters; registry {site}, demo copy {copy_path} (班次开始 shifts start "
          + ", ".join(f"{e} {t}" for e, t in shifts.starts.items())
          + f" {reg.deployment.timezone}, 7 days a week); starting the local stack in "
          f"{d / 'stack'} …", flush=True)
    procs: dict[str, subprocess.Popen] = {}
    logs = []
    stopping = {"now": False}

    def on_signal(signum, frame):
        stopping["now"] = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}

    def start(name: str, *argv: str, log: Path, nice: int = 0) -> subprocess.Popen:
        f = open(log, "ab")  # noqa: SIM115 (closed in finally)
        logs.append(f)
        # a session of its own: Ctrl-C reaches the demo only, which stops them in order
        procs[name] = subprocess.Popen(_python_cmd(*argv), stdout=f, stderr=f,
                                       start_new_session=True,
                                       preexec_fn=(lambda: os.nice(nice)) if nice else None)
        return procs[name]

    pilot: threading.Thread | None = None
    pilot_ok = threading.Event()
    stack.start()
    stack.write_state()  # analyze and serve find the stack by its state.json
    try:
        stack.add_devices(sorted(reg.meter_ids))  # every meter of the registry
        port = free_ports(1)[0]
        start("collector", "collector", "--config", collector_config(d, stack, copy_path, port),
              log=d / "collector.log")
        _wait_metrics(port, procs["collector"], d / "collector.log")
        backfill = []
        if fast_window is not None:  # the elapsed part of the fast shift, as fast as the CPU
            loud = sorted((m for m in synthetic if m.enterprise == fast),
                          key=lambda m: -(m.typical_laeq_db or 0.0))[:1]
            elapsed_s = (time.time_ns() - fast_window.period.start_ns) / 1e9
            for m in loud:
                name = f"{m.id}-backfill"
                cfg = agent_config(d / "agents", stack, m, 100 + len(backfill),
                                   round(elapsed_s, 1), realtime=False, name=name)
                # niced: it takes one core; the live meters, the page and the database keep
                # the other
                start(name, "agent", "--config", cfg, log=d / "agents" / f"{name}.log",
                      nice=10)
                backfill.append(name)
        live_s = duration + 120.0 if duration else 12 * 3600.0
        for seed, m in enumerate(synthetic, start=1):
            start(m.id, "agent", "--config", agent_config(d / "agents", stack, m, seed, live_s),
                  log=d / "agents" / f"{m.id}.log")
        start("analyze", "analyze", "--config", str(copy_path), "--stack", str(d / "stack"),
              log=d / "analyze.log")
        page = _start_page(args, d, copy_path, start)
        print(f"MQTT broker  mqtt://{stack.host}:{stack.mqtt_port}   InfluxDB  "
              f"{stack.influx_url} (db tingbao)   collector metrics "
              f"http://127.0.0.1:{port}/metrics   logs {d}", flush=True)
        for m in synthetic:
            print(f"  meter {m.id:10s} {m.enterprise:10s} {m.site:10s} scene "
                  f"'{m.source.scene}': {m.position_zh} / {m.position_en}")
        if fast_window is not None:
            end = fast_window.local_end()
            print(f"--speed {args.speed:g}: the {fast_window.hours:g} h shift of {fast} "
                  f"({fast_window.date}) started {fast_window.local_start():%H:%M}; "
                  f"{elapsed_s / 3600:.2f} h are back-filled for {', '.join(backfill)} as fast "
                  f"as the CPU allows, the last {(fast_window.period.end_ns - now_ns) / 6e10:.1f}"
                  f" min run live; at {end:%H:%M:%S} it is closed and reported into "
                  f"{d / 'reports'}", flush=True)
        print(f"live page 实时页面 {page or '(not available in this build: tingbao serve)'}",
              flush=True)
        # the pilot evaluation in the background (a few seconds; the live part does not wait)
        pilot = threading.Thread(target=_pilot, args=(stack, reg, d, page, pilot_ok),
                                 name="demo-pilot", daemon=True)
        pilot.start()
        if page:
            password = (d / "inspector.password").read_text(encoding="utf-8").strip()
            print(f"sign in 登录: user inspector  password {password}", flush=True)
        print("Ctrl-C stops the demo 按 Ctrl-C 停止", flush=True)
        seen: set[str] = set()
        reported = False
        t0 = time.monotonic()
        last_table = 0.0
        while not stopping["now"]:
            elapsed = time.monotonic() - t0
            if duration and elapsed >= duration:
                break
            if duration is None and reported:
                break
            time.sleep(1.0)
            _print_alerts(stack, seen, now_ns)
            if (fast_window is not None and not reported
                    and time.time_ns() > fast_window.period.end_ns + 15 * 10**9
                    and all(procs[b].poll() is not None for b in backfill)):
                reported = True
                _close_and_report(d, copy_path, fast, fast_window.date)
                if pilot_ok.is_set():
                    _rescreen(stack, reg)
                _print_alerts(stack, seen, now_ns)  # the exceedances of the closed shift
            if time.monotonic() - last_table >= 10.0:
                last_table = time.monotonic()
                _print_table(stack, reg, args.enterprise, projected_lex_8h, grade)
    finally:
        if pilot is not None:
            pilot.join(30)  # before the database stops under it
        # the page, the analysis and the agents first (their last intervals still reach the
        # collector), then the collector
        for group in ([n for n in procs if n != "collector"][::-1],
                      [n for n in procs if n == "collector"]):
            for n in group:
                if procs[n].poll() is None:
                    procs[n].send_signal(signal.SIGTERM)
            for n in group:
                try:
                    procs[n].wait(20)
                except subprocess.TimeoutExpired:
                    procs[n].kill()
                    procs[n].wait()
        for f in logs:
            f.close()
        stack.stop()
        for s, h in old.items():
            signal.signal(s, h)
        print(f"stopped; data and logs are in {d}", flush=True)
    return 0


def _start_page(args, d: Path, site: Path, start) -> str | None:
    """Start ``tingbao serve`` with a users file of one inspector (a fresh password, stored
    hashed with Argon2id); returns the page's URL, or None when this build has no page."""
    import importlib.util
    import secrets
    import socket

    if importlib.util.find_spec("tingbao.dashboards.serve_cli") is None:
        return None
    from argon2 import PasswordHasher

    password = secrets.token_urlsafe(9)
    _write(d / "inspector.password", password + "\n")
    _write(d / "users.toml", '# tingbao demo: the inspector\'s sign-in (rewritten each run)\n'
           f'[[users]]\nname = "inspector"\nrole = "inspector"\n'
           f'password_hash = {_toml(PasswordHasher().hash(password))}\n')
    port = args.port
    if port:
        with socket.socket() as s:
            try:
                s.bind((args.host, port))
            except OSError:
                port = 0
    if not port:
        from tingbao.collector.stack import free_ports

        port = free_ports(1)[0]
    p = start("serve", "serve", "--config", str(site), "--stack", str(d / "stack"),
              "--host", args.host, "--port", str(port), "--users", str(d / "users.toml"),
              "--reports", str(d / "reports"), log=d / "serve.log")
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    url = f"http://{host}:{port}/"
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline and p.poll() is None:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return url
        except OSError:
            time.sleep(0.2)
    tail = (d / "serve.log").read_text(encoding="utf-8", errors="replace")[-1500:]
    print(f"(the live page did not start; serve.log:\n{tail})", flush=True)
    return None


def _pilot(stack, reg, d: Path, page: str | None, done: threading.Event) -> None:
    """Write, import and evaluate the demo's pilot into ``d / "pilot"``
    (:func:`tingbao.dashboards.demo_pilot.run`); print its summary and the page's
    ``/pilot`` address and set ``done``, or print why it failed (the rest of the demo goes
    on)."""
    from .demo_pilot import run as run_pilot

    try:
        result = run_pilot(reg, stack.influx("reader"), stack.influx("writer"), d / "pilot")
    except Exception as exc:  # noqa: BLE001 - the live demo does not depend on it
        print(f"(试点评估未生成 the pilot evaluation was not written: {exc!r})", flush=True)
        return
    print(result.summary(), flush=True)
    if page:
        f = result.files
        print(f"试点评估 pilot evaluation: {page}pilot (期间 periods {f.baseline}, {f.followup}: "
              f"抽查 spot checks, DiD; {f.followup + 1}: 耳内实测 wear time at the ear)",
              flush=True)
    done.set()


def _rescreen(stack, reg) -> None:
    """Hearing screening again (``tingbao screening --write``) now that a closed shift gives
    its jobs' LEX,8h: exam intervals, due dates and overdue exams (GBZ 188)."""
    from tingbao.analysis.alert_store import AlertStore
    from tingbao.analysis.screening import run_screening

    reader, writer = stack.influx("reader"), stack.influx("writer")
    done = run_screening(reg, reader, writer, AlertStore(reader, writer), write=True)
    overdue = sum(1 for r in done.results if r.overdue)
    print(f"听力筛查 hearing screening again with the closed shift's LEX,8h: {overdue} 逾期 "
          f"overdue exams, {len(done.raised)} new alerts", flush=True)


def _print_alerts(stack, seen: set[str], since_ns: int) -> None:
    """Print the alerts raised since ``since_ns`` (UTC ns) not printed yet (ids in
    ``seen``)."""
    from tingbao.analysis.alert_store import AlertStore

    try:
        store = AlertStore(stack.influx("reader"), stack.influx("writer"))
        alerts = store.list(since_ns=since_ns, limit=500)
    except Exception:  # noqa: BLE001 - the measurement does not exist before the first alert
        return
    for a in sorted(alerts, key=lambda a: a.raised_ns):
        if a.id in seen:
            continue
        seen.add(a.id)
        print(f"预警 alert [{a.severity}] {a.rule} {a.enterprise} {a.meter or ''} "
              f"{a.shift_date}: {a.text_zh} / {a.text_en}", flush=True)


def _close_and_report(d: Path, site: Path, enterprise: str, date) -> None:
    """Close the fast shift (``tingbao analyze --from D --to D``) and write its report."""
    stack = str(d / "stack")
    for argv in (("analyze", "--config", str(site), "--stack", stack, "--enterprise",
                  enterprise, "--from", str(date), "--to", str(date), "--redo"),
                 ("report", "--config", str(site), "--stack", stack, "--enterprise",
                  enterprise, "--from", str(date), "--to", str(date), "--out",
                  str(d / "reports"))):
        with open(d / f"{argv[0]}-{date}.log", "ab") as log:
            done = subprocess.run(_python_cmd(*argv), stdout=log, stderr=subprocess.STDOUT)
        print(f"tingbao {argv[0]} {enterprise} {date}: "
              f"{'done' if done.returncode == 0 else f'failed ({done.returncode})'}; log "
              f"{d / f'{argv[0]}-{date}.log'}", flush=True)
    for f in sorted((d / "reports").glob(f"*{enterprise}*")):
        print(f"report 报告 {f}", flush=True)


def _print_table(stack, reg, enterprise, projected_lex_8h, grade) -> None:
    """Each simulated post's latest levels and projected LEX,8h, from InfluxDB."""
    print(f"{'meter 测点':11s} {'s':>6s} {'LAeq,1s':>8s} {'LAFmax':>7s} {'LCpeak':>7s} "
          f"{'projected':>9s}  等级 grade", flush=True)
    for e in reg.enterprises:
        if enterprise is not None and e.id != enterprise:
            continue
        try:
            latest = rows(stack, e.id)
        except Exception as exc:  # noqa: BLE001 - a passing hiccup; the demo goes on
            print(f"(query failed: {exc})", flush=True)
            continue
        for m in reg.meters_of(e.id):
            r = latest.get((m.id, "0"))
            if m.source.kind != "synthetic" or not r:
                continue
            ea, covered = float(r["ea"] or 0.0), float(r["coverage"] or 0.0)
            projected = projected_lex_8h(ea, covered, e.shift.hours * 3600.0)
            g = grade(projected, reg.profile)
            print(f"{m.id:11s} {covered:6.0f} {r['laeq']:8.1f} {r['lafmax']:7.1f} "
                  f"{r['lcpeak']:7.1f} {_num(projected):>9s}  {g.label if g else ''}",
                  flush=True)


def _num(x: float) -> str:
    return f"{x:.1f}" if math.isfinite(x) else "—"


def _wait_metrics(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    """Wait until the collector serves /metrics with ``subscribed: true`` (it then receives
    what the meters publish), or fail with its log."""
    import json
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with opener.open(f"http://127.0.0.1:{port}/metrics", timeout=1.0) as resp:
                if json.loads(resp.read()).get("subscribed"):
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    tail = log.read_text(encoding="utf-8", errors="replace")[-2000:] if log.exists() else ""
    from tingbao.edge.cli.main import CliError

    raise CliError(f"the collector did not subscribe within {timeout:g} s; its log:\n{tail}")
