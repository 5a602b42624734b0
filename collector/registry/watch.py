"""Hot reload of the site registry: a running service picks up an edited file without a
restart, on SIGHUP or when the file changes, and refuses a broken edit.

:class:`RegistryWatcher` holds the registry in force. :meth:`~RegistryWatcher.reload` reads
the file again; a file that fails any check is refused with its error (logged, kept in
``last_error``, counted in ``refused``) and the registry in force stays. A thread polls the
file's modification time, size and inode every ``poll_s`` seconds and reloads once they
changed and then stayed the same for one poll (so a file being written in place is not read
half-written), and only a different content (SHA-256) counts as an edit (a ``touch`` alone
changes nothing). A SIGHUP
handler installed by the service calls :meth:`~RegistryWatcher.request_reload`, which only
sets a flag (safe in a signal handler); the thread does the work.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from tingbao.edge.settings import ConfigError

from .site import Registry, load_registry

log = logging.getLogger("tingbao.registry")


class RegistryWatcher:
    """The registry in force for one file.

    Args:
        path: the site registry TOML file (loaded now: a broken file raises ConfigError).
        on_change: ``f(new, old)`` called (in the watcher's thread, or the caller's for
            :meth:`reload`) after an edit was accepted.
        poll_s: seconds between checks of the file, s.
    """

    def __init__(self, path: str | os.PathLike, on_change: Callable[[Registry, Registry], None]
                 | None = None, poll_s: float = 1.0):
        self.path = Path(path)
        self.on_change = on_change
        self.poll_s = float(poll_s)
        self.current: Registry = load_registry(self.path)
        self.reloads = 0
        self.refused = 0
        self.last_error: str | None = None
        self._stamp = self._stat()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def _stat(self):
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def reload(self) -> bool:
        """Read the file again. Returns True when a changed registry was accepted; False
        when it is unchanged or refused (then ``last_error`` says why)."""
        with self._lock:
            self._stamp = self._stat()
            try:
                new = load_registry(self.path)
            except ConfigError as e:
                self.refused += 1
                self.last_error = str(e)
                log.error("site registry edit refused, the registry in force stays: %s", e)
                return False
            old = self.current
            self.last_error = None  # the file is good again (changed or not)
            if new.digest == old.digest:
                return False
            self.current = new
            self.reloads += 1
        added, removed = new.meter_ids - old.meter_ids, old.meter_ids - new.meter_ids
        log.info("site registry %s reloaded: %d meters (%d added, %d removed)", self.path,
                 len(new.meters), len(added), len(removed))
        if self.on_change is not None:
            self.on_change(new, old)
        return True

    def request_reload(self) -> None:
        """Ask the watcher's thread to reload now (safe from a signal handler)."""
        self._wake.set()

    def start(self) -> RegistryWatcher:
        self._thread = threading.Thread(target=self._run, name="tingbao-registry",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def _run(self) -> None:
        seen = self._stamp  # the file's stamp at the previous poll
        while not self._stop.is_set():
            forced = self._wake.wait(self.poll_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            stamp = self._stat()
            # a changed file is read once it stayed unchanged for a whole poll, so an editor
            # still writing it (in place, not by rename) is not read half-written
            settled = stamp == seen
            seen = stamp
            if forced or (stamp != self._stamp and settled):
                try:
                    self.reload()
                except Exception:  # a bug in a callback must not end the watcher
                    log.exception("site registry reload failed")
