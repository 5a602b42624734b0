"""tingbao.dashboards — see ../README.md and DESIGN.md."""
