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

Configuration (a dict, as read from TOML by :func:`load_config`; see
``configs/agent.example.toml`` for every key with its unit and default) is checked by
:func:`check_config`, which raises :class:`ConfigError` naming the section and key at fault.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import threading
import time
import tomllib
from pathlib import Path

from . import contract
from .calibration import CalibrationError, CalibrationStore
from .meter import SoundLevelMeter
from .outbox import Outbox
from .publisher import Publisher

__all__ = ["Agent", "CheckedConfig", "ConfigError", "check_config", "load_config"]

log = logging.getLogger("tingbao.edge.agent")


class ConfigError(ValueError):
    """An agent configuration that cannot be used; the text names section and key."""


class CheckedConfig(dict):
    """A configuration returned by :func:`check_config` (complete, defaults filled in)."""


# ------------------------------------------------------------------------------ configuration
_NUM = (int, float)
_REQ = object()  # marks a required key

# section -> key -> (accepted types, default). Paths are resolved against the config's folder.
SCHEMA: dict[str, dict[str, tuple]] = {
    "meter": {
        "id": (str, _REQ), "enterprise": (str, _REQ), "site": (str, _REQ),
        "interval": (_NUM, 1.0), "bands": (str, None), "pa_per_unit": ((*_NUM, list), None),
        "calibration_store": (str, None), "full_scale": (_NUM, 1.0),
    },
    "source": {
        "kind": (str, _REQ),
        # live
        "device": ((str, int), None), "latency": ((str, *_NUM), "high"),
        # file
        "path": (str, None), "start_time": ((str, dt.datetime), None),
        # synthetic
        "profile": (str, "mixed"), "seed": (int, 0), "duration": (_NUM, 3600.0),
        "realtime": (bool, True),
        # common
        "samplerate": (_NUM, 48000.0), "channels": (int, 1), "blocksize": (int, None),
    },
    "mqtt": {
        "host": (str, "127.0.0.1"), "port": (int, None), "username": (str, None),
        "password_file": (str, None), "ca_file": (str, None), "client_id": (str, None),
        "backlog_rate": (_NUM, 200.0), "window": (int, 100), "live_s": (_NUM, 10.0),
        "keepalive": (int, 30), "reconnect_max_s": (_NUM, 30.0), "drain_s": (_NUM, 5.0),
    },
    "outbox": {"path": (str, _REQ)},
    "status": {"every_s": (_NUM, 5.0), "sntp_server": (str, None), "sntp_every_s": (_NUM, 64.0)},
}
_KIND_KEYS = {
    "live": {"device", "latency", "samplerate", "channels", "blocksize"},
    "file": {"path", "start_time", "blocksize"},
    "synthetic": {"profile", "seed", "duration", "realtime", "samplerate", "channels",
                  "blocksize"},
}
_PATH_KEYS = {("meter", "calibration_store"), ("source", "path"), ("mqtt", "password_file"),
              ("mqtt", "ca_file"), ("outbox", "path")}


def load_config(path) -> dict:
    """Read and check a TOML agent configuration; relative paths in it are taken from the
    file's folder. Returns the checked config (see :func:`check_config`)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    try:
        return check_config(raw, base_dir=path.parent)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def check_config(raw: dict, base_dir=None) -> dict:
    """Check an agent configuration and fill in the defaults.

    Returns a new dict with every section and key of :data:`SCHEMA` (paths made absolute
    against ``base_dir``, the MQTT password read from ``password_file`` into
    ``mqtt.password``). Raises :class:`ConfigError` for unknown sections or keys, missing
    required keys, wrong types, bad ids, values out of range and missing files."""
    if not isinstance(raw, dict):
        raise ConfigError("the configuration must be a table of sections")
    unknown = set(raw) - set(SCHEMA)
    if unknown:
        raise ConfigError(f"unknown section(s) {sorted(unknown)}; known: {list(SCHEMA)}")
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    cfg = CheckedConfig()
    for section, keys in SCHEMA.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            raise ConfigError(f"[{section}] must be a table")
        bad = set(given) - set(keys)
        if bad:
            raise ConfigError(f"[{section}]: unknown key(s) {sorted(bad)}; known: "
                              f"{', '.join(keys)}")
        out = {}
        for key, (types, default) in keys.items():
            if key not in given:
                if default is _REQ:
                    raise ConfigError(f"[{section}] {key} is required")
                out[key] = default
                continue
            v = given[key]
            if not isinstance(v, types) or (isinstance(v, bool) and types is not bool
                                            and bool not in _tuple(types)):
                want = " or ".join(t.__name__ for t in _tuple(types))
                raise ConfigError(f"[{section}] {key} = {v!r}: expected {want}")
            if (section, key) in _PATH_KEYS:
                v = str((base / os.path.expanduser(v)).resolve())
            out[key] = v
        cfg[section] = out

    m, s, q, st = cfg["meter"], cfg["source"], cfg["mqtt"], cfg["status"]
    try:
        for k in ("id", "enterprise", "site"):
            contract.check_id(m[k], f"[meter] {k}")
    except contract.ContractError as e:
        raise ConfigError(str(e)) from None
    if not 0.1 <= m["interval"] <= 60.0:
        raise ConfigError(f"[meter] interval = {m['interval']}: must be 0.1 … 60 s")
    if m["bands"] not in (None, "third", "octave"):
        raise ConfigError(f"[meter] bands = {m['bands']!r}: 'third', 'octave' or leave it out")
    if m["pa_per_unit"] is not None and m["calibration_store"] is not None:
        raise ConfigError("[meter]: give pa_per_unit or calibration_store, not both")
    if m["pa_per_unit"] is not None:
        pa = m["pa_per_unit"] if isinstance(m["pa_per_unit"], list) else [m["pa_per_unit"]]
        if not pa or not all(isinstance(x, _NUM) and not isinstance(x, bool)
                             and math.isfinite(x) and x > 0 for x in pa):
            raise ConfigError(f"[meter] pa_per_unit = {m['pa_per_unit']!r}: Pa per raw unit, "
                              "a number > 0 or one per channel")
    if m["calibration_store"] is not None and not os.path.isdir(m["calibration_store"]):
        raise ConfigError(f"[meter] calibration_store {m['calibration_store']}: no such folder "
                          "(record a check first with: tingbao calibrate FILE --meter ID "
                          "--store DIR)")

    kind = s["kind"]
    if kind not in _KIND_KEYS:
        raise ConfigError(f"[source] kind = {kind!r}: one of {', '.join(_KIND_KEYS)}")
    wrong = {k for k in raw.get("source", {}) if k != "kind"} - _KIND_KEYS[kind]
    if wrong:
        raise ConfigError(f"[source] key(s) {sorted(wrong)} do not apply to kind = {kind!r} "
                          f"(it takes {', '.join(sorted(_KIND_KEYS[kind]))})")
    if kind == "file":
        if s["path"] is None:
            raise ConfigError("[source] path is required for kind = 'file'")
        if not os.path.isfile(s["path"]):
            raise ConfigError(f"[source] path {s['path']}: no such file")
        if s["start_time"] is not None:
            s["start_time"] = _aware(s["start_time"])
    if kind == "synthetic":
        from .sources.synthetic import PROFILES

        if s["profile"] not in PROFILES:
            raise ConfigError(f"[source] profile = {s['profile']!r}: one of {', '.join(PROFILES)}")
        if not s["duration"] > 0:
            raise ConfigError("[source] duration must be > 0 s")
        if s["seed"] < 0:
            raise ConfigError("[source] seed must be ≥ 0")
    if s["channels"] < 1 or s["samplerate"] < 16000:
        raise ConfigError("[source] channels must be ≥ 1 and samplerate ≥ 16000 Hz")
    if s["blocksize"] is not None and s["blocksize"] < 1:
        raise ConfigError("[source] blocksize must be ≥ 1 frame")

    if q["port"] is None:
        q["port"] = 8883 if q["ca_file"] else 1883
    if not 0 < q["port"] < 65536:
        raise ConfigError(f"[mqtt] port = {q['port']}: 1 … 65535")
    if q["username"] is None:
        q["username"] = m["id"]  # the broker's ACL ties a device account to its meter id
    q["password"] = None
    if q["password_file"] is not None:
        try:
            q["password"] = Path(q["password_file"]).read_text(encoding="utf-8").strip("\r\n")
        except FileNotFoundError:
            raise ConfigError(f"[mqtt] password_file {q['password_file']}: no such file") \
                from None
        except OSError as e:
            raise ConfigError(f"[mqtt] password_file {q['password_file']}: cannot read ({e})") \
                from None
        if not q["password"]:
            raise ConfigError(f"[mqtt] password_file {q['password_file']} is empty")
    if q["ca_file"] is not None and not os.path.isfile(q["ca_file"]):
        raise ConfigError(f"[mqtt] ca_file {q['ca_file']}: no such file")
    for k, lo in (("backlog_rate", 0.1), ("window", 1), ("live_s", 0.0), ("keepalive", 5),
                  ("reconnect_max_s", 1.0), ("drain_s", 0.0)):
        if q[k] < lo:
            raise ConfigError(f"[mqtt] {k} = {q[k]}: must be ≥ {lo}")
    for k in ("every_s", "sntp_every_s"):
        if not st[k] >= 0.5:
            raise ConfigError(f"[status] {k} = {st[k]}: must be ≥ 0.5 s")
    return cfg


def _tuple(types) -> tuple:
    return types if isinstance(types, tuple) else (types,)


def _aware(value) -> dt.datetime:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ConfigError(f"[source] start_time = {value!r}: not an ISO 8601 date-time") \
                from None
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise ConfigError("[source] start_time needs a date, a time and a UTC offset, e.g. "
                          "2026-11-24T08:00:00+08:00")
    return value


# ------------------------------------------------------------------------------------- agent
class Agent:
    """Measure a source and publish its interval levels; see the module docstring.

    Parameters
    ----------
    config : dict
        An agent configuration (checked with :func:`check_config` unless it already was).

    Attributes (available after construction): ``outbox`` (:class:`Outbox`), ``publisher``
    (:class:`Publisher`), ``calibration`` (state dict), and after :meth:`run` ``meter``,
    ``stream_start_ns``, ``intervals`` (completed intervals) and ``records`` (messages
    queued).
    """

    def __init__(self, config: dict):
        self.config = config if isinstance(config, CheckedConfig) else check_config(config)
        m, q, st = self.config["meter"], self.config["mqtt"], self.config["status"]
        self.meter_id = m["id"]
        self.levels_topic = contract.topic(m["enterprise"], m["site"], m["id"], "levels")
        self.bands_topic = contract.topic(m["enterprise"], m["site"], m["id"], "bands")
        self.calibration = self._calibration()
        self.meter: SoundLevelMeter | None = None
        self.source = None
        self.stream_start_ns: int | None = None
        self.intervals = 0
        self.records = 0
        self.out_of_range = 0  # levels reported as null for being outside the contract's range
        self._stop = threading.Event()
        self._held: list[tuple[str, dict]] = []  # records the outbox could not take yet
        self._ran = False
        self.outbox = Outbox(self.config["outbox"]["path"], meter=m["id"])
        try:
            self.publisher = Publisher(
                self.outbox, meter=m["id"], enterprise=m["enterprise"], site=m["site"],
                host=q["host"], port=q["port"], username=q["username"],
                password=q["password"], ca_file=q["ca_file"], client_id=q["client_id"],
                window=q["window"], backlog_rate=q["backlog_rate"], live_s=q["live_s"],
                keepalive=q["keepalive"], reconnect_s=(1.0, q["reconnect_max_s"]),
                status_every_s=st["every_s"], sntp_server=st["sntp_server"],
                sntp_every_s=st["sntp_every_s"], status_extra=self._status_extra)
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
        m, s = self.config["meter"], self.config["source"]
        if m["calibration_store"] is not None:
            try:
                cur = CalibrationStore(m["calibration_store"]).current(m["id"])
            except (CalibrationError, ValueError) as e:
                raise ConfigError(f"[meter] calibration_store: {e}") from None
            if cur is None:
                raise ConfigError(f"[meter] calibration_store {m['calibration_store']} holds no "
                                  f"check of meter {m['id']!r}: record one with "
                                  f"tingbao calibrate FILE --meter {m['id']} --store "
                                  f"{m['calibration_store']}")
            return {"pa_per_unit": cur["pa_per_unit"], "calibrated": True,
                    "state": cur["status"], "time": cur["time"]}
        if m["pa_per_unit"] is not None:
            return {"pa_per_unit": m["pa_per_unit"], "calibrated": True, "state": "manual"}
        if s["kind"] == "synthetic":
            from .sources.synthetic import PA_PER_UNIT

            return {"pa_per_unit": PA_PER_UNIT, "calibrated": True, "state": "synthetic"}
        log.warning("meter %s has no calibration (pa_per_unit or calibration_store): levels "
                    "are dB re 20 µPa per raw unit and marked calibrated = false", m["id"])
        return {"pa_per_unit": 1.0, "calibrated": False, "state": "none"}

    def _open_source(self):
        s = self.config["source"]
        kind = s["kind"]
        if kind == "synthetic":
            from .sources.synthetic import SyntheticScene

            fs = s["samplerate"]
            block = s["blocksize"] or (round(fs * 0.1) if s["realtime"] else round(fs))
            return SyntheticScene(samplerate=fs, duration=s["duration"], seed=s["seed"],
                                  channels=s["channels"], blocksize=block, profile=s["profile"])
        if kind == "file":
            from .sources.files import FileSource

            return FileSource(s["path"], blocksize=s["blocksize"] or 48000)
        from .sources.live import LiveSource

        return LiveSource(device=s["device"], samplerate=s["samplerate"],
                          channels=s["channels"], blocksize=s["blocksize"] or 4800,
                          latency=s["latency"])

    def _file_start_ns(self, src) -> int:
        s = self.config["source"]
        if s["start_time"] is not None:
            t = s["start_time"]
            return int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000
        return os.stat(s["path"]).st_mtime_ns - round(src.duration * 1e9)

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
        s = cfg["source"]
        kind = s["kind"]
        self.publisher.start()
        try:
            src = self.source = self._open_source()
            fs = src.samplerate
            self.meter = meter = SoundLevelMeter(
                fs, channels=src.channels, interval=cfg["meter"]["interval"],
                pa_per_unit=self.calibration["pa_per_unit"], bands=cfg["meter"]["bands"],
                full_scale=cfg["meter"]["full_scale"])
            self._interval_ns = round(meter.interval * 1e9)
            limit = None if until is None else round(until * fs)
            realtime = kind == "synthetic" and s["realtime"]
            if kind == "file":
                self.stream_start_ns = self._file_start_ns(src)
            elif kind == "synthetic":
                now = time.time_ns()
                span = src.duration if limit is None else min(src.duration, until)
                self.stream_start_ns = now if realtime else now - round(span * 1e9)
            t0 = time.monotonic()
            log.info("meter %s: measuring %r, %g s intervals, publishing to %s:%s",
                     self.meter_id, src, meter.interval, cfg["mqtt"]["host"], cfg["mqtt"]["port"])
            next_report = time.monotonic() + 60.0
            for chunk in src:
                data, gap = chunk.data, chunk.gap_before
                if self.stream_start_ns is None:  # live: the first block's first sample
                    self.stream_start_ns = time.time_ns() - round((len(data) + gap) / fs * 1e9)
                if limit is not None:
                    room = limit - meter.clock
                    gap = min(gap, room)
                    data = data[: max(room - gap, 0)]
                ivs = meter.gap(gap) if gap else []
                ivs += meter.process(data)
                self._emit(ivs)
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
            if self.source is not None:
                self.source.close()
            drained = self.publisher.stop(timeout=cfg["mqtt"]["drain_s"])
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

    def _emit(self, intervals) -> None:
        """Queue the levels (and bands) of completed intervals: one transaction."""
        if not intervals:
            return
        m = self.config["meter"]
        fraction = {"third": 3, "octave": 1}.get(m["bands"])
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
        self.intervals += len(intervals)
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
               "source": self.config["source"]["kind"], "intervals": self.intervals}
        if "time" in cal:
            out["calibration_time"] = cal["time"]
        if isinstance(cal["pa_per_unit"], int | float):
            out["pa_per_unit"] = float(cal["pa_per_unit"])
        src = self.source
        out["input_overflows"] = 0  # files and synthetic scenes have none
        if src is not None and hasattr(src, "overflows"):  # live: overflows and dropped blocks
            out["input_overflows"] = int(src.overflows + src.dropped_blocks)
            out["missing_s"] = round(src.dropped_frames / src.samplerate, 3)
        if self.out_of_range:
            out["levels_out_of_range"] = self.out_of_range
        if self.meter is not None and self.meter.bad_samples:
            out["bad_samples"] = int(self.meter.bad_samples)
        return out
