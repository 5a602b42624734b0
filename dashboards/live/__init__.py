"""The built-in live page (``tingbao serve``): Starlette + uvicorn, Server-Sent Events, Jinja2
templates and Apache ECharts vendored from the npm registry at build time (no CDN)."""
