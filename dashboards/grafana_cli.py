"""``tingbao dashboards``: Grafana dashboards as code (:mod:`tingbao.dashboards.grafana`).

* ``export DIR [--config SITE [--stack DIR]] [--datasource-url URL] [--db NAME]
  [--user U --password-file F]`` writes the provisioning of the InfluxDB data source and of
  the dashboards (their JSON beside it) under ``DIR/provisioning``. With ``--config`` the
  registry gives the profile in force, the time zone and the enterprise groups, and the data
  source defaults to the deployment's database and the ``reader`` account
  (``collector/registry/connect.py``: ``[influx]`` or the local stack); options given win.
* ``push --url URL --token TOKEN [--folder NAME]`` uploads every dashboard through
  grafana-client; an unreachable or refusing Grafana is one line and exit status 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboards", help="export Grafana provisioning or push the dashboards",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=lambda a: p.error("export or push"))
    cmds = p.add_subparsers(dest="action", metavar="ACTION")
    e = cmds.add_parser("export", help="write Grafana provisioning (data source, dashboards)")
    e.add_argument("dir", metavar="DIR", help="output directory (DIR/provisioning/…)")
    _site_args(e)
    e.add_argument("--datasource-url", metavar="URL", help="InfluxDB URL as Grafana sees it")
    e.add_argument("--db", metavar="NAME", help="database (default tingbao)")
    e.add_argument("--user", metavar="U", help="InfluxDB account (read-only is enough)")
    e.add_argument("--password-file", metavar="F", help="file holding its password")
    e.set_defaults(func=_export)
    u = cmds.add_parser("push", help="upload the dashboards through the Grafana HTTP API")
    u.add_argument("--url", required=True, help="Grafana base URL, e.g. http://grafana:3000")
    u.add_argument("--token", required=True, help="service-account token")
    u.add_argument("--folder", default="tingbao", help="folder (default tingbao; '' General)")
    u.add_argument("--datasource-uid", default=None, help="uid of the InfluxDB data source")
    _site_args(u)
    u.set_defaults(func=_push)


def _site_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="SITE", help="site registry TOML")
    p.add_argument("--stack", metavar="DIR", help="the local stack's data directory")


def _registry(args):
    if not args.config:
        return None
    from tingbao.collector.registry import load_registry

    return load_registry(args.config)  # ConfigError: one line, exit 2


def _export(args) -> int:
    from tingbao.collector.stack.errors import StackError
    from tingbao.edge.cli.main import CliError

    from .grafana.provisioning import Datasource, export

    reg = _registry(args)
    ds = Datasource()
    if reg is not None:
        try:
            ds = _reader_datasource(reg, args.stack)
        except StackError as e:
            raise CliError(f"{e} (or give --datasource-url, --user and --password-file)"
                           ) from None
    password = ds.password
    if args.password_file:
        password = Path(args.password_file).read_text(encoding="utf-8").strip()
    if args.user and password is None:
        raise CliError("--user needs --password-file")
    ds = Datasource(url=args.datasource_url or ds.url, database=args.db or ds.database,
                    user=args.user or ds.user, password=password)
    paths = export(args.dir, ds, reg=reg)
    for p in paths:
        print(p)
    return 0


def _reader_datasource(reg, stack_dir):
    """The deployment's database and read account, as ``collector/registry/connect.py``
    finds them: the registry's ``[influx]``, or the local stack's state and credentials."""
    from tingbao.collector.registry.connect import _stack_dir
    from tingbao.collector.schema import DATABASE
    from tingbao.collector.stack.accounts import Credentials
    from tingbao.collector.stack.state import load_state

    from .grafana.provisioning import Datasource

    if reg.influx is not None:
        i = reg.influx
        return Datasource(url=i.url, database=i.db, user=i.username, password=i.password)
    d = _stack_dir(reg, stack_dir)
    state = load_state(d)
    account = Credentials.load(Path(state.get("credentials_file") or d / "credentials.toml")
                               ).influx("reader")
    return Datasource(url=state["influxdb"]["url"],
                      database=state["influxdb"].get("database", DATABASE),
                      user=account.username, password=account.password)


def _push(args) -> int:
    from tingbao.edge.cli.main import CliError

    from .grafana.boards import DEFAULT_DATASOURCE_UID
    from .grafana.provisioning import PushError, push

    try:
        uids = push(args.url, args.token, folder=args.folder or None, reg=_registry(args),
                    datasource_uid=args.datasource_uid or DEFAULT_DATASOURCE_UID)
    except PushError as e:
        raise CliError(str(e)) from None
    for uid in uids:
        print(f"pushed {uid}")
    return 0
