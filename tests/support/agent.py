"""What tests read of an agent from outside."""

from __future__ import annotations

import os
import sqlite3


def outbox_depth(path) -> int:
    """Rows in an outbox, read the way another process would (read-only)."""
    if not os.path.exists(path):
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
    except sqlite3.OperationalError:  # the table is not made yet
        return 0
    finally:
        db.close()
