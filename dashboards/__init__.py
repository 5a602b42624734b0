"""tingbao.dashboards — the live page and Grafana dashboards as code (ARCHITECTURE.md)."""
