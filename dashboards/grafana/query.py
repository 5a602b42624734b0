"""The InfluxDB (InfluxQL) query target of a Grafana panel, for grafana-foundation-sdk.

The SDK (Grafana 11.6 schema) ships query builders for Prometheus, Loki, TestData … but
none for InfluxDB. :class:`InfluxQuery` is the model (a ``cog`` dataquery variant with
``to_json``/``from_json``, registered for the datasource type ``influxdb`` so that
``Dashboard.from_json`` reads it back as itself) and :class:`Dataquery` the builder a panel's
``.with_target(...)`` takes (the ``cog`` ``Builder`` protocol: ``build()`` returns the
model). A target is always raw InfluxQL::

    {"refId": "A", "datasource": {"type": "influxdb", "uid": UID},
     "query": "SELECT …", "rawQuery": true, "resultFormat": "time_series" | "table"}
"""

from __future__ import annotations

import typing

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants

__all__ = ["DATASOURCE_TYPE", "Dataquery", "InfluxQuery", "RESULT_FORMATS"]

DATASOURCE_TYPE = "influxdb"
RESULT_FORMATS = ("time_series", "table")


class InfluxQuery(cogvariants.Dataquery):
    """One raw InfluxQL target of a panel."""

    def __init__(self, ref_id: str = "A", datasource_uid: str = "", query: str = "",
                 result_format: str = "time_series", alias: str | None = None) -> None:
        self.ref_id = ref_id
        self.datasource_uid = datasource_uid
        self.query = query
        self.result_format = result_format
        self.alias = alias

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "refId": self.ref_id,
            "datasource": {"type": DATASOURCE_TYPE, "uid": self.datasource_uid},
            "query": self.query, "rawQuery": True, "resultFormat": self.result_format}
        if self.alias:
            out["alias"] = self.alias
        return out

    @classmethod
    def from_json(cls, data: dict[str, typing.Any]) -> typing.Self:
        ds = data.get("datasource") or {}
        return cls(ref_id=data.get("refId", "A"), datasource_uid=ds.get("uid", ""),
                   query=data.get("query", ""),
                   result_format=data.get("resultFormat", "time_series"),
                   alias=data.get("alias"))


class Dataquery(cogbuilder.Builder[InfluxQuery]):
    """Builder of an :class:`InfluxQuery`: ``Dataquery(uid).ref_id("A").query(q).table()``."""

    def __init__(self, datasource_uid: str) -> None:
        self._internal = InfluxQuery(datasource_uid=datasource_uid)

    def build(self) -> InfluxQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> typing.Self:
        self._internal.ref_id = ref_id
        return self

    def query(self, query: str) -> typing.Self:
        self._internal.query = query
        return self

    def alias(self, alias: str) -> typing.Self:
        """Series name template (``$tag_meter`` …)."""
        self._internal.alias = alias
        return self

    def result_format(self, fmt: str) -> typing.Self:
        if fmt not in RESULT_FORMATS:
            raise ValueError(f"result format {fmt!r}: one of {', '.join(RESULT_FORMATS)}")
        self._internal.result_format = fmt
        return self

    def table(self) -> typing.Self:
        return self.result_format("table")


cogruntime.register_dataquery_variant(
    cogruntime.DataqueryConfig(identifier=DATASOURCE_TYPE, from_json_hook=InfluxQuery.from_json))
