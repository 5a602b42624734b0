"""The agent's clock check: the offset of the local clock against an (S)NTP server.

The agent stamps every interval with the local wall clock (UTC ns, ``stream_start_ns + i ×
interval``), so a clock that is off puts every exposure at the wrong time of the shift. With
``[status] sntp_server`` set, :class:`ClockCheck` asks the server every ``sntp_every_s``
seconds (RFC 4330, one query, :func:`sntp_offset`) in its own thread; the agent reports the
latest offset in its status as ``clock_offset_s`` (local − server, s) and logs a warning when
it exceeds 1 s. The collector refuses intervals more than 300 s in the future
(``contract.FUTURE_TOLERANCE_S``), so a badly skewed device shows up in the dead letters too.
"""

from __future__ import annotations

import logging
import math
import socket
import struct
import threading
import time

__all__ = ["ClockCheck", "sntp_offset"]

log = logging.getLogger("tingbao.edge.clock")

NTP_EPOCH_OFFSET = 2_208_988_800
"""Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01)."""

WARN_OFFSET_S = 1.0
"""An offset beyond this many seconds is logged as a warning."""


def sntp_offset(server: str, port: int = 123, timeout: float = 1.0) -> float:
    """Offset of the local clock against an (S)NTP server, seconds (RFC 4330, one query).

    Returns local − server: positive when the local clock, and so every interval start the
    agent stamps, is ahead of the server's time. Raises OSError (unreachable, timeout) or
    ValueError (a reply that is not a valid, synchronised server answer to this query).
    """
    addr = socket.getaddrinfo(server, port, type=socket.SOCK_DGRAM)[0]
    with socket.socket(addr[0], socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        t1 = time.time_ns()
        xmt = _to_ntp(t1)
        packet = bytearray(48)
        packet[0] = (0 << 6) | (4 << 3) | 3  # LI 0, version 4, mode 3 (client)
        packet[40:48] = xmt
        s.sendto(bytes(packet), addr[4])
        while True:
            data, _ = s.recvfrom(512)
            t4 = time.time_ns()
            if len(data) >= 48 and data[24:32] == xmt:
                break  # a reply to this query (origin timestamp echoed)
    li, mode, stratum = data[0] >> 6, data[0] & 7, data[1]
    if mode not in (4, 5) or stratum == 0 or li == 3:
        raise ValueError(f"SNTP server {server}: unusable reply (mode {mode}, stratum "
                         f"{stratum}, leap indicator {li})")
    t2 = _from_ntp(data[32:40])
    t3 = _from_ntp(data[40:48])
    # NTP: offset of the server against us = ((t2 - t1) + (t3 - t4)) / 2
    return -((t2 - t1) + (t3 - t4)) / 2 / 1e9


def _to_ntp(ns: int) -> bytes:
    sec, frac = divmod(ns, 1_000_000_000)
    return struct.pack("!II", (sec + NTP_EPOCH_OFFSET) & 0xFFFFFFFF, (frac << 32) // 10**9)


def _from_ntp(b: bytes) -> int:
    sec, frac = struct.unpack("!II", b)
    return (sec - NTP_EPOCH_OFFSET) * 1_000_000_000 + (frac * 10**9 >> 32)


class ClockCheck:
    """Measure the clock offset against ``server`` (``host`` or ``host:port``) every
    ``every_s`` seconds in a daemon thread; ``offset_s`` is the latest offset in seconds
    (local − server), None before the first answer or after a failed query."""

    def __init__(self, server: str, every_s: float = 64.0):
        self.server = server
        self.every_s = float(every_s)
        self.offset_s: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tingbao-sntp", daemon=True)

    def start(self) -> ClockCheck:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)

    def _run(self) -> None:
        host, _, port = self.server.partition(":")
        warned = False
        while not self._stop.is_set():
            try:
                offset = sntp_offset(host, int(port or 123))
                if math.isfinite(offset):
                    self.offset_s = offset
                    if abs(offset) > WARN_OFFSET_S:
                        log.warning("the local clock is %+.3f s off %s: interval times are "
                                    "off by as much", offset, self.server)
                warned = False
            except (OSError, ValueError) as e:
                self.offset_s = None
                if not warned:
                    log.warning("SNTP server %s: %s", self.server, e)
                    warned = True
            self._stop.wait(self.every_s)
