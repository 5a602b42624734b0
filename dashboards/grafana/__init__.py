"""Grafana dashboards as code (grafana-foundation-sdk, Grafana 11.6 schema), their
provisioning (``tingbao dashboards export``) and upload (``tingbao dashboards push``)."""
