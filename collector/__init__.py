"""tingbao.collector — the server side: registry, schema, InfluxDB client, collector, stack (ARCHITECTURE.md)."""
