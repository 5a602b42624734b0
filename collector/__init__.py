"""tingbao.collector: the server side, i.e. registry, schema, InfluxDB client, collector and
stack (ARCHITECTURE.md)."""
