"""The edge agent: audio source → :class:`~tingbao.edge.meter.SoundLevelMeter` → durable
:class:`~tingbao.edge.outbox.Outbox` → :class:`~tingbao.edge.publisher.Publisher` (MQTT).

The measuring loop only ever writes to the local outbox; the publisher sends from its own
thread (and paho's network thread), so a slow or absent broker never holds up the audio.

Time stamps. Interval ``i`` of a stream starts at ``stream_start_ns + i × interval`` (UTC ns),
counted in samples, so a stream's intervals never drift against each other whatever the
blocks were. ``stream_start_ns`` is, per source kind:

* ``live``: the wall clock when the first block arrived, less that block's length (the
  moment its first sample was captured, to within the driver's latency). Input overflows
  become :meth:`SoundLevelMeter.gap` so the sample clock, and the time stamps, stay true;
* ``file``: ``[source] start_time`` (a TOML date-time with offset), by default the file's
  modification time less its duration (a recorder writes the file as it records);
* ``synthetic``: with ``realtime = true`` now, and the scene is paced to the wall clock; with
  ``realtime = false`` now less the scene's duration, and the scene runs as fast as the CPU
  allows, so that no time stamp lies in the future.

Protection mode (``[meter] mode = "protection"``): the source's ``[protection]``
``outer_channel`` and ``inner_channel`` are two microphones at one ear, outside and under a
hearing protector; instead of levels and bands the agent publishes one ``protection`` record
per interval (:mod:`tingbao.edge.protection`: measured attenuation, the level under the
protector, the worn state against ``required_attenuation_db``; topic
``tingbao/v1/{enterprise}/{site}/{meter}/protection``), tagged with the ``worker``
pseudonym and the ``protector`` id.

Configuration: :class:`~tingbao.edge.agent_settings.AgentConfig`, read from TOML by
:func:`load_config` or checked from a parsed dict by :func:`check_config` (both raise
:class:`~tingbao.edge.settings.ConfigError` naming the file, section and key at fault); see
``configs/agent.example.toml`` for every key with its unit and default.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from . import contract
from .agent_settings import AgentConfig, ConfigError, check_config, load_config
from .calibration import CalibrationError, CalibrationStore
from .clock import ClockCheck
from .meter import SoundLevelMeter
from .outbox import Outbox
from .protection import ProtectionMonitor, ProtectionSettings
from .publisher import Publisher

__all__ = ["Agent", "AgentConfig", "ConfigError", "check_config", "load_config"]

log = logging.getLogger("tingbao.edge.agent")


# ------------------------------------------------------------------------------------- agent
class Agent:
    """Measure a source and publish its interval levels; see the module docstring.

    Parameters
    ----------
    config : dict
        An agent configuration (checked with :func:`check_config` unless it already was).
    source : iterable of :class:`~tingbao.edge.sources.chunk.Chunk`, optional
        Audio to measure instead of the one ``[source]`` opens (embedding, tests); it has
        ``samplerate`` and ``channels`` and may have ``close()`` and ``duration`` (s).
    stream_start_ns : int, optional
        UTC ns of the first sample, instead of the ``[source]`` kind's rule.

    Attributes (available after construction): ``outbox`` (:class:`Outbox`), ``publisher``
    (:class:`Publisher`), ``calibration`` (state dict), and after :meth:`run` ``meter``,
    ``stream_start_ns``, ``intervals`` (completed intervals) and ``records`` (messages
    queued).
    """

    def __init__(self, config: dict, *, source=None, stream_start_ns: int | None = None):
        self.config: AgentConfig = check_config(config)
        self._given_source = source
        self._given_start_ns = stream_start_ns
        m, q, st = self.config.meter, self.config.mqtt, self.config.status
        self.meter_id = m.id
        self.levels_topic = contract.topic(m.enterprise, m.site, m.id, "levels")
        self.bands_topic = contract.topic(m.enterprise, m.site, m.id, "bands")
        self.protection_topic = contract.topic(m.enterprise, m.site, m.id, "protection")
        self.calibration = self._calibration()
        self.meter: SoundLevelMeter | ProtectionMonitor | None = None
        self.source = None
        self.stream_start_ns: int | None = None
        self.intervals = 0
        self.records = 0
        self.out_of_range = 0  # levels reported as null for being outside the contract's range
        self._stop = threading.Event()
        self._held: list[tuple[str, dict]] = []  # records the outbox could not take yet
        self._ran = False
        self.clock = ClockCheck(st.sntp_server, st.sntp_every_s) if st.sntp_server else None
        self.outbox = Outbox(self.config.outbox.path, meter=m.id)
        try:
            self.publisher = Publisher(
                self.outbox, meter=m.id, enterprise=m.enterprise, site=m.site,
                host=q.host, port=q.port, username=q.username,
                password=q.password, ca_file=q.ca_file, client_id=q.client_id,
                window=q.window, backlog_rate=q.backlog_per_s, live_s=q.live_s,
                keepalive=q.keepalive_s, reconnect_s=(1.0, q.reconnect_max_s),
                status_every_s=st.every_s, status_extra=self._status_extra,
                receipts=q.receipts, resend_after_s=q.resend_after_s)
        except BaseException:
            self.outbox.close()
            raise

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop.is_set()

    # ------------------------------------------------------------------ setup
    def _calibration(self) -> dict:
        """S (Pa per unit) and the calibration state reported with every record."""
        m, s = self.config.meter, self.config.source
        if m.calibration_store is not None:
            try:
                cur = CalibrationStore(m.calibration_store).current(m.id)
            except (CalibrationError, ValueError) as e:
                raise ConfigError(f"[meter] calibration_store: {e}") from None
            if cur is None:
                raise ConfigError(f"[meter] calibration_store {m.calibration_store} holds no "
                                  f"check of meter {m.id!r}: record one with "
                                  f"tingbao calibrate FILE --meter {m.id} --store "
                                  f"{m.calibration_store}")
            return {"pa_per_unit": cur["pa_per_unit"], "calibrated": True,
                    "state": cur["status"], "time": cur["time"],
                    "deviation_db": cur.get("deviation_db")}
        if m.pa_per_unit is not None:
            return {"pa_per_unit": m.pa_per_unit, "calibrated": True, "state": "manual"}
        if s.kind == "synthetic":
            from .sources.synthetic import PA_PER_UNIT

            return {"pa_per_unit": PA_PER_UNIT, "calibrated": True, "state": "synthetic"}
        log.warning("meter %s has no calibration (pa_per_unit or calibration_store): levels "
                    "are dB re 20 µPa per raw unit and marked calibrated = false", m.id)
        return {"pa_per_unit": 1.0, "calibrated": False, "state": "none"}

    def _open_source(self):
        s = self.config.source
        kind = s.kind
        if kind == "synthetic":
            from .sources.synthetic import SyntheticScene

            fs = s.samplerate_hz
            block = s.blocksize or (round(fs * 0.1) if s.realtime else round(fs))
            return SyntheticScene(samplerate=fs, duration=s.duration_s, seed=s.seed,
                                  channels=s.channels, blocksize=block, profile=s.profile)
        if kind == "file":
            from .sources.files import FileSource

            return FileSource(s.path, blocksize=s.blocksize or 48000)
        from .sources.live import LiveSource

        return LiveSource(device=s.device, samplerate=s.samplerate_hz,
                          channels=s.channels, blocksize=s.blocksize or 4800,
                          latency=s.latency)

    def _file_start_ns(self, src) -> int:
        s = self.config.source
        if s.start_time is not None:
            t = s.start_time
            return int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000
        return os.stat(s.path).st_mtime_ns - round(src.duration * 1e9)

    # ------------------------------------------------------------------ running
    def stop(self) -> None:
        """Ask :meth:`run` to finish (from a signal handler or another thread): the partial
        interval is flushed, in-flight PUBACKs are awaited, the outbox closed."""
        self._stop.set()  # seen after the current block (live blocks last 0.1 s)

    def run(self, until: float | None = None) -> dict:
        """Measure until the source ends, :meth:`stop` is called, or ``until`` seconds of
        audio (gaps included) were measured; then stop gracefully. Returns a summary:
        ``intervals`` measured, ``records`` queued, ``published`` (acknowledged by the broker
        during this run, older records included), ``refused`` (PUBACKs with a failure code),
        ``queue_depth`` (left in the outbox) and ``drained`` (the outbox is empty)."""
        if self._ran:
            raise RuntimeError("an Agent runs once; create a new one")
        self._ran = True
        cfg = self.config
        s = cfg.source
        kind = s.kind
        self.publisher.start()
        if self.clock is not None:
            self.clock.start()
        try:
            src = self.source = (self._given_source if self._given_source is not None
                                 else self._open_source())
            fs = src.samplerate
            self.meter = meter = self._make_meter(src)
            self._interval_ns = round(meter.interval * 1e9)
            limit = None if until is None else round(until * fs)
            realtime = kind == "synthetic" and s.realtime and self._given_source is None
            if self._given_start_ns is not None:
                self.stream_start_ns = int(self._given_start_ns)
            elif self._given_source is not None:
                span = getattr(src, "duration", None)
                self.stream_start_ns = (None if span is None
                                        else time.time_ns() - round(span * 1e9))
            elif kind == "file":
                self.stream_start_ns = self._file_start_ns(src)
            elif kind == "synthetic":
                now = time.time_ns()
                span = src.duration if limit is None else min(src.duration, until)
                self.stream_start_ns = now if realtime else now - round(span * 1e9)
            t0 = time.monotonic()
            log.info("meter %s: measuring %r, %g s intervals, publishing to %s:%s",
                     self.meter_id, src, meter.interval, cfg.mqtt.host, cfg.mqtt.port)
            next_report = time.monotonic() + 60.0
            for chunk in src:
                data, gap = chunk.data, chunk.gap_before
                if self.stream_start_ns is None:  # live: the first block's first sample
                    self.stream_start_ns = time.time_ns() - round((len(data) + gap) / fs * 1e9)
                if limit is not None:
                    room = limit - meter.clock
                    gap = min(gap, room)
                    data = data[: max(room - gap, 0)]
                if gap:
                    self._emit(meter.gap(gap))
                self._emit(meter.process(data))
                if self._stop.is_set() or (limit is not None and meter.clock >= limit):
                    break
                if realtime:
                    ahead = meter.clock / fs - (time.monotonic() - t0)
                    if ahead > 0 and self._stop.wait(ahead):
                        break
                if time.monotonic() >= next_report:
                    next_report += 60.0
                    st = self.publisher.stats()
                    log.info("measured %d intervals; published %d, queued %d, refused %d",
                             self.intervals, st["published"], st["queue_depth"], st["refused"])
            if self.meter is not None:
                self._emit(meter.flush())
        finally:
            if self.source is not None and hasattr(self.source, "close"):
                self.source.close()
            if self.clock is not None:
                self.clock.stop()
            drained = self.publisher.stop(timeout=cfg.mqtt.drain_s)
            st = self.publisher.stats()
            summary = {"intervals": self.intervals, "records": self.records,
                       "published": st["published"], "refused": st["refused"],
                       "queue_depth": st["queue_depth"], "drained": st["queue_depth"] == 0}
            if not drained and st["queue_depth"]:
                log.warning("%d records stay in the outbox %s; they are sent at the next start",
                            st["queue_depth"], self.outbox.path)
            if self._held:
                log.error("%d records could not be written to the outbox and are lost",
                          len(self._held))
            self.outbox.close()
        log.info("stopped: %s", summary)
        return summary

    def _make_meter(self, src):
        """The level meter, or in protection mode the two-microphone monitor."""
        cfg = self.config
        fs = src.samplerate
        if cfg.meter.mode == "protection":
            pr = cfg.protection
            settings = ProtectionSettings(
                required_db=pr.required_attenuation_db, quiet_below_db=pr.quiet_below_db,
                removed_below_db=pr.removed_below_db, hysteresis_db=pr.hysteresis_db,
                voice_max_s=pr.voice_max_s)
            top = max(pr.outer_channel, pr.inner_channel)
            if top >= src.channels:
                raise ConfigError(f"[protection] channel {top} does not exist: the source has "
                                  f"{src.channels} channel(s)")
            return ProtectionMonitor(fs, settings, cfg.meter.interval_s, channels=src.channels,
                                     outer=pr.outer_channel, inner=pr.inner_channel,
                                     pa_per_unit=self.calibration["pa_per_unit"],
                                     full_scale=cfg.meter.full_scale)
        return SoundLevelMeter(
            fs, channels=src.channels, interval=cfg.meter.interval_s,
            pa_per_unit=self.calibration["pa_per_unit"], bands=cfg["meter"]["bands"],
            full_scale=cfg.meter.full_scale,
            impulse_thresholds_db=cfg.meter.impulse_thresholds_db or None,
            impulse_refractory_s=cfg.meter.impulse_refractory_s)

    def _protection_items(self, intervals) -> list[tuple[str, dict]]:
        """The ``protection`` records of completed intervals."""
        pr = self.config.protection
        calibrated = self.calibration["calibrated"]
        return [(self.protection_topic, contract.protection_payload(
            rec, meter=self.meter_id, seq=0,
            start_ns=self.stream_start_ns + rec["index"] * self._interval_ns,
            worker=pr.worker, protector=pr.protector, calibrated=calibrated))
            for rec in intervals.records()]

    def _emit(self, intervals) -> None:
        """Queue the levels (and bands), or the protection records, of completed
        intervals: one transaction."""
        if not len(intervals):
            return
        if self.config.meter.mode == "protection":
            self._queue(self._protection_items(intervals), len(intervals))
            return
        m = self.config.meter
        fraction = {"third": 3, "octave": 1}.get(m.bands)
        items = []
        calibrated = self.calibration["calibrated"]
        for iv in intervals:
            start_ns = self.stream_start_ns + iv.index * self._interval_ns
            recs = iv.records()
            if len(recs) == 1:
                lv = contract.levels_payload(recs[0], meter=self.meter_id, seq=0,
                                             start_ns=start_ns, calibrated=calibrated)
                self._fit_range(lv, contract.LEVEL_FIELDS)
            else:  # a multichannel device: every channel of the interval in one message
                lv = contract.levels_payload_channels(recs, meter=self.meter_id, seq=0,
                                                      start_ns=start_ns, calibrated=calibrated)
                for ch in lv["channels"]:
                    self._fit_range(ch, contract.LEVEL_FIELDS)
            items.append((self.levels_topic, lv))
            for rec in recs if fraction is not None else ():
                bd = contract.bands_payload(rec, meter=self.meter_id, seq=0,
                                            start_ns=start_ns, fraction=fraction)
                self._fit_range(bd["bands"], list(bd["bands"]))
                items.append((self.bands_topic, bd))
        self._queue(items, len(intervals))

    def _queue(self, items: list[tuple[str, dict]], n_intervals: int) -> None:
        """Append records to the outbox (held in memory when it cannot take them)."""
        self.intervals += n_intervals
        items = self._held + items
        try:
            self.outbox.append_many(items)
        except Exception as e:  # disk full, I/O error: keep them in memory and retry
            self._held = items[-100_000:]
            log.error("cannot write %d records to the outbox %s (%s); holding them in memory "
                      "and retrying with the next interval", len(items), self.outbox.path, e)
            return
        self._held = []
        self.records += len(items)
        self.publisher.wake()

    def _fit_range(self, fields: dict, keys) -> None:
        """Levels outside the contract's plausible range (``contract.LEVEL_RANGE_DB``), e.g.
        −500 dB from digital silence of a dead input, become null (a collector would refuse
        the whole message); they are counted in the status as ``levels_out_of_range``."""
        lo, hi = contract.LEVEL_RANGE_DB
        bad = [k for k in keys if fields.get(k) is not None and not lo <= fields[k] <= hi]
        if "ea" in fields and fields["ea"] is not None and fields["ea"] > contract.MAX_EA:
            bad.append("ea")
        if not bad:
            return
        if not self.out_of_range:
            log.warning("meter %s: %s = %s outside %g … %g dB: reported as null (digital "
                        "silence? check the input and its calibration)", self.meter_id,
                        bad[0], fields[bad[0]], lo, hi)
        self.out_of_range += len(bad)
        for k in bad:
            fields[k] = None

    def _status_extra(self) -> dict:
        cal = self.calibration
        out = {"calibration": cal["state"], "calibrated": cal["calibrated"],
               "source": self.config.source.kind, "intervals": self.intervals}
        if "time" in cal:
            out["calibration_time"] = cal["time"]
        if isinstance(cal.get("deviation_db"), int | float):
            # the last check's reading minus the calibrator level (GBZ/T 189.8: > 0.5 dB
            # invalidates); the server raises a calibration_drift alert on it
            out["calibration_deviation_db"] = float(cal["deviation_db"])
        if isinstance(cal["pa_per_unit"], int | float):
            out["pa_per_unit"] = float(cal["pa_per_unit"])
        src = self.source
        out["input_overflows"] = 0  # files and synthetic scenes have none
        if src is not None and hasattr(src, "overflows"):  # live: overflows and dropped blocks
            out["input_overflows"] = int(src.overflows + src.dropped_blocks)
            out["missing_s"] = round(src.dropped_frames / src.samplerate, 3)
        if self.out_of_range:
            out["levels_out_of_range"] = self.out_of_range
        if self.clock is not None and self.clock.offset_s is not None:
            out["clock_offset_s"] = round(self.clock.offset_s, 6)
        if self.meter is not None and self.meter.bad_samples:
            out["bad_samples"] = int(self.meter.bad_samples)
        return out
