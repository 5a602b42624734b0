"""analysis/storage.py on a real InfluxDB: batched writes into the ``forever`` retention policy
(shared by the observation, audiogram and screening writers and ``tingbao audiograms``)."""

from __future__ import annotations

import pytest

from tingbao.analysis.storage import write_batches
from tingbao.collector import schema
from tingbao.collector.lineprotocol import line

T0 = 1_767_196_800 * 10**9  # 2025-12-31T16:00Z = 2026-01-01 00:00 Asia/Shanghai


def test_write_batches_in_order_with_progress(stack):
    # 5 observations, 2 per request → batches of 2, 2, 1 (progress sees each), 5 written;
    # each point at its own second so none overwrites another
    tags = dict.fromkeys(schema.OBSERVATION_TAGS, "x")
    lines = [line(schema.OBSERVATIONS, {**tags, "enterprise": "store-batches", "worker": f"w{i}"},
                  {"wearing": True, "correct": i % 2 == 0}, T0 + i * 10**9) for i in range(5)]
    seen: list[int] = []
    assert write_batches(stack.influx("writer"), lines, schema.RP_FOREVER, 2, seen.append) == 5
    assert seen == [2, 2, 1]
    rows = stack.influx("reader").query_rows(schema.observations_query(
        T0, T0 + 5 * 10**9, ["store-batches"]))
    assert sorted(r["worker"] for r in rows) == ["w0", "w1", "w2", "w3", "w4"]
    assert sum(r["correct"] for r in rows) == 3  # w0, w2, w4
    with pytest.raises(ValueError, match="at least 1"):
        write_batches(stack.influx("writer"), lines, schema.RP_FOREVER, 0)
