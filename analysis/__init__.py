"""tingbao.analysis — see ../README.md and DESIGN.md."""
