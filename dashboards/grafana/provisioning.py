"""Grafana provisioning files for the tingbao dashboards (``tingbao dashboards export``) and
their upload through the HTTP API (``tingbao dashboards push``, grafana-client).

Layout written under DIR (Grafana reads ``provisioning/`` as its ``paths.provisioning``)::

    DIR/provisioning/datasources/tingbao.yaml   apiVersion 1, the InfluxDB (InfluxQL) source:
                                                 jsonData {dbName, httpMode POST}, the
                                                 password in secureJsonData
    DIR/provisioning/dashboards/tingbao.yaml    apiVersion 1, a file provider whose
                                                 options.path is the directory below
    DIR/provisioning/dashboards/tingbao/*.json  one JSON file per dashboard (by uid)
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import yaml

from tingbao.collector.schema import DATABASE

from .boards import DEFAULT_DATASOURCE_UID, build_all, dashboard_json
from .query import DATASOURCE_TYPE

__all__ = ["Datasource", "PushError", "export", "push"]

DATASOURCE_NAME = "tingbao InfluxDB"
FOLDER = "tingbao"


@dataclasses.dataclass(frozen=True)
class Datasource:
    """The InfluxDB data source Grafana queries (InfluxQL over HTTP, proxied by Grafana)."""

    url: str = "http://127.0.0.1:8086"
    database: str = DATABASE
    user: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    uid: str = DEFAULT_DATASOURCE_UID
    name: str = DATASOURCE_NAME

    def provisioning(self) -> dict:
        """The ``datasources`` provisioning document (apiVersion 1)."""
        ds: dict = {"name": self.name, "type": DATASOURCE_TYPE, "uid": self.uid,
                    "access": "proxy", "url": self.url,
                    "jsonData": {"dbName": self.database, "httpMode": "POST"},
                    "editable": False}
        if self.user:
            ds["user"] = self.user
        if self.password is not None:
            ds["secureJsonData"] = {"password": self.password}
        return {"apiVersion": 1, "datasources": [ds]}


def export(directory: str | Path, datasource: Datasource, *, reg=None) -> list[Path]:
    """Write the provisioning files and the dashboards' JSON under ``directory``; returns the
    paths written. ``reg``: the site registry (profile, time zone, groups; see
    :func:`.boards.build_all`)."""
    root = Path(directory) / "provisioning"
    ds_dir, db_dir = root / "datasources", root / "dashboards"
    json_dir = db_dir / FOLDER
    for d in (ds_dir, json_dir):
        d.mkdir(parents=True, exist_ok=True)
    written = []
    ds_file = ds_dir / "tingbao.yaml"
    ds_file.write_text(yaml.safe_dump(datasource.provisioning(), allow_unicode=True,
                                      sort_keys=False), encoding="utf-8")
    if datasource.password is not None:
        ds_file.chmod(0o600)  # it holds the reader's password
    written.append(ds_file)
    providers = {"apiVersion": 1, "providers": [{
        "name": "tingbao", "orgId": 1, "folder": FOLDER, "type": "file",
        "disableDeletion": False, "allowUiUpdates": False, "updateIntervalSeconds": 30,
        "options": {"path": str(json_dir.resolve()), "foldersFromFilesStructure": False}}]}
    db_file = db_dir / "tingbao.yaml"
    db_file.write_text(yaml.safe_dump(providers, sort_keys=False), encoding="utf-8")
    written.append(db_file)
    for board in build_all(datasource.uid, reg=reg):
        d = dashboard_json(board)
        path = json_dir / f"{d['uid']}.json"
        path.write_text(json.dumps(d, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


class PushError(RuntimeError):
    """Grafana could not be reached or refused a dashboard (one line, for the CLI)."""


def push(url: str, token: str, *, folder: str | None = FOLDER,
         datasource_uid: str = DEFAULT_DATASOURCE_UID, reg=None, timeout: float = 10.0
         ) -> list[str]:
    """Upload every dashboard to the Grafana at ``url`` with the service-account ``token``
    (``POST /api/dashboards/db``, overwrite), into ``folder`` (created when missing; None:
    the General folder). Returns the uids uploaded; :class:`PushError` on any failure."""
    import niquests
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaException

    api = GrafanaApi.from_url(url, credential=token, timeout=timeout)
    try:
        folder_uid = None
        if folder:
            found = [f for f in api.folder.get_all_folders() if f.get("title") == folder]
            folder_uid = (found[0]["uid"] if found
                          else api.folder.create_folder(folder)["uid"])
        uids = []
        for board in build_all(datasource_uid, reg=reg):
            d = dashboard_json(board)
            payload: dict = {"dashboard": d, "overwrite": True,
                             "message": "tingbao dashboards push"}
            if folder_uid:
                payload["folderUid"] = folder_uid
            api.dashboard.update_dashboard(payload)
            uids.append(d["uid"])
        return uids
    except (niquests.exceptions.ConnectionError, niquests.exceptions.Timeout, OSError) as e:
        why = re.search(r"\[Errno -?\d+\] ([^')]+)", str(e))
        raise PushError(f"cannot reach Grafana at {url}: "
                        f"{why.group(1) if why else type(e).__name__}") from None
    except (GrafanaException, niquests.exceptions.RequestException) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PushError(f"Grafana at {url} refused: {first}") from None
