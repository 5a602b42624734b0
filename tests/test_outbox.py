"""The durable outbox: what is appended survives a reopen and a SIGKILL, seq never goes back."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from tingbao.edge import contract
from tingbao.edge.outbox import Outbox, OutboxError

TOPIC = contract.topic("acme", "press", "m1", "levels")


def payload(i: int) -> dict:
    return {"schema": "tingbao.levels/1", "meter": "m1", "i": i, "text": "噪声" * (i % 5)}


def test_append_assigns_consecutive_seqs_and_encodes_them(tmp_path):
    with Outbox(tmp_path / "q.sqlite", meter="m1") as ob:
        p = payload(0)
        assert ob.append(TOPIC, p) == 1
        assert "seq" not in p  # the caller's dict is left alone
        assert ob.append_many([(TOPIC, payload(i)) for i in range(1, 4)]) == [2, 3, 4]
        assert ob.append_many([]) == []
        assert ob.depth() == 4 and ob.last_seq == 4 and ob.next_seq == 5
        recs = ob.oldest(10)
        assert [r.seq for r in recs] == [1, 2, 3, 4]
        assert all(r.topic == TOPIC for r in recs)
        assert [json.loads(r.payload)["seq"] for r in recs] == [1, 2, 3, 4]
        assert json.loads(recs[3].payload)["text"] == "噪声" * 3
        assert recs[0].payload == contract.encode({**payload(0), "seq": 1})
        assert [r.seq for r in ob.oldest(2, after_seq=2)] == [3, 4]
        assert ob.check() == []


def test_ack_deletes_only_what_is_acknowledged(tmp_path):
    with Outbox(tmp_path / "q.sqlite") as ob:
        ob.append_many([(TOPIC, payload(i)) for i in range(5)])
        assert ob.ack(2) is True
        assert ob.ack(2) is False  # a duplicate PUBACK is harmless
        assert ob.ack_many([1, 4, 99]) == 2
        assert ob.seqs() == [3, 5]
        assert ob.get(3).seq == 3 and ob.get(4) is None
        assert ob.depth() == 2


def test_records_and_seq_survive_reopen_and_full_ack(tmp_path):
    path = tmp_path / "sub" / "q.sqlite"  # the folder is created
    ob = Outbox(path, meter="m1")
    ob.append_many([(TOPIC, payload(i)) for i in range(3)])
    ob.close()
    ob.close()  # twice is fine
    with pytest.raises(OutboxError, match="closed"):
        ob.depth()

    ob = Outbox(path, meter="m1")
    assert ob.seqs() == [1, 2, 3]
    assert json.loads(ob.get(2).payload)["i"] == 1
    assert ob.append(TOPIC, payload(3)) == 4
    ob.ack_many(ob.seqs())  # everything delivered: the queue is empty ...
    assert ob.depth() == 0
    ob.close()

    ob = Outbox(path, meter="m1")  # ... and the sequence still goes on, never back
    assert ob.depth() == 0 and ob.next_seq == 5
    assert ob.append(TOPIC, payload(4)) == 5
    ob.close()


def test_newest_since_selects_recent_records(tmp_path):
    with Outbox(tmp_path / "q.sqlite") as ob:
        old = time.time_ns() - 3600 * 10**9
        ob.append_many([(TOPIC, payload(i)) for i in range(5)], created_ns=old)
        ob.append_many([(TOPIC, payload(i)) for i in range(5, 8)])
        cutoff = time.time_ns() - 10 * 10**9
        assert [r.seq for r in ob.newest_since(cutoff, 10)] == [6, 7, 8]
        assert [r.seq for r in ob.newest_since(cutoff, 2)] == [6, 7]
        assert [r.seq for r in ob.newest_since(cutoff, 10, after_seq=6)] == [7, 8]
        assert [r.seq for r in ob.newest_since(old, 3)] == [1, 2, 3]
        ob.ack_many([6, 7, 8])
        assert ob.newest_since(cutoff, 10) == []


def test_an_outbox_belongs_to_one_meter(tmp_path):
    Outbox(tmp_path / "q.sqlite", meter="m1").close()
    with pytest.raises(OutboxError, match="belongs to meter 'm1', not 'm2'"):
        Outbox(tmp_path / "q.sqlite", meter="m2")
    with pytest.raises(contract.ContractError):
        Outbox(tmp_path / "other.sqlite", meter="bad id")


def test_a_file_that_is_not_a_database_is_refused_clearly(tmp_path):
    bad = tmp_path / "q.sqlite"
    bad.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(OutboxError, match="not a usable SQLite database"):
        Outbox(bad)


# A child that appends (3 records per transaction) and acknowledges (the 4 oldest, every 5th
# round) as fast as it can, printing what each call returned; it is killed with SIGKILL.
CHILD = textwrap.dedent("""
    import sys
    from tingbao.edge.outbox import Outbox
    ob = Outbox(sys.argv[1], meter="m1")
    topic = "tingbao/v1/acme/press/m1/levels"
    i = 0
    while True:
        seqs = ob.append_many([(topic, {"meter": "m1", "i": i, "pad": "x" * (i % 700)})
                               for _ in range(3)])
        print("A", seqs[-1], flush=True)
        i += 1
        if i % 5 == 0:
            old = [r.seq for r in ob.oldest(4)]
            ob.ack_many(old)
            print("K", old[-1], flush=True)
""")


@pytest.mark.parametrize("round_", range(3))
def test_sigkill_mid_stream_leaves_a_consistent_queue(tmp_path_factory, round_):
    """Kill a writer at a random moment, three times over the same file: every append that
    returned is there, no transaction is half there, acknowledged records are gone, the
    payloads are intact and the sequence continues where the last commit left it."""
    path = tmp_path_factory.getbasetemp() / "killed.sqlite"
    before = Outbox(path, meter="m1")
    first_next = before.next_seq
    before.close()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE,
                             text=True)
    lines = []
    deadline = time.monotonic() + 20
    while len(lines) < 60 + 37 * round_ and time.monotonic() < deadline:
        lines.append(child.stdout.readline())
    os.kill(child.pid, signal.SIGKILL)
    rest = child.communicate()[0]
    lines += rest.splitlines()
    assert child.returncode == -signal.SIGKILL
    appended = [int(x.split()[1]) for x in lines if x.startswith("A ")]
    acked = [int(x.split()[1]) for x in lines if x.startswith("K ")]
    assert appended, "the child never appended"

    # read it as another process would, before the outbox object touches it
    raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    raw.close()

    ob = Outbox(path, meter="m1")
    try:
        assert ob.check() == []
        seqs = ob.seqs()
        hi = seqs[-1]
        # every returned append is durable; at most the one in progress may have committed
        # without its print reaching us; never a part of one (3 records per transaction)
        assert hi in (appended[-1], appended[-1] + 3)
        assert (hi - first_next + 1) % 3 == 0
        assert seqs == list(range(seqs[0], hi + 1))  # acks remove the oldest: no holes
        if acked:
            assert seqs[0] > acked[-1]  # what an ack call returned for stays deleted
        assert ob.next_seq == hi + 1
        for r in ob.oldest(len(seqs)):
            p = json.loads(r.payload)
            assert p["seq"] == r.seq and len(p["pad"]) == p["i"] % 700
        assert ob.append(TOPIC, {"meter": "m1", "i": 0, "pad": ""}) == hi + 1
    finally:
        ob.close()


def test_receipts_delete_only_sent_records_and_resends_are_due_later(tmp_path):
    path = tmp_path / "r.sqlite"
    with Outbox(path, meter="m1") as ob:
        ob.append_many([(TOPIC, payload(i)) for i in range(6)])
        t0 = 10**18
        assert ob.mark_sent([1, 2, 3, 4], t0, 60 * 10**9) == 4
        assert ob.sent_state(1) == (1, t0 + 60 * 10**9) and ob.sent_state(5) == (0, 0)
        assert ob.awaiting() == 4
        # due: never sent (5, 6) at once; sent ones after their resend time
        assert [r.seq for r in ob.oldest(10, due_ns=t0)] == [5, 6]
        assert [r.seq for r in ob.oldest(10, due_ns=t0 + 60 * 10**9)] == [1, 2, 3, 4, 5, 6]
        # each unreceipted send doubles the delay, up to 16 x
        for k in range(1, 7):
            ob.mark_sent([4], t0, 60 * 10**9)
            assert ob.sent_state(4) == (k + 1, t0 + min(2**k, 16) * 60 * 10**9)
        assert ob.oldest(1, after_seq=3)[0].sends == 7
        # a receipt deletes sent records in its ranges only: 5 and 6 were never sent
        assert ob.apply_receipt([(2, 3), (5, 100)]) == 2
        assert ob.seqs() == [1, 4, 5, 6]
        assert ob.apply_receipt([(2, 3), (5, 100)]) == 0  # replayed: nothing left to delete
        assert ob.apply_receipt([]) == 0
    with Outbox(path, meter="m1") as ob:  # the marks are on disk
        assert ob.sent_state(1) == (1, t0 + 60 * 10**9) and ob.awaiting() == 2


def test_a_schema_1_outbox_is_upgraded_with_nothing_marked_sent(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value);
        CREATE TABLE records (seq INTEGER PRIMARY KEY, topic TEXT NOT NULL,
                              payload BLOB NOT NULL, created_ns INTEGER NOT NULL);
        INSERT INTO meta VALUES ('schema', 1), ('next_seq', 3), ('meter', 'm1');
    """)
    for seq in (1, 2):
        db.execute("INSERT INTO records VALUES (?, ?, ?, ?)",
                   (seq, TOPIC, contract.encode({**payload(seq), "seq": seq}), 5))
    db.commit()
    db.close()
    with Outbox(path, meter="m1") as ob:
        assert ob.seqs() == [1, 2] and ob.awaiting() == 0 and ob.sent_state(2) == (0, 0)
        assert ob.apply_receipt([(1, 2)]) == 0  # never marked sent by this version
        assert ob.append(TOPIC, payload(3)) == 3 and ob.check() == []
