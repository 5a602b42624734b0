"""tingbao.collector — see ../README.md and DESIGN.md."""
