"""What the analysis commands share: the ``--config SITE`` and ``--stack DIR`` arguments, the
date arguments, and opening a site (the registry, the enterprises asked for, the InfluxDB
clients), each error one line saying what to do."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt


def site_arguments(p: argparse.ArgumentParser) -> None:
    """``--config SITE`` (required) and ``--stack DIR``."""
    p.add_argument("--config", required=True, metavar="SITE", help="site registry TOML")
    p.add_argument("--stack", metavar="DIR", help="the local stack's data directory "
                                                  "(default: the registry's [stack] data_dir)")


def date_arg(text: str) -> dt.date:
    """An argparse type: a local date ``YYYY-MM-DD``."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


@dataclasses.dataclass
class OpenSite:
    """A loaded registry, the enterprise ids a command works on, and its clients."""

    reg: object
    enterprises: list[str]
    reader: object
    writer: object | None = None


def open_site(args, *, writer: bool = False) -> OpenSite:
    """Load ``args.config``, check ``args.enterprise`` (all enterprises when absent or None)
    and connect to the deployment's InfluxDB (``reader``, and ``writer`` when asked)."""
    from tingbao.collector.registry import load_registry
    from tingbao.edge.cli.main import CliError

    reg = load_registry(args.config)  # ConfigError: one line, exit 2
    ids = [e.id for e in reg.enterprises]
    wanted = getattr(args, "enterprise", None)
    if wanted is not None and wanted not in ids:
        raise CliError(f"unknown enterprise {wanted!r}; one of {', '.join(ids)}")
    reader, write = connect(reg, args, writer=writer)
    return OpenSite(reg, [wanted] if wanted else ids, reader, write)


STACK_HINT = "or give the stack's directory with --stack DIR"


def connect(reg, args, *, writer: bool = False) -> tuple:
    """(reader, writer or None): the deployment's InfluxDB clients (``args.stack`` overrides
    the registry's local stack); a stack that is not there is one line saying what to do."""
    from tingbao.collector.registry.connect import influx_client
    from tingbao.collector.stack.errors import StackError
    from tingbao.edge.cli.main import CliError

    try:
        reader = influx_client(reg, "reader", stack_dir=args.stack)
        write = influx_client(reg, "writer", stack_dir=args.stack) if writer else None
    except StackError as e:
        raise CliError(f"{e} ({STACK_HINT})") from None
    return reader, write


def open_publisher(reg, args, hint: str = STACK_HINT) -> tuple:
    """(publish, close) of alert changes on MQTT as the ``analysis`` account
    (:func:`tingbao.analysis.alert_store.mqtt_publisher`; it connects in the background);
    a broker that cannot be found is one line with ``hint``."""
    from tingbao.collector.registry.connect import mqtt_endpoint
    from tingbao.collector.stack.errors import StackError
    from tingbao.edge.cli.main import CliError

    from ..alert_store import mqtt_publisher

    try:
        endpoint = mqtt_endpoint(reg, stack_dir=args.stack)
    except StackError as e:
        raise CliError(f"{e} ({hint})") from None
    return mqtt_publisher(endpoint)


def report_arguments(p: argparse.ArgumentParser) -> None:
    """``--lang zh|en``, ``--out DIR`` (required) and ``--no-pdf`` of the report commands."""
    p.add_argument("--lang", choices=("zh", "en"), default="zh",
                   help="zh: Chinese first, English beside (default); en: the reverse")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created)")
    p.add_argument("--no-pdf", action="store_true", help="write the HTML only")


def require_report_font() -> None:
    """The report's CJK font is installed, or one line saying how to install it."""
    from tingbao.edge.cli.main import CliError

    from ..report import plots

    try:
        plots.cjk_font()
    except plots.FontMissing as e:
        raise CliError(str(e)) from None


def write_report(args, html: str, html_path, pdf_path) -> None:
    """Write a report's HTML into ``args.out`` (created), and its PDF unless ``--no-pdf``;
    print each path written."""
    from pathlib import Path

    from ..report import render

    Path(args.out).mkdir(parents=True, exist_ok=True)
    html_path.write_text(html, encoding="utf-8")
    print(html_path)
    if not args.no_pdf:
        render.write_pdf(html, pdf_path)
        print(pdf_path)


def emit_rows(rows: list[dict], fmt: str, table) -> None:
    """Rows on stdout: ``json`` one object a line, ``csv`` with a header of every key whose
    values are not lists or dicts (None as an empty cell), otherwise ``table(rows)``."""
    import csv
    import json
    import sys

    out = sys.stdout
    if fmt == "json":
        for r in rows:
            out.write(json.dumps(r, ensure_ascii=False) + "\n")
    elif fmt == "csv":
        keys = list(dict.fromkeys(k for r in rows for k, v in r.items()
                                  if not isinstance(v, (list, dict))))
        w = csv.DictWriter(out, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in keys})
    else:
        out.write(table(rows))
