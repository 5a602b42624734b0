"""Points the analysis computes or imports, written to InfluxDB in batches
(:meth:`tingbao.collector.influx.InfluxClient.write`, one ``/write`` request per batch): the
observations of a survey, audiograms, screening results. A file of tens of thousands of rows
becomes requests of a bounded size, and a progress bar can follow them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["write_batches"]


def write_batches(writer, lines: Sequence[str], rp: str | None, batch: int = 5000,
                  progress: Callable[[int], None] | None = None) -> int:
    """Write line-protocol ``lines`` with ``writer`` (an ``InfluxClient``) into retention
    policy ``rp``, ``batch`` lines per request, in order; ``progress`` is called with each
    batch's size after it was stored. Returns the number of lines written. An InfluxDB error
    propagates (the batches before it are stored)."""
    if batch < 1:
        raise ValueError(f"batch {batch!r}: at least 1 line")
    for i in range(0, len(lines), batch):
        chunk = lines[i:i + batch]
        writer.write(chunk, rp=rp)
        if progress:
            progress(len(chunk))
    return len(lines)
