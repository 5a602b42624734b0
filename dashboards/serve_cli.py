"""``tingbao serve --config SITE``: the built-in live page (floor view, alerts, exposure,
reports) on http://127.0.0.1:8470/ by default; ``--host 0.0.0.0`` opens it to the LAN.
``tingbao serve --hash-password`` reads a password from stdin and prints its Argon2id hash
for the users file (``configs/users.example.toml``). uvicorn serves the Starlette app
(:mod:`tingbao.dashboards.live.app`); SIGINT or SIGTERM stop it (exit 0)."""

from __future__ import annotations

import signal
import sys


class _Stop(Exception):
    """SIGINT or SIGTERM after uvicorn's shutdown."""


def _stopped(signum, frame) -> None:
    raise _Stop()


def register(sub) -> None:
    p = sub.add_parser("serve", help="the live page in a browser",
                       description="实时页面 / The live page: floor view, alerts, exposure and "
                       "reports, served by uvicorn (loopback unless --host).")
    p.add_argument("--config", metavar="SITE", help="site registry TOML")
    p.add_argument("--stack", metavar="DIR", help="the local stack's data directory "
                                                  "(default: the registry's [stack] data_dir)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 for the LAN)")
    p.add_argument("--port", type=int, default=8470, help="TCP port (default 8470)")
    p.add_argument("--users", metavar="FILE", help="users TOML (configs/users.example.toml); "
                   "without it nobody can sign in and the page is read-only")
    p.add_argument("--reports", metavar="DIR", help="directory of `tingbao report` output")
    p.add_argument("--session-minutes", type=float, default=60.0, metavar="MIN",
                   help="a sign-in lasts this long (default 60)")
    p.add_argument("--secret-file", metavar="FILE",
                   help="key that signs session cookies (default: random per process, so a "
                        "restart signs everybody out)")
    p.add_argument("--no-mqtt", action="store_true",
                   help="store alert changes in InfluxDB without publishing them on MQTT")
    p.add_argument("--hash-password", action="store_true",
                   help="read a password from stdin, print its Argon2id hash and exit")
    p.set_defaults(func=run)


def run(args) -> int:
    from tingbao.edge.cli.main import CliError

    from .live import auth

    if args.hash_password:
        if sys.stdin.isatty():
            import getpass

            password = getpass.getpass("password: ")
        else:
            password = sys.stdin.readline().rstrip("\r\n")
        print(auth.hash_password(password))
        return 0
    if not args.config:
        raise CliError("give the site registry with --config SITE")
    import uvicorn

    from tingbao.analysis.alert_store import AlertStore
    from tingbao.analysis.cli.common import STACK_HINT, open_publisher, open_site

    from .live.app import create_app
    from .live.data import FloorData

    args.enterprise = None
    site = open_site(args, writer=True)
    users = auth.load_users(args.users)
    secret = None
    if args.secret_file:
        with open(args.secret_file, encoding="utf-8") as f:
            secret = f.read().strip()
        if len(secret) < 16:
            raise CliError(f"{args.secret_file}: the secret is shorter than 16 characters")
    publish = close = None
    if not args.no_mqtt:
        publish, close = open_publisher(site.reg, args, f"{STACK_HINT}, or --no-mqtt")
    store = AlertStore(site.reader, site.writer, publish)
    app = create_app(site.reg, store, FloorData(site.reg, site.reader), users=users,
                     reports_dir=args.reports, session_minutes=args.session_minutes,
                     secret=secret)
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    first = site.reg.enterprises[0].id if site.reg.enterprises else ""
    print(f"tingbao serve: http://{shown}:{args.port}/floor/{first}"
          + (" (listening on all interfaces)" if shown != args.host else ""), flush=True)
    if not users:
        print("tingbao serve: no --users file: the page is read-only", flush=True)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                            access_log=False, timeout_graceful_shutdown=2)
    # uvicorn catches SIGINT/SIGTERM, shuts down cleanly, then raises the signal again under
    # the handlers it found: these make that a normal end (exit 0)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stopped)
    try:
        uvicorn.Server(config).run()
    except _Stop:
        pass
    finally:
        if close is not None:
            close()
    return 0
