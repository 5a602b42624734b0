"""tingbao.analysis: one module per standard over plain numbers and dataclasses
(ARCHITECTURE.md)."""
