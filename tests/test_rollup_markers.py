"""Durable rollup bookkeeping on real servers: the minutes a stored batch touched are written
down (``rollups_due`` markers) in the batch's own ``/write``, before it is acknowledged, so a
collector killed before its rollup pass leaves nothing stale; a restarted collector, or a peer,
finishes them whatever their age, and the markers go once done."""

from __future__ import annotations

import random
import signal
import time

import pytest
from support.collector import collector_process, start_collector
from support.commands import free_port, metrics
from support.configs import write_collector_config
from support.mqtt import Publisher
from support.rollups import levels_payload, marked_minutes, markers, rollup_mismatches
from support.wait import wait_for

from tingbao.collector.lineprotocol import message_lines
from tingbao.collector.rollups import MINUTE_NS, Rollups, SeriesKey, minute_of
from tingbao.collector.schema import LEVELS_1M, RP_FOREVER, source, where_tags
from tingbao.edge import contract


def _publish(stack, enterprise: str, payloads: list[dict]) -> None:
    pubs = {m: Publisher(stack, m) for m in sorted({p["meter"] for p in payloads})}
    try:
        for p in payloads:
            pubs[p["meter"]].publish(contract.topic(enterprise, "s1", p["meter"], "levels"), p)
        for pub in pubs.values():
            pub.wait()
    finally:
        for pub in pubs.values():
            pub.close()


def _backlog(start_ns: int, seconds: int, seed: int, first_seq: int = 0) -> list[dict]:
    """Two meters × two channels, one record a second from ``start_ns``."""
    rng = random.Random(seed)
    return [levels_payload(meter, first_seq + k, start_ns + k * 10**9, rng, channel=ch)
            for k in range(seconds) for meter in ("m1", "m2") for ch in (0, 1)]


def _keys(payloads) -> set[tuple[str, str, int]]:
    return {(p["meter"], str(p["channel"]), minute_of(p["start_ns"])) for p in payloads}


def _rollup_count(stack, enterprise: str) -> int:
    return len(stack.influx().query_rows(
        f"SELECT n FROM {source(LEVELS_1M, RP_FOREVER)} WHERE "
        f"{where_tags([('enterprise', enterprise)])}"))


def _store(writer, rollups: Rollups, enterprise: str, payloads: list[dict]) -> None:
    """What the collector's output does: the data and the markers in one write."""
    lines, spans = [], []
    for p in payloads:
        msg = contract.validate(contract.topic(enterprise, "s1", p["meter"], "levels"),
                                contract.encode(p))
        lines += message_lines(msg)
        spans.append(_span(enterprise, p))
    marks = rollups.mark(spans)
    ok = False
    try:
        writer.write(lines + marks.lines)
        ok = True
    finally:
        rollups.stored(marks, ok)


def _span(enterprise: str, p: dict) -> tuple[SeriesKey, int, int]:
    """The (series, start, end) the collector's validation gives a single-channel record."""
    key = SeriesKey(enterprise, "s1", p["meter"], str(p["channel"]))
    return key, p["start_ns"], p["start_ns"] + int(p["duration_s"] * 1e9)


# ------------------------------------------------------------------------------- tests
def test_markers_are_stored_with_the_batch_and_deleted_once_rolled_up(stack, tmp_path):
    enterprise = "durmark"
    c = start_collector(stack, tmp_path, client_id="durmark", group="g-durmark")
    try:
        base = minute_of(time.time_ns()) - 10 * MINUTE_NS + 15 * 10**9
        payloads = _backlog(base, 150, seed=1)
        _publish(stack, enterprise, payloads)
        wait_for(lambda: not rollup_mismatches(stack, payloads, enterprise), 30, "rollups",
                 detail=lambda: rollup_mismatches(stack, payloads, enterprise)[:5])
        wait_for(lambda: not markers(stack, enterprise), 30, "markers deleted",
                 detail=lambda: markers(stack, enterprise)[:5])
        # the collector counts a deletion once its DELETE statements returned: the markers can
        # be gone from InfluxDB a moment before the counter says so
        wait_for(lambda: c.counters()["rollups"]["markers_deleted"] >= 12, 10,
                 "the deletions counted", detail=lambda: c.counters()["rollups"])
        r = c.counters()["rollups"]
        assert r["markers_written"] >= len(_keys(payloads)) == 12, r
        assert r["markers_deleted"] >= len(_keys(payloads)) and r["errors"] == 0, r
        assert r["scans"] >= 1
    finally:
        c.stop()
    assert not markers(stack, enterprise)


def test_collector_stopped_right_after_the_ack_a_restart_finishes_its_minutes(stack, tmp_path):
    """stop(flush=False) right after the acknowledgement, the rollup pass still 30 s away:
    the markers are already stored, and the restarted collector rolls the minutes up."""
    enterprise = "durcrash"
    kwargs = dict(client_id="durcrash", group="g-durcrash", batch_size=1000, batch_ms=100)
    c = start_collector(stack, tmp_path / "1", settle_ms=30_000, **kwargs)
    base = minute_of(time.time_ns()) - 20 * MINUTE_NS + 20 * 10**9
    payloads = _backlog(base, 130, seed=2)
    try:
        _publish(stack, enterprise, payloads)
        wait_for(lambda: c.counters()["acked"] >= len(payloads), 30, "all acknowledged")
    finally:
        c.stop(flush=False)
    assert c.counters()["rollups"]["written"] == 0
    assert _rollup_count(stack, enterprise) == 0  # killed before its rollup pass
    assert marked_minutes(stack, enterprise) == _keys(payloads)  # stored before the ack

    c = start_collector(stack, tmp_path / "2", settle_ms=100, **kwargs)
    try:
        wait_for(lambda: not rollup_mismatches(stack, payloads, enterprise), 30, "rollups",
                 detail=lambda: rollup_mismatches(stack, payloads, enterprise)[:5])
        wait_for(lambda: not markers(stack, enterprise), 30, "markers deleted")
        assert c.counters()["received"] == 0  # nothing re-delivered: the markers did it
    finally:
        c.stop()


@pytest.mark.slow
def test_backlog_hours_old_is_rolled_up_after_a_sigkill(stack, tmp_path):
    """A ``tingbao collector`` process SIGKILLed after acknowledging backlog 2–3 hours old
    (beyond any catch-up window; catch-up is off here): the restarted process finishes it."""
    enterprise = "durold"
    now_min = minute_of(time.time_ns())
    payloads = (_backlog(now_min - 180 * MINUTE_NS + 30 * 10**9, 100, seed=3)
                + _backlog(now_min - 125 * MINUTE_NS, 70, seed=4, first_seq=1000))
    port = free_port()
    config = write_collector_config(stack, tmp_path, client_id="durold", group="g-durold",
                                    batch_size=1000, batch_ms=100, settle_ms=30_000,
                                    metrics_port=port)
    p = collector_process(config, tmp_path / "collector1.log")
    try:
        _publish(stack, enterprise, payloads)
        wait_for(lambda: (metrics(port) or {}).get("acked", 0) >= len(payloads), 30,
                 "all acknowledged")
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    assert _rollup_count(stack, enterprise) == 0
    assert marked_minutes(stack, enterprise) == _keys(payloads)

    config = write_collector_config(stack, tmp_path, client_id="durold", group="g-durold",
                                    settle_ms=100, metrics_port=port)
    p = collector_process(config, tmp_path / "collector2.log")
    try:
        wait_for(lambda: not rollup_mismatches(stack, payloads, enterprise), 60, "rollups",
                 detail=lambda: rollup_mismatches(stack, payloads, enterprise)[:5])
        wait_for(lambda: not markers(stack, enterprise), 30, "markers deleted")
        assert (metrics(port) or {})["rollups"]["errors"] == 0
    finally:
        p.terminate()
        p.wait(20)


def test_a_peer_takes_over_the_markers_of_a_dead_collector(stack):
    """Markers of another writer are left alone while recent (that collector may be alive),
    taken over once older than ``orphan_s``: recomputed, then deleted."""
    enterprise = "durpeer"
    writer, reader = stack.influx("writer"), stack.influx()
    dead = Rollups(reader, writer, writer_id="dead-collector", settle_s=0)
    payloads = _backlog(minute_of(time.time_ns()) - 150 * MINUTE_NS + 45 * 10**9, 90, seed=5)
    _store(writer, dead, enterprise, payloads)  # stored and marked, then it "dies"
    assert marked_minutes(stack, enterprise) == _keys(payloads)

    young = Rollups(reader, writer, writer_id="peer", settle_s=0)  # orphan_s 600 s
    young.scan()
    assert young.run_due(force=True) == 0 and marked_minutes(stack, enterprise) == _keys(payloads)

    peer = Rollups(reader, writer, writer_id="peer", settle_s=0, orphan_s=0)
    assert peer.scan() >= len(_keys(payloads))
    assert peer.run_due(force=True) >= len(_keys(payloads))
    assert not rollup_mismatches(stack, payloads, enterprise)
    assert not markers(stack, enterprise)
    assert peer.orphans >= len(_keys(payloads)) and peer.errors == 0


def test_a_write_during_the_pass_keeps_its_marker(stack):
    """The race: data for a minute is stored (with its marker) while a pass recomputes that
    minute. The pass must not delete that marker (its query may have missed the data); the
    next pass folds the data in and then deletes it."""
    enterprise = "durrace"
    writer, reader = stack.influx("writer"), stack.influx()
    minute = minute_of(time.time_ns()) - 40 * MINUTE_NS
    first = _backlog(minute, 30, seed=6)
    late = _backlog(minute + 30 * 10**9, 30, seed=7, first_seq=500)

    class Racing(Rollups):
        raced = False

        def _recompute(self, keys):
            written = super()._recompute(keys)
            if not self.raced:  # a concurrent batch lands after the pass's query
                self.raced = True
                _store(writer, self, enterprise, late)
            return written

    r = Racing(reader, writer, writer_id="racer", settle_s=0)
    assert r.scan() == 0  # every marker of this writer known: whole-minute deletes allowed
    _store(writer, r, enterprise, first)
    r.run_due(force=True)
    assert marked_minutes(stack, enterprise) == _keys(first)  # kept: written during the pass
    assert rollup_mismatches(stack, first + late, enterprise)  # the pass missed the late data
    r.run_due(force=True)
    assert not rollup_mismatches(stack, first + late, enterprise)
    assert not markers(stack, enterprise)


def test_a_minute_in_flight_is_not_taken(stack):
    """Between :meth:`Rollups.mark` and :meth:`Rollups.stored` (the write in flight) a
    forced pass leaves the minute alone; once stored it is recomputed and unmarked."""
    enterprise = "durflight"
    writer, reader = stack.influx("writer"), stack.influx()
    r = Rollups(reader, writer, writer_id="flight", settle_s=0)
    payloads = _backlog(minute_of(time.time_ns()) - 50 * MINUTE_NS, 20, seed=8)
    marks = r.mark(_span(enterprise, p) for p in payloads)
    assert len(marks.lines) == len(_keys(payloads)) == 4
    assert r.run_due(force=True) == 0 and r.pending == 4
    lines = [ln for p in payloads for ln in message_lines(contract.validate(
        contract.topic(enterprise, "s1", p["meter"], "levels"), contract.encode(p)))]
    writer.write(lines + marks.lines)
    r.stored(marks, True)
    again = r.mark(_span(enterprise, p) for p in payloads)
    assert again.lines == []  # already marked by this writer: no second marker
    r.stored(again, True)
    assert r.run_due(force=True) == 4
    assert not rollup_mismatches(stack, payloads, enterprise)
    assert not markers(stack, enterprise)


def test_finished_minutes_are_deleted_in_runs_around_owed_ones(stack):
    """Markers go in one statement per run of finished minutes (not one per series), never
    over a minute still owed; that minute's markers go once it is finished."""
    enterprise = "durruns"
    writer, reader = stack.influx("writer"), stack.influx()
    r = Rollups(reader, writer, writer_id="runs", settle_s=0, clean_s=3600)
    r.scan()  # every marker of this writer known: deletes by runs of minutes
    base = minute_of(time.time_ns()) - 70 * MINUTE_NS
    payloads = _backlog(base, 300, seed=9)  # 5 minutes × 4 series
    _store(writer, r, enterprise, payloads)
    owed = [p for p in payloads if minute_of(p["start_ns"]) == base + 2 * MINUTE_NS]
    in_flight = r.mark(_span(enterprise, p) for p in owed)  # a write of minute 3 under way
    assert in_flight.lines == []  # its markers are stored already
    assert r.run_due() == 16 and r.deletes == 0  # minutes owed: deletes wait for clean_s
    r.clean(force=True)
    assert r.deletes == 2  # [minute 1, minute 3) and [minute 4, minute 6)
    assert marked_minutes(stack, enterprise) == _keys(owed)
    r.stored(in_flight, True)
    assert r.run_due(force=True) == 4 and r.deletes == 3
    assert not markers(stack, enterprise)
    assert not rollup_mismatches(stack, payloads, enterprise)
