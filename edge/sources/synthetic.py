"""Synthetic factory scenes: deterministic, calibrated test audio for the whole pipeline.

A scene is a sequence of states (see :meth:`SyntheticScene.segments`), each made of some of
these components (levels in dB re 20 µPa; "dB(A)" is the A-weighted equivalent level):

===========  ==============================================================================
component    what it is
===========  ==============================================================================
background   ventilation-like pink-ish noise, 50 Hz – 3 kHz, ``BACKGROUND_DBA`` = 62 dB(A);
             always present.
machine      pink-ish broadband noise, 30 Hz – 10 kHz, ``MACHINE_BROADBAND_DBA`` = 86 dB(A),
             plus tones: 100 / 200 / 300 Hz motor hum and a 1.6 kHz gear mesh amplitude-
             modulated at the 25 Hz shaft rate (``MACHINE_TONES``); about 87.6 dB(A) in all.
press        stamping-press impulses: short decaying bursts (damped modes at ~0.4, 0.9, 2
             and 4 kHz plus a 5 ms noise transient), unweighted peak level drawn per impulse
             from ``PRESS_PEAK_DB`` = 122–128 dB, a regular stroke rate of 20–40 per minute
             (per scene, from the seed) with ±10 % jitter.
grinder      band-limited noise 2–8 kHz, ``GRINDER_DBA`` = 95 dB(A), slightly load-modulated;
             on for tens of seconds at a time.
===========  ==============================================================================

States (labels): ``"quiet"`` = background only (a break, machines off); ``"steady"`` =
background + machine; ``"stamping"`` = steady + press; ``"grinding"`` = steady + grinder.
Machine and grinder start and stop with a 0.5 s raised-cosine ramp centred on the state
boundary. Profiles: ``"steady"``, ``"quiet"``, ``"stamping"`` (one state for the whole
scene), ``"grinding"`` (steady, then grinder on 20–40 s / off 8–15 s alternately) and
``"mixed"`` (a shift-like cycle: quiet 5–8 s, steady 8–12 s, stamping 15–20 s, grinding
12–18 s, repeated).

Samples are in raw units, with ``pa_per_unit`` = 200 Pa per unit: a full-scale sine has a
peak of 200 Pa (140 dB peak, 137 dB RMS), so every scene stays well inside ±1.0.

Determinism: noise is generated per fixed internal segment of 1 s, seeded by
``(seed, component, segment index, channel)``; filters carry their state from segment to
segment and tones and impulses are functions of the absolute sample index. Any
``blocksize`` therefore yields exactly the same samples; only ``seed`` changes the scene.
Channels carry independent noise (decorrelated microphones) in the same scene.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import signal

from ..iec61672 import a_weighting_db
from .chunk import Chunk

__all__ = [
    "BACKGROUND_DBA",
    "GRINDER_DBA",
    "MACHINE_BROADBAND_DBA",
    "MACHINE_TONES",
    "PA_PER_UNIT",
    "PRESS_PEAK_DB",
    "PROFILES",
    "SyntheticScene",
]

P0 = 20e-6
"""Reference sound pressure, Pa."""

PA_PER_UNIT = 200.0
"""Pascals per raw unit of the synthetic scenes (full-scale sine peak = 140 dB)."""

BACKGROUND_DBA = 62.0
"""A-weighted level of the background (quiet breaks), dB(A)."""

MACHINE_BROADBAND_DBA = 86.0
"""A-weighted level of the machine's broadband noise alone, dB(A)."""

MACHINE_TONES = ((100.0, 84.0), (200.0, 80.0), (300.0, 78.0), (1600.0, 81.0))
"""Machine tones as (frequency Hz, unweighted RMS level dB): 100/200/300 Hz motor hum and
the 1.6 kHz gear mesh (which is amplitude-modulated, ``GEAR_AM``, at the same RMS)."""

GEAR_AM = (25.0, 0.2)
"""Gear-mesh amplitude modulation: (shaft rate Hz, modulation depth)."""

GRINDER_DBA = 95.0
"""A-weighted level of the grinder alone, dB(A)."""

GRINDER_BAND = (2000.0, 8000.0)
"""Grinder noise band edges, Hz (4th-order Butterworth band-pass)."""

PRESS_PEAK_DB = (122.0, 128.0)
"""Range of the unweighted peak level of each press impulse, dB re 20 µPa."""

PRESS_RATE_PER_MIN = (20.0, 40.0)
"""Range of the press stroke rate (chosen per scene from the seed), strokes per minute."""

PRESS_BURST_S = 0.25
"""Length of one press impulse, s."""

RAMP_S = 0.5
"""Width of the raised-cosine ramp when machine or grinder start or stop, s."""

SEGMENT_S = 1.0
"""Internal generation segment, s (noise is seeded per segment)."""

PROFILES = ("stamping", "grinding", "quiet", "mixed", "steady")

_COMPONENTS = {
    "quiet": frozenset(),
    "steady": frozenset({"machine"}),
    "stamping": frozenset({"machine", "press"}),
    "grinding": frozenset({"machine", "grinder"}),
}

# seed-stream identifiers
_PLAN, _BACKGROUND, _MACHINE, _GRINDER, _PRESS = range(5)

# Pink-noise filter (-3 dB/octave over most of the audio band), P. Kellet's 3rd-order fit.
_PINK_B = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
_PINK_A = [1.0, -2.494956002, 2.017265875, -0.522189400]


def _units(level_db: float) -> float:
    """RMS (or peak) in raw units of a level in dB re 20 µPa."""
    return P0 * 10.0 ** (level_db / 20.0) / PA_PER_UNIT


def _a_weighted_ms_of_white(sos: np.ndarray, fs: float) -> float:
    """A-weighted mean square of unit-variance white noise filtered by ``sos``."""
    w, h = signal.sosfreqz(sos, worN=1 << 15, fs=fs)  # uniform grid over [0, fs/2)
    gain = np.abs(h) ** 2 * 10.0 ** (a_weighting_db(np.maximum(w, 1e-9)) / 10.0)
    # white noise of variance 1 has a flat one-sided PSD 2/fs over [0, fs/2], so its
    # filtered mean square is the average power gain over that band
    return float(np.mean(gain))


class _NoiseStream:
    """Seeded white noise per segment, shaped by an SOS filter whose state carries over."""

    def __init__(self, sos: np.ndarray, gain: float, stream: int, seed: int, channels: int,
                 fs: float) -> None:
        self.sos = sos
        self.gain = gain
        self.stream = stream
        self.seed = seed
        self.channels = channels
        warm = self._white(0, int(round(0.5 * fs)))  # settle the filter before sample 0
        zi = np.zeros((sos.shape[0], 2, channels))
        _, self.zi = signal.sosfilt(sos, warm, axis=0, zi=zi)

    def _white(self, index: int, n: int) -> np.ndarray:
        out = np.empty((n, self.channels))
        for c in range(self.channels):
            rng = np.random.default_rng([self.seed, self.stream, index, c])
            out[:, c] = rng.standard_normal(n)
        return out

    def segment(self, k: int, n: int) -> np.ndarray:
        y, self.zi = signal.sosfilt(self.sos, self._white(k + 1, n), axis=0, zi=self.zi)
        return self.gain * y


def _envelope(t: np.ndarray, intervals: np.ndarray, duration: float) -> np.ndarray:
    """On/off envelope (0..1) over times ``t`` (s, ascending) for merged, sorted
    ``intervals`` (array of shape (m, 2), s), with raised-cosine ramps of width RAMP_S
    centred on each boundary inside the scene."""
    env = np.zeros_like(t)
    if t.size == 0 or intervals.shape[0] == 0:
        return env
    half = RAMP_S / 2.0
    # intervals that reach into [t0 - half, t1 + half]
    first = int(np.searchsorted(intervals[:, 1], t[0] - half, side="left"))
    last = int(np.searchsorted(intervals[:, 0], t[-1] + half, side="right"))
    for a, b in intervals[first:last]:
        if (a <= 0.0 or t[0] >= a + half) and (b >= duration or t[-1] <= b - half):
            env[:] = 1.0  # fully on over these times (intervals are disjoint)
            return env
        rise = np.ones_like(t) if a <= 0.0 else 0.5 + 0.5 * np.sin(
            np.pi * np.clip((t - a) / RAMP_S, -0.5, 0.5))
        fall = np.ones_like(t) if b >= duration else 0.5 + 0.5 * np.sin(
            np.pi * np.clip((b - t) / RAMP_S, -0.5, 0.5))
        env += rise * fall
    return np.minimum(env, 1.0)


class SyntheticScene:
    """A deterministic synthetic factory scene as an audio source.

    Args:
        samplerate: sampling rate in Hz (>= 16000, so that the grinder band fits).
        duration: scene length in seconds.
        seed: non-negative integer; the same seed gives the same scene.
        channels: number of channels (independent noise, same scene).
        blocksize: frames per chunk; does not change the samples.
        profile: one of ``PROFILES``: "stamping", "grinding", "quiet", "mixed", "steady".

    Attributes:
        samplerate, channels, blocksize, duration, seed, profile: as given.
        frames: total number of frames.
        pa_per_unit: 200.0 Pa per raw unit (multiply samples by it to get pascals).
        stroke_period: seconds between press strokes (nominal, before jitter).

    Chunks are float64, shape ``(n, channels)``, raw units, ``gap_before == 0``.
    """

    pa_per_unit = PA_PER_UNIT

    def __init__(
        self,
        samplerate: float = 48000,
        duration: float = 60.0,
        seed: int = 0,
        channels: int = 1,
        blocksize: int = 48000,
        profile: str = "stamping",
    ) -> None:
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
        if samplerate < 16000:
            raise ValueError(f"samplerate must be >= 16000 Hz, got {samplerate}")
        if duration <= 0:
            raise ValueError(f"duration must be > 0 s, got {duration}")
        if int(seed) != seed or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        if int(channels) < 1 or int(blocksize) < 1:
            raise ValueError("channels and blocksize must be >= 1")
        self.samplerate = float(samplerate)
        self.duration = float(duration)
        self.seed = int(seed)
        self.channels = int(channels)
        self.blocksize = int(blocksize)
        self.profile = profile
        self.frames = int(round(self.duration * self.samplerate))

        rng = np.random.default_rng([self.seed, _PLAN])
        self._plan = self._make_plan(rng)
        rate = rng.uniform(*PRESS_RATE_PER_MIN)
        self.stroke_period = 60.0 / rate
        self._tone_phases = rng.uniform(0.0, 2.0 * np.pi, len(MACHINE_TONES) + 1)
        self._grinder_mod_phase = rng.uniform(0.0, 2.0 * np.pi)
        self._impulses = self._make_impulses(rng)
        self._on = {
            comp: np.array(
                self._merged([(a, b) for a, b, lab in self._plan if comp in _COMPONENTS[lab]]),
                dtype=float,
            ).reshape(-1, 2)
            for comp in ("machine", "grinder")
        }
        # all machine tones and the gear AM repeat with this period (s); tabulate one period
        # when it is a whole number of samples (e.g. 1920 at 48 kHz, 1764 at 44.1 kHz)
        period = 1.0 / float(np.gcd.reduce(
            [int(round(f)) for f, _ in MACHINE_TONES] + [int(round(GEAR_AM[0]))]))
        p_frames = period * self.samplerate
        self._tone_period = int(round(p_frames)) if abs(p_frames - round(p_frames)) < 1e-9 \
            else None
        self._tone_table: np.ndarray | None = None
        self._onset_frames = np.array(
            [int(round(t * self.samplerate)) for t, _ in self._impulses], dtype=np.int64)

    # -- the scene plan ---------------------------------------------------------------

    def _make_plan(self, rng: np.random.Generator) -> list[tuple[float, float, str]]:
        d = self.duration
        if self.profile in ("steady", "quiet", "stamping"):
            return [(0.0, d, self.profile)]
        if self.profile == "grinding":
            pattern = [("grinding", 20.0, 40.0), ("steady", 8.0, 15.0)]
            plan_spec = [("steady", 5.0, 10.0)]
        else:  # mixed
            pattern = [("quiet", 5.0, 8.0), ("steady", 8.0, 12.0), ("stamping", 15.0, 20.0),
                       ("grinding", 12.0, 18.0)]
            plan_spec = []
        plan: list[tuple[float, float, str]] = []
        t = 0.0
        i = 0
        while t < d:
            label, lo, hi = plan_spec[i] if i < len(plan_spec) else pattern[
                (i - len(plan_spec)) % len(pattern)]
            end = min(d, t + float(rng.uniform(lo, hi)))
            plan.append((t, end, label))
            t = end
            i += 1
        return plan

    @staticmethod
    def _merged(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        for a, b in sorted(intervals):
            if out and a <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], b))
            else:
                out.append((a, b))
        return out

    def _make_impulses(self, rng: np.random.Generator) -> list[tuple[float, float]]:
        period = self.stroke_period
        out = []
        for a, b, label in self._plan:
            if "press" not in _COMPONENTS[label]:
                continue
            k = 0
            while True:
                t = a + 0.3 + k * period + rng.uniform(-0.1, 0.1) * period
                k += 1
                if t + PRESS_BURST_S > b:
                    break
                out.append((max(t, a), float(rng.uniform(*PRESS_PEAK_DB))))
        return out

    def segments(self) -> list[tuple[float, float, str]]:
        """What is on when: ``(start_s, end_s, label)`` covering the scene in order.

        Labels: "quiet" (background), "steady" (+ machine), "stamping" (+ machine and
        press impulses), "grinding" (+ machine and grinder). Ramps of RAMP_S/2 reach into
        each state at its start.
        """
        return list(self._plan)

    def impulses(self) -> list[tuple[float, float]]:
        """Press impulses as ``(onset_s, peak_db)``: onset time in seconds and intended
        unweighted peak level in dB re 20 µPa (the maximum of |p| of the burst alone)."""
        return list(self._impulses)

    def nominal_dba(self, label: str) -> float | None:
        """Design A-weighted equivalent level (dB(A)) of a state; None for "stamping",
        whose level depends on the impulses (use :meth:`impulses`)."""
        if label not in _COMPONENTS:
            raise ValueError(f"unknown label {label!r}")
        if label == "stamping":
            return None
        energies = [10.0 ** (BACKGROUND_DBA / 10.0)]
        if "machine" in _COMPONENTS[label]:
            energies.append(10.0 ** (MACHINE_BROADBAND_DBA / 10.0))
            energies += [10.0 ** ((lvl + float(a_weighting_db(f))) / 10.0)
                         for f, lvl in MACHINE_TONES]
        if "grinder" in _COMPONENTS[label]:
            energies.append(10.0 ** (GRINDER_DBA / 10.0))
        return float(10.0 * np.log10(sum(energies)))

    # -- generation -------------------------------------------------------------------

    def _filters(self) -> dict[str, _NoiseStream]:
        fs = self.samplerate
        pink = signal.tf2sos(_PINK_B, _PINK_A)
        nyq_cap = 0.45 * fs

        def stream(sos: np.ndarray, dba: float, sid: int) -> _NoiseStream:
            gain = _units(dba) / np.sqrt(_a_weighted_ms_of_white(sos, fs))
            return _NoiseStream(sos, gain, sid, self.seed, self.channels, fs)

        bg = np.vstack([pink, signal.butter(2, 50.0, "highpass", fs=fs, output="sos"),
                        signal.butter(2, 3000.0, "lowpass", fs=fs, output="sos")])
        out = {"background": stream(bg, BACKGROUND_DBA, _BACKGROUND)}
        if self._on["machine"].size:
            mach = np.vstack([pink, signal.butter(2, 30.0, "highpass", fs=fs, output="sos"),
                              signal.butter(2, min(10000.0, nyq_cap), "lowpass", fs=fs,
                                            output="sos")])
            out["machine"] = stream(mach, MACHINE_BROADBAND_DBA, _MACHINE)
        if self._on["grinder"].size:
            band = (GRINDER_BAND[0], min(GRINDER_BAND[1], nyq_cap))
            grind = signal.butter(4, band, "bandpass", fs=fs, output="sos")
            out["grinder"] = stream(grind, GRINDER_DBA, _GRINDER)
        return out

    def _burst(self, index: int, peak_db: float) -> np.ndarray:
        """Waveform of press impulse ``index``, shape (PRESS_BURST_S·fs, channels), raw
        units, each channel scaled to the intended peak."""
        fs = self.samplerate
        n = int(round(PRESS_BURST_S * fs))
        t = np.arange(n) / fs
        out = np.empty((n, self.channels))
        attack = 1.0 - np.exp(-t / 0.0003)
        fade = np.ones(n)
        nf = int(round(0.01 * fs))
        fade[-nf:] = np.linspace(1.0, 0.0, nf)
        for c in range(self.channels):
            rng = np.random.default_rng([self.seed, _PRESS, index, c])
            x = 0.8 * rng.standard_normal(n) * np.exp(-t / 0.005)
            for lo, hi in ((350.0, 500.0), (750.0, 1100.0), (1600.0, 2400.0), (3500.0, 4500.0)):
                f = rng.uniform(lo, hi)
                tau = rng.uniform(0.01, 0.04)
                amp = rng.uniform(0.3, 1.0)
                x += amp * np.exp(-t / tau) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
            x *= attack * fade
            out[:, c] = x * (_units(peak_db) / np.max(np.abs(x)))
        return out

    def _tone_waveform(self, idx: np.ndarray) -> np.ndarray:
        """Machine tones at absolute sample indices ``idx``, raw units, shape (n,)."""
        t = idx / self.samplerate
        tones = np.zeros(idx.shape[0])
        for (f, lvl), ph in zip(MACHINE_TONES, self._tone_phases, strict=False):
            tone = np.sqrt(2.0) * _units(lvl) * np.sin(2 * np.pi * f * t + ph)
            if f == MACHINE_TONES[-1][0]:  # gear mesh: AM at the shaft rate, same RMS
                f_am, depth = GEAR_AM
                tone *= 1.0 + depth * np.sin(2 * np.pi * f_am * t + self._tone_phases[-1])
                tone /= np.sqrt(1.0 + depth**2 / 2.0)
            tones += tone
        return tones

    def _tones(self, idx: np.ndarray) -> np.ndarray:
        """Machine tones at absolute sample indices ``idx``; a lookup into one period of
        the (periodic) tone mix when the period is a whole number of samples."""
        if self._tone_period is None:
            return self._tone_waveform(idx)
        if self._tone_table is None:
            self._tone_table = self._tone_waveform(np.arange(self._tone_period))
        return self._tone_table[idx % self._tone_period]

    def _segment(self, k: int, n0: int, n1: int, noise: dict[str, _NoiseStream]) -> np.ndarray:
        fs = self.samplerate
        n = n1 - n0
        idx = np.arange(n0, n1)
        t = idx / fs
        out = noise["background"].segment(k, n)
        if "machine" in noise:
            env = _envelope(t, self._on["machine"], self.duration)[:, None]
            m = noise["machine"].segment(k, n)
            tones = self._tones(idx)
            out += env * (m + tones[:, None])
        if "grinder" in noise:
            env = _envelope(t, self._on["grinder"], self.duration)
            env *= 1.0 + 0.1 * np.sin(2 * np.pi * 0.3 * t + self._grinder_mod_phase)
            out += env[:, None] * noise["grinder"].segment(k, n)
        burst_n = int(round(PRESS_BURST_S * fs))
        first = int(np.searchsorted(self._onset_frames, n0 - burst_n, side="right"))
        last = int(np.searchsorted(self._onset_frames, n1, side="left"))
        for i in range(first, last):
            b0 = int(self._onset_frames[i])
            burst = self._burst(i, self._impulses[i][1])
            lo, hi = max(b0, n0), min(b0 + burst_n, n1)
            out[lo - n0 : hi - n0] += burst[lo - b0 : hi - b0]
        return out

    def _segments(self) -> Iterator[np.ndarray]:
        seg = int(round(SEGMENT_S * self.samplerate))
        noise = self._filters()
        for k in range(-(-self.frames // seg)):
            n0 = k * seg
            yield self._segment(k, n0, min(n0 + seg, self.frames), noise)

    def __iter__(self) -> Iterator[Chunk]:
        pending: list[np.ndarray] = []
        buffered = 0
        for seg in self._segments():
            pending.append(seg)
            buffered += seg.shape[0]
            while buffered >= self.blocksize:
                buf = pending[0] if len(pending) == 1 else np.concatenate(pending)
                yield Chunk(buf[: self.blocksize])
                rest = buf[self.blocksize :]
                pending = [rest] if rest.shape[0] else []
                buffered = rest.shape[0]
        if buffered:
            yield Chunk(pending[0] if len(pending) == 1 else np.concatenate(pending))

    def read_all(self) -> np.ndarray:
        """The whole scene as one array, shape (frames, channels), raw units (for tests and
        short scenes; iterate for long ones)."""
        return np.concatenate([c.data for c in self])

    def close(self) -> None:
        """Nothing to release; present for the Source protocol."""

    def __enter__(self) -> SyntheticScene:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"SyntheticScene(profile={self.profile!r}, duration={self.duration:g} s, "
                f"samplerate={self.samplerate:g}, channels={self.channels}, seed={self.seed})")
