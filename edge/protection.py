"""Protection measured at the ear: a two-channel meter for in-ear dosimetry (issue 14, item 3).

Two microphones: ``outer`` at the ear, outside the protector, and ``inner`` under it (in the
ear canal behind an earplug, or inside an earmuff cup). Per interval (1 s by default) this
module computes

* the A-weighted level at each microphone, LAeq (IEC 61672-1 clause 3.9, A weighting of
  clause 5.5 with :func:`~tingbao.edge.iec61672.weighting_sos`), and the measured attenuation
  ``att_a`` = LAeq,outer − LAeq,inner in dB: the field (in-situ) noise reduction of the
  protector as worn, what F-MIRE fit-test systems (ANSI S12.71, ISO/TS 4869-7 draft) measure
  and in-ear dosimeters log continuously;
* the octave-band attenuation D_f = LZeq,f,outer − LZeq,f,inner for the octave bands
  63 Hz … 8 kHz (the bands of ISO 4869-2 / GB/T 23466) from the IEC 61260-1 class 1 bank
  :class:`~tingbao.edge.iec61260.FractionalOctaveBank`;
* a "worn correctly" state, decided against the post's required attenuation (an agent
  setting, e.g. the post's typical LEX,8h − 80 dB: the GB/T 23466-2009 "good" band of the
  protected level is 75–80 dB(A)).

:class:`ProtectionMeter` does the audio (streaming, state inside like
:class:`~tingbao.edge.meter.SoundLevelMeter`: blocks of any size, the same sums whatever the
cut); :func:`classify` is a pure function over many intervals at once (arrays, no loop per
interval) with its memory passed in and out explicitly as a :class:`WearState`, so a batch
of 3600 intervals and 3600 calls of one interval give the same states.

The states, tested in this order
--------------------------------
``no_audio``
    the interval says nothing about the protector, and is not assessed:

    * fewer than ``min_coverage_s`` seconds of valid audio on both microphones (NaN/inf
      samples and input overflows are not audio; an instant counts only when both channels
      are valid there). The valid seconds of a partly corrupt interval are kept: its levels
      are averages over them and ``assessed_s``/``worn_s`` count them;
    * a level outside 0 … 200 dB (a dead microphone's digital silence);
    * an overload: a raw sample of either microphone at or beyond digital full scale
      (``full_scale`` × (1 − 2⁻¹⁵), as :class:`~tingbao.edge.meter.SoundLevelMeter` flags it,
      IEC 61672-1 clause 5.11). A clipped outer signal under-reads the outer level and
      spreads distortion products over the spectrum, so att_a and D_HF are wrong either
      way; the whole interval goes;
    * an implausible attenuation: ``att_a`` above ``max_plausible_att_db`` (50 dB) or below
      −60 dB. Sound also reaches the ear through the skull: these bone- and
      tissue-conduction paths limit what any protector, even a perfect plug under a muff,
      can achieve to about 40–60 dB across frequency (Berger, Kieper & Gauger, "Hearing
      protection: surpassing the limits to attenuation imposed by the bone-conduction
      pathways", J. Acoust. Soc. Am. 114 (2003) 1955–1967), and the same skull vibration
      radiates into the occluded canal where the inner microphone listens. A larger reading
      is a dead or disconnected inner microphone whose own electrical noise is taken for
      the level under the protector (outer 105 dB(A), inner floor 17 dB(A): 88 dB), not
      perfect protection. The levels are still reported (within the contract's ranges, see
      :meth:`ProtectionIntervals.records`), so the fault is visible in the data.
``quiet``
    LAeq,outer below ``quiet_below_db`` (70 dB(A) by default). The inner microphone has a
    self-noise floor (30–40 dB(A) for an electret in an earpiece); with 30–40 dB of
    attenuation the noise under a protector sinks into that floor below about 70 dB(A)
    outside, and the difference outer − inner then measures the floor, not the protector.
    Quiet time is neither worn nor unworn: it is not assessed.
``removed``
    the attenuation is near 0 across the spectrum: ``att_a`` and the high-frequency
    attenuation D_HF (4 and 8 kHz, below) both below ``removed_below_db`` (5 dB). An open
    ear canal does not attenuate; at 2–4 kHz its quarter-wave resonance even makes the
    inner level higher than the outer one (D < 0), which this rule includes.
``worn``
    ``att_a`` reaches ``required_db``. Hysteresis: once worn, the state holds while
    ``att_a`` ≥ ``required_db`` − ``hysteresis_db`` (1 dB), so a protector that sits right at
    the requirement does not flicker between worn and poor_fit with the noise's spectrum.
    Any other state in between ends the hold. Only an interval that meets ``required_db``
    itself (not one held by the hysteresis) can become the voice reference below.
``voice``
    the worker is talking (see below): counted as assessed and worn, because the protector
    is still in place.
``poor_fit``
    some attenuation, but below the requirement and not explained by the worker's voice:
    a badly inserted plug, a broken muff seal, glasses under a cushion.

Own voice, and why a talking worker is not read as a removed plug
-----------------------------------------------------------------
When the worker talks, the inner microphone hears the voice through two paths the outer one
does not share. Bone and tissue conduction excite the ear-canal walls, and behind an
occluding plug that sound cannot escape through the open canal: the occlusion effect raises
it by 10–25 dB below about 1 kHz (less for deep insertion, nothing above ~2 kHz). The
voice's own energy lies there too: the fundamental at 85–255 Hz and the first formant at
300–900 Hz. The air-conducted voice outside is attenuated by the protector like the noise.
So in a talking interval the inner level rises at 125 Hz–1 kHz (the apparent attenuation
of those bands falls, even below 0 dB: a passive protector can never make the inside louder
than the outside at low frequencies, only a source inside the head can), while D_HF, the
attenuation at 4–8 kHz, stays what it was, because neither the occlusion effect nor the
voice's energy reaches there and the seal is unchanged. A removed protector is the opposite
pattern: the attenuation collapses everywhere, most at high frequencies, where earplugs
attenuate most (25–40 dB). A worse seal (a leak) lowers the attenuation at all frequencies,
high ones included.

The rule, per interval that is not no_audio, quiet, removed or worn:

* **with a reference**: the last ``worn`` interval whose ``att_a`` reached
  ``required_db`` (an interval worn only by the hysteresis hold is not one: a plug working
  loose step by step would otherwise lower its own reference), not older than
  ``reference_max_age_s`` (30 min), with no ``removed`` interval since (a reinsertion is a
  new fit) and no stretch of quiet/no_audio longer than ``reference_break_s`` (5 s) since
  (workers take their plugs out when the machine stops: the fit after a stop is a new
  one), gives D_HF,ref and D_LM,ref (LM: 125 Hz–1 kHz). The interval is ``voice`` when
  D_HF ≥ D_HF,ref − ``voice_hf_tolerance_db`` (3 dB: the high frequencies held) and D_LM ≤
  D_LM,ref − ``voice_lm_drop_db`` (6 dB: the loss is at low/mid frequencies).
* **without one** (a shift or a restart that begins with talking): ``voice`` when D_HF
  alone reaches ``required_db`` and some band of 125–500 Hz has the inside louder than the
  outside by at least ``voice_inside_louder_db`` (3 dB: D ≤ −3 dB). A passive protector
  never makes the inside louder; a mere D < 0 is within the band filters' skirts and a
  leak's low-frequency pass, an occluded own voice is 10–25 dB up.
* **maximum duration**: speech comes in turns and a noisy workplace leaves few long talks;
  a leak that happens to keep the high frequencies looks like a voice that never stops. The
  voice seconds since the last judged non-voice interval (worn, removed, or poor_fit by the
  rules above) are summed; from the moment the sum exceeds ``voice_max_s`` (120 s) the
  intervals are ``poor_fit``. Quiet and no_audio intervals pause the sum, they do not
  reset it (a leak with a short stop every 100 s is not a new talk each time).

D_HF and D_LM are energy ratios, 10 lg(Σ E_outer / Σ E_inner) over their bands, so one
quiet band does not dominate them. When neither path applies, the interval is ``poor_fit``:
a talking worker whose high-frequency attenuation did fall has a protector that moved.

Timing of the two energies: the A-weighted exposure is cut exactly at the interval
boundary (sample-exact, the A filter's delay is well under a millisecond at 1 kHz), while
the octave bands come out of the IEC 61260 filter bank (and its decimation stages)
delayed: the energy centroid of the bank's impulse response at 48 kHz lies about 37 ms
late at 63 Hz, 21–23 ms at 125–500 Hz, 10 ms at 1 kHz and 1.5–2.5 ms at 4–8 kHz. Each
interval's band sums therefore hold the last ~20–40 ms of the previous interval's low
frequencies instead of its own. A change at the ear (a plug pulled out) reaches D_LM up to
that much after att_a: the one interval that holds the change can mix the two fits, the
next is clean; the tests allow one interval at each transition.

Seconds: ``assessed_s`` is the interval's valid audio (``coverage``) when the state is
worn, voice, removed or poor_fit, else 0; ``worn_s`` the same for worn and voice, else 0.
A day's wear share is ΣWorn / ΣAssessed (``tingbao.analysis.wear_time``).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import signal

from . import iec61672
from .contract import ASSESSED_STATES, ATTENUATION_RANGE_DB, PROTECTION_STATES, WORN_STATES
from .contract import LEVEL_RANGE_DB as _CONTRACT_LEVEL_RANGE_DB
from .iec61260 import FractionalOctaveBank
from .levels import leq_from_exposure
from .meter import PCM16_FULL_SCALE

STATES = PROTECTION_STATES
"""The states of an interval (see the module docstring); the contract's list, as are
:data:`ASSESSED_STATES` (valid seconds count as assessed) and :data:`WORN_STATES` (and as
worn)."""

BAND_LABELS = ("63", "125", "250", "500", "1000", "2000", "4000", "8000")
"""Nominal midband frequencies (Hz) of the octave bands measured, ISO 4869-2's 63 Hz–8 kHz."""
HF_BANDS = ("4000", "8000")
"""Bands of the high-frequency attenuation D_HF: above the occlusion effect and the voice's
energy. The 2 kHz octave (1.4–2.8 kHz) is reported but left out of D_HF: vowels' second
formant (1–2.5 kHz) and the upper harmonics of a 120–220 Hz voice reach into it."""
LM_BANDS = ("125", "250", "500", "1000")
"""Bands of the low/mid attenuation D_LM (fundamental, first formant, occlusion effect)."""
LF_BANDS = ("125", "250", "500")
"""Bands where D < 0 betrays a sound source inside the head (no reference case)."""
LEVEL_RANGE_DB = _CONTRACT_LEVEL_RANGE_DB
"""Levels outside this (dB re 20 µPa) are a broken chain (the contract's range, 0 … 200)."""


# ------------------------------------------------------------------------------ settings
@dataclasses.dataclass(frozen=True)
class ProtectionSettings:
    """The decision's thresholds; dB unless said otherwise, seconds for ``*_s``.

    ``required_db`` is the post's required A-weighted attenuation (e.g. its typical LEX,8h
    − 80 dB); the rest are properties of the measurement, documented in the module
    docstring."""

    required_db: float
    quiet_below_db: float = 70.0
    removed_below_db: float = 5.0
    hysteresis_db: float = 1.0
    voice_hf_tolerance_db: float = 3.0
    voice_lm_drop_db: float = 6.0
    voice_max_s: float = 120.0
    voice_inside_louder_db: float = 3.0
    reference_max_age_s: float = 1800.0
    reference_break_s: float = 5.0
    max_plausible_att_db: float = 50.0
    min_coverage_s: float = 0.1

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ValueError(f"protection setting {f.name} = {v!r} is not a finite number")
        if not 0.0 <= self.required_db <= 60.0:
            raise ValueError(f"required_db = {self.required_db} dB is outside 0 … 60 dB")
        if min(self.hysteresis_db, self.voice_hf_tolerance_db, self.voice_lm_drop_db,
               self.voice_inside_louder_db, self.voice_max_s, self.reference_max_age_s,
               self.reference_break_s, self.min_coverage_s) < 0:
            raise ValueError("protection hysteresis, tolerances and durations must be ≥ 0")
        top = ATTENUATION_RANGE_DB[1]
        if not 0.0 < self.max_plausible_att_db <= top:
            raise ValueError(f"max_plausible_att_db = {self.max_plausible_att_db} dB is outside "
                             f"0 … {top:g} dB (the contract's attenuation range)")
        if self.required_db > self.max_plausible_att_db:
            raise ValueError(
                f"required_db = {self.required_db} dB exceeds max_plausible_att_db = "
                f"{self.max_plausible_att_db} dB: bone conduction keeps any protector below "
                "that, so no interval could ever read worn; lower the required attenuation "
                "([protection] required_attenuation_db)")


@dataclasses.dataclass(frozen=True)
class WearState:
    """What :func:`classify` remembers between calls.

    ``latched``: the last judged interval was worn (the hysteresis hold);
    ``ref_hf_db``, ``ref_lm_db``: D_HF and D_LM (dB) of the last interval that reached
    ``required_db``, NaN when there is none or a removal or a long stop came after it;
    ``ref_end_s``: that interval's end (stream seconds); ``voice_run_s``: voice seconds
    summed since the last judged non-voice interval (paused by quiet/no_audio);
    ``idle_s``: seconds of the quiet/no_audio stretch in progress at the end."""

    latched: bool = False
    ref_hf_db: float = math.nan
    ref_lm_db: float = math.nan
    ref_end_s: float = math.nan
    voice_run_s: float = 0.0
    idle_s: float = 0.0


# ---------------------------------------------------------------------------------- audio
@dataclasses.dataclass(frozen=True)
class IntervalSpectra:
    """Sums of n completed intervals of both microphones.

    ``index`` (n,) interval numbers since the stream start; ``start_s`` (n,) their starts
    (s from the stream start); ``duration_s`` the interval length (s); ``coverage_s`` (n,)
    seconds of valid audio; ``outer_ea``, ``inner_ea`` (n,) A-weighted sound exposures of the
    valid audio (Pa²·s); ``outer_bands``, ``inner_bands`` (n, bands) octave-band sound
    exposures (Pa²·s) of the bands ``band_labels``; ``clipped`` (n,) sample instants at
    which either microphone was at or beyond digital full scale (None: none)."""

    index: np.ndarray
    start_s: np.ndarray
    duration_s: float
    coverage_s: np.ndarray
    outer_ea: np.ndarray
    inner_ea: np.ndarray
    outer_bands: np.ndarray
    inner_bands: np.ndarray
    band_labels: tuple[str, ...] = BAND_LABELS
    clipped: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.index.size)

    def clipped_counts(self) -> np.ndarray:
        """(n,) clipped sample instants per interval (zeros when not recorded)."""
        if self.clipped is None:
            return np.zeros(len(self), dtype=np.int64)
        return np.asarray(self.clipped, dtype=np.int64)

    @staticmethod
    def concatenate(parts: list[IntervalSpectra], duration_s: float,
                    band_labels: tuple[str, ...] = BAND_LABELS) -> IntervalSpectra:
        """One object holding the intervals of ``parts`` in order."""
        nb = len(band_labels)
        if not parts:
            z = np.zeros(0)
            return IntervalSpectra(np.zeros(0, dtype=np.int64), z, duration_s, z, z, z,
                                   np.zeros((0, nb)), np.zeros((0, nb)), band_labels,
                                   np.zeros(0, dtype=np.int64))

        def cat(name):
            return np.concatenate([getattr(p, name) for p in parts])

        return IntervalSpectra(cat("index"), cat("start_s"), duration_s, cat("coverage_s"),
                               cat("outer_ea"), cat("inner_ea"), cat("outer_bands"),
                               cat("inner_bands"), band_labels,
                               np.concatenate([p.clipped_counts() for p in parts]))


class ProtectionMeter:
    """Streaming two-microphone meter: blocks of raw samples in, :class:`IntervalSpectra` of
    the intervals they complete out.

    ``samplerate`` in Hz (≥ 44.1 kHz: class 1 A weighting, and the 8 kHz octave band needs
    ≥ 35 kHz); ``interval`` in s (0.1 … 60, a whole number of samples); ``channels`` of the
    input blocks, of which ``outer`` and ``inner`` are the two microphones' indices;
    ``pa_per_unit`` the calibration S (Pa per raw unit) of the input's channels, a number or
    one per input channel; ``full_scale`` the raw value of digital full scale (as
    :class:`~tingbao.edge.meter.SoundLevelMeter`'s).

    Bad audio: a sample instant where either microphone's value is NaN or infinite is not
    audio on both (zeros are fed so filters and the clock stay exact; ``bad_samples`` counts
    them); :meth:`gap` records audio that never arrived. Neither counts as coverage. A raw
    sample of either microphone at or beyond ``full_scale`` × (1 − 2⁻¹⁵) is an overload:
    ``clipped_samples`` counts those instants and each interval's ``clipped`` carries them
    (:func:`classify` then makes the interval no_audio).
    """

    def __init__(self, samplerate: float, interval: float = 1.0, *, channels: int = 2,
                 outer: int = 0, inner: int = 1, pa_per_unit=1.0, full_scale: float = 1.0):
        fs = float(samplerate)
        if not (0.1 - 1e-9 <= interval <= 60.0 + 1e-9):
            raise ValueError(f"interval {interval} s is outside 0.1 … 60 s")
        n_int = round(interval * fs)
        if n_int <= 0 or abs(n_int - interval * fs) > 1e-6 * fs:
            raise ValueError(f"interval {interval} s is not a whole number of samples at "
                             f"{fs} Hz")
        channels = int(channels)
        if not (0 <= outer < channels and 0 <= inner < channels and outer != inner):
            raise ValueError(f"outer ({outer}) and inner ({inner}) must be two different "
                             f"channels of 0 … {channels - 1}")
        s = np.broadcast_to(np.asarray(pa_per_unit, dtype=float), (channels,))
        if not np.all(np.isfinite(s) & (s > 0)):
            raise ValueError(f"pa_per_unit must be finite and > 0, got {pa_per_unit}")
        full_scale = float(full_scale)
        if not (math.isfinite(full_scale) and full_scale > 0):
            raise ValueError(f"full_scale must be finite and > 0 raw units, got {full_scale}")
        self.full_scale = full_scale
        self._clip_at = full_scale * PCM16_FULL_SCALE
        self.samplerate = fs
        self.channels = channels
        self.outer, self.inner = int(outer), int(inner)
        self.interval = n_int / fs
        self._n_int = n_int
        self._pa = s[[self.outer, self.inner]].copy()
        self._sos_a = iec61672.weighting_sos("A", fs)
        self._bank = FractionalOctaveBank(fs, 1, 63.0, 8000.0, channels=2)
        if tuple(self._bank.nominal) != BAND_LABELS:
            raise AssertionError(f"octave bank bands {self._bank.nominal}")
        self.band_labels = BAND_LABELS
        self.bad_samples = 0
        self.clipped_samples = 0
        self.reset()

    def reset(self) -> None:
        """Forget all state: filters at rest, the clock at sample 0, no open interval."""
        self._za = np.zeros((self._sos_a.shape[0], 2, 2))
        self._bank.reset()
        self._clock = 0
        self._new_interval()

    def _new_interval(self) -> None:
        self._ea = np.zeros(2)
        self._eb = np.zeros((len(BAND_LABELS), 2))
        self._valid = 0
        self._clipped = 0

    @property
    def clock(self) -> int:
        """Samples consumed so far (audio and gaps)."""
        return self._clock

    def process(self, block) -> IntervalSpectra:
        """Feed raw samples of shape (n, channels); returns the intervals this block
        completed (possibly none)."""
        x = np.asarray(block, dtype=float)
        if x.ndim != 2 or x.shape[1] != self.channels:
            raise ValueError(f"block of shape {x.shape} does not match (n, {self.channels})")
        raw = x[:, [self.outer, self.inner]].T  # (2, n) raw units, a new array
        p = raw * self._pa[:, None]  # Pa
        # finite in Pa, not only in raw units: a raw sample whose scaling overflows is not
        # audio either, and the band bank is fed without its own finiteness check
        ok = np.isfinite(p).all(axis=0)
        with np.errstate(invalid="ignore"):
            clip = ok & (np.abs(raw) >= self._clip_at).any(axis=0)
        self.clipped_samples += int(clip.sum())
        if not ok.all():
            self.bad_samples += int((~ok).sum())
            p[:, ~ok] = 0.0
        return self._run(p, ok, clip)

    def gap(self, n: int) -> IntervalSpectra:
        """Record ``n`` samples that never arrived; the clock advances, coverage does not."""
        n = int(n)
        if n < 0:
            raise ValueError("gap length must be ≥ 0 samples")
        parts = []
        for i in range(0, n, self._n_int):  # one interval of zeros at a time: memory flat
            k = min(self._n_int, n - i)
            parts.append(self._run(np.zeros((2, k)), np.zeros(k, dtype=bool),
                                   np.zeros(k, dtype=bool)))
        return IntervalSpectra.concatenate(parts, self.interval)

    def flush(self) -> IntervalSpectra:
        """Emit the open, partial interval (if any) with its true coverage."""
        used = self._clock % self._n_int
        return self.gap(self._n_int - used) if used else self.gap(0)

    def _run(self, p: np.ndarray, ok: np.ndarray, clip: np.ndarray) -> IntervalSpectra:
        n = p.shape[1]
        if n == 0:
            return IntervalSpectra.concatenate([], self.interval)
        a, self._za = signal.sosfilt(self._sos_a, p, axis=-1, zi=self._za)
        # segments: up to the next interval boundary, then whole intervals, then the rest
        first = self._n_int - self._clock % self._n_int
        cuts = np.arange(first, n, self._n_int)
        starts = np.concatenate(([0], cuts))
        ea = np.add.reduceat(np.square(a), starts, axis=1)  # (2, segments)
        valid = np.add.reduceat(ok.astype(np.int64), starts)
        clipped = np.add.reduceat(clip.astype(np.int64), starts)
        bounds = np.append(starts, n)
        rows = []
        for s in range(starts.size):  # one step per interval, not per sample
            lo, hi = bounds[s], bounds[s + 1]
            self._ea += ea[:, s]
            self._eb += self._bank.exposures(p[:, lo:hi])  # (channels, n), finite
            self._valid += int(valid[s])
            self._clipped += int(clipped[s])
            self._clock += hi - lo
            if self._clock % self._n_int == 0:
                rows.append((self._clock // self._n_int - 1, self._valid, self._ea.copy(),
                             self._eb.copy(), self._clipped))
                self._new_interval()
        if not rows:
            return IntervalSpectra.concatenate([], self.interval)
        fs = self.samplerate
        idx = np.array([r[0] for r in rows], dtype=np.int64)
        ea_rows = np.array([r[2] for r in rows]) / fs  # (k, 2) Pa²·s
        eb_rows = np.array([r[3] for r in rows])  # (k, bands, 2) Pa²·s (the bank scales)
        return IntervalSpectra(idx, idx * self.interval, self.interval,
                               np.array([r[1] for r in rows]) / fs, ea_rows[:, 0],
                               ea_rows[:, 1], eb_rows[:, :, 0], eb_rows[:, :, 1], BAND_LABELS,
                               np.array([r[4] for r in rows], dtype=np.int64))


# ------------------------------------------------------------------------------ decision
@dataclasses.dataclass(frozen=True)
class ProtectionIntervals:
    """The result of n intervals (arrays of shape (n,) unless said otherwise).

    ``outer_laeq``, ``inner_laeq`` (dB re 20 µPa), ``att_a`` (dB), ``band_att`` (n, bands)
    octave-band attenuation (dB), ``hf_att``, ``lm_att`` D_HF and D_LM (dB); NaN where
    undefined. ``state`` (n,) strings of :data:`STATES`; ``worn_s``, ``assessed_s``,
    ``coverage_s`` (s); ``required_db`` the requirement applied."""

    index: np.ndarray
    start_s: np.ndarray
    duration_s: float
    coverage_s: np.ndarray
    outer_laeq: np.ndarray
    inner_laeq: np.ndarray
    att_a: np.ndarray
    band_att: np.ndarray
    hf_att: np.ndarray
    lm_att: np.ndarray
    state: np.ndarray
    worn_s: np.ndarray
    assessed_s: np.ndarray
    required_db: float
    band_labels: tuple[str, ...] = BAND_LABELS

    def __len__(self) -> int:
        return int(self.index.size)

    def records(self, decimals: int = 2) -> list[dict]:
        """One flat dict per interval for :func:`tingbao.edge.contract.protection_payload`:
        ``index``, ``start`` (s from the stream start), ``duration``, ``coverage``,
        ``outer_laeq``, ``inner_laeq``, ``att_a``, ``required_db``, ``state``, ``worn_s``,
        ``assessed_s``, ``bands`` ({"fc": [Hz …], "att": [dB or None …]}).

        A value that is undefined or outside the contract's range (levels
        :data:`~tingbao.edge.contract.LEVEL_RANGE_DB`, attenuations
        :data:`~tingbao.edge.contract.ATTENUATION_RANGE_DB`) is None, and so is ``att_a`` when
        either level is: such intervals are no_audio (not assessed), and the record stays
        valid instead of being refused whole. Assessed states always carry all three."""
        fc = [float(b) for b in self.band_labels]
        out = []
        for i in range(len(self)):
            att = [_r(v, decimals, ATTENUATION_RANGE_DB) for v in self.band_att[i]]
            lo = _r(self.outer_laeq[i], decimals, LEVEL_RANGE_DB)
            li = _r(self.inner_laeq[i], decimals, LEVEL_RANGE_DB)
            att_a = (None if lo is None or li is None
                     else _r(self.att_a[i], decimals, ATTENUATION_RANGE_DB))
            out.append({
                "index": int(self.index[i]), "start": round(float(self.start_s[i]), 6),
                "duration": round(self.duration_s, 6),
                "coverage": round(float(self.coverage_s[i]), 6),
                "outer_laeq": lo, "inner_laeq": li,
                "att_a": att_a, "required_db": float(self.required_db),
                "state": str(self.state[i]), "worn_s": round(float(self.worn_s[i]), 6),
                "assessed_s": round(float(self.assessed_s[i]), 6),
                "bands": {"fc": fc, "att": att},
            })
        return out


def _r(v, decimals, limits):
    """``v`` rounded, or None when it is not finite or (rounded) outside ``limits``."""
    v = float(v)
    if not math.isfinite(v):
        return None
    v = round(v, decimals)
    return v if limits[0] <= v <= limits[1] else None


def _ratio_db(e_outer: np.ndarray, e_inner: np.ndarray) -> np.ndarray:
    """10 lg(e_outer / e_inner) elementwise, NaN where either is not > 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = 10.0 * np.log10(e_outer / e_inner)
    return np.where((e_outer > 0) & (e_inner > 0), r, np.nan)


def _last_true(mask: np.ndarray) -> np.ndarray:
    """For each position, the index of the last True at or before it (−1 when none)."""
    return np.maximum.accumulate(np.where(mask, np.arange(mask.size), -1)) if mask.size \
        else np.zeros(0, dtype=np.int64)


def _run_length(add: np.ndarray, reset: np.ndarray, carried: float) -> np.ndarray:
    """Running sum of ``add`` (n,) that restarts from 0 at each True of ``reset`` (n,) (the
    reset position itself holds 0 + its own ``add``, which callers keep 0 there), starting
    from ``carried`` before the first reset."""
    if not add.size:
        return np.zeros(0)
    c = np.cumsum(add)
    base = np.maximum.accumulate(np.where(reset, c, 0.0))
    return c - base + np.where(np.cumsum(reset) == 0, carried, 0.0)


def classify(spectra: IntervalSpectra, settings: ProtectionSettings,
             state: WearState | None = None) -> tuple[ProtectionIntervals, WearState]:
    """The levels, attenuations and states of the intervals of ``spectra`` (rules in the
    module docstring), continuing from ``state`` (None: a fresh start). Returns the
    results and the state to pass with the next intervals; calling once on many intervals
    or many times on parts of them gives the same results."""
    st = state or WearState()
    cfg = settings
    n = len(spectra)
    labels = spectra.band_labels
    cov = np.asarray(spectra.coverage_s, dtype=float)
    lo = leq_from_exposure(spectra.outer_ea, cov)  # NaN where cov is not > 0
    li = leq_from_exposure(spectra.inner_ea, cov)
    bo = leq_from_exposure(spectra.outer_bands, cov[:, None])
    bi = leq_from_exposure(spectra.inner_bands, cov[:, None])
    with np.errstate(invalid="ignore"):
        band_att = np.where(np.isfinite(bo) & np.isfinite(bi), bo - bi, np.nan)
    hf = np.array([labels.index(b) for b in HF_BANDS])
    lm = np.array([labels.index(b) for b in LM_BANDS])
    lf = np.array([labels.index(b) for b in LF_BANDS])
    d_hf = _ratio_db(spectra.outer_bands[:, hf].sum(axis=1), spectra.inner_bands[:, hf].sum(axis=1))
    d_lm = _ratio_db(spectra.outer_bands[:, lm].sum(axis=1), spectra.inner_bands[:, lm].sum(axis=1))
    att = lo - li
    lo_r, hi_r = LEVEL_RANGE_DB
    dur = spectra.duration_s
    with np.errstate(invalid="ignore"):
        plausible = (att >= ATTENUATION_RANGE_DB[0]) & (att <= cfg.max_plausible_att_db)
    valid = ((cov >= cfg.min_coverage_s) & (lo >= lo_r) & (lo <= hi_r) & (li >= lo_r)
             & (li <= hi_r) & np.isfinite(d_hf) & np.isfinite(d_lm) & plausible
             & (spectra.clipped_counts() == 0))
    quiet = valid & (lo < cfg.quiet_below_db)
    judged = valid & ~quiet
    removed = judged & (att < cfg.removed_below_db) & (d_hf < cfg.removed_below_db)
    cand = judged & ~removed

    # worn with hysteresis: set at >= required, held down to required - hysteresis, and
    # released by anything else (removed, quiet, no audio, or falling below the hold)
    set_ev = cand & (att >= cfg.required_db)
    reset_ev = ~cand | (att < cfg.required_db - cfg.hysteresis_db)
    last_set, last_reset = _last_true(set_ev), _last_true(reset_ev)
    latch = np.where((last_set < 0) & (last_reset < 0), st.latched, last_set > last_reset)
    worn = cand & latch

    # stops: the quiet/no_audio stretch in progress at each interval (s), continued from the
    # state; one longer than reference_break_s ends the reference like a removal does
    idle = ~judged
    idle_run = _run_length(np.where(idle, dur, 0.0), judged, st.idle_s)
    broken = idle & (idle_run > cfg.reference_break_s + 1e-9)

    # the voice reference: the last interval that reached required_db (set_ev, not one held
    # by the hysteresis) before this one, none after a removal or a long stop; position 0
    # of the extended arrays is what the state remembers
    end_s = np.asarray(spectra.start_s, dtype=float) + dur
    has_ref = bool(np.isfinite(st.ref_hf_db) and np.isfinite(st.ref_lm_db))
    ref_x = np.concatenate(([has_ref], set_ev))
    ended_x = np.concatenate(([False], removed | broken))
    hf_x = np.concatenate(([st.ref_hf_db], d_hf))
    lm_x = np.concatenate(([st.ref_lm_db], d_lm))
    end_x = np.concatenate(([st.ref_end_s], end_s))
    last_ref_x, last_ended_x = _last_true(ref_x), _last_true(ended_x)
    ref = last_ref_x[:-1]  # up to the previous interval
    ref_ok = (ref >= 0) & (last_ended_x[:-1] < ref)
    ri = np.maximum(ref, 0)
    with np.errstate(invalid="ignore"):
        ref_ok &= (np.asarray(spectra.start_s) - end_x[ri]) <= cfg.reference_max_age_s
        held = d_hf >= hf_x[ri] - cfg.voice_hf_tolerance_db
        dropped = d_lm <= lm_x[ri] - cfg.voice_lm_drop_db
        inside_louder = (np.nanmin(band_att[:, lf], axis=1, initial=np.inf)
                         <= -cfg.voice_inside_louder_db if n else np.zeros(0, dtype=bool))
    voice_raw = cand & ~worn & np.where(ref_ok, held & dropped,
                                        (d_hf >= cfg.required_db) & inside_louder)
    # voice seconds since the last judged non-voice interval (worn, removed, poor_fit by
    # rule); quiet and no_audio pause the sum. Beyond voice_max_s it is a leak, not a talk.
    run = _run_length(np.where(voice_raw, dur, 0.0), judged & ~voice_raw, st.voice_run_s)
    voice = voice_raw & (run <= cfg.voice_max_s + 1e-9)
    poor = cand & ~worn & ~voice

    states = np.full(n, "no_audio", dtype=object)
    states[quiet] = "quiet"
    states[removed] = "removed"
    states[poor] = "poor_fit"
    states[voice] = "voice"
    states[worn] = "worn"
    assessed = np.where(worn | voice | removed | poor, cov, 0.0)
    worn_s = np.where(worn | voice, cov, 0.0)

    if n:
        lw, le = int(last_ref_x[-1]), int(last_ended_x[-1])
        keep = lw >= 0 and le < lw
        new = WearState(
            latched=bool(latch[-1]),
            ref_hf_db=float(hf_x[lw]) if keep else math.nan,
            ref_lm_db=float(lm_x[lw]) if keep else math.nan,
            ref_end_s=float(end_x[lw]) if keep else math.nan,
            voice_run_s=float(run[-1]), idle_s=float(idle_run[-1]))
    else:
        new = st
    result = ProtectionIntervals(
        spectra.index, np.asarray(spectra.start_s, dtype=float), spectra.duration_s, cov,
        lo, li, att, band_att, d_hf, d_lm, states, worn_s, assessed, cfg.required_db, labels)
    return result, new


# ------------------------------------------------------------------------------ together
class ProtectionMonitor:
    """:class:`ProtectionMeter` and :func:`classify` in one streaming object (what the agent
    runs): :meth:`process`, :meth:`gap` and :meth:`flush` return the
    :class:`ProtectionIntervals` they completed; ``wear_state`` is the classifier's memory."""

    def __init__(self, samplerate: float, settings: ProtectionSettings, interval: float = 1.0,
                 **meter_kwargs):
        self.meter = ProtectionMeter(samplerate, interval, **meter_kwargs)
        self.settings = settings
        self.wear_state = WearState()
        # what classify returns for no intervals (state unchanged), made once: most blocks
        # of the agent (0.1 s) complete none, and classify's fixed cost is ~0.13 ms
        self._none, _ = classify(IntervalSpectra.concatenate([], self.meter.interval),
                                 settings)

    samplerate = property(lambda self: self.meter.samplerate)
    interval = property(lambda self: self.meter.interval)
    clock = property(lambda self: self.meter.clock)
    bad_samples = property(lambda self: self.meter.bad_samples)
    clipped_samples = property(lambda self: self.meter.clipped_samples)

    def _decide(self, spectra: IntervalSpectra) -> ProtectionIntervals:
        if not len(spectra):
            return self._none
        result, self.wear_state = classify(spectra, self.settings, self.wear_state)
        return result

    def process(self, block) -> ProtectionIntervals:
        return self._decide(self.meter.process(block))

    def gap(self, n: int) -> ProtectionIntervals:
        return self._decide(self.meter.gap(n))

    def flush(self) -> ProtectionIntervals:
        return self._decide(self.meter.flush())


__all__ = ["STATES", "ASSESSED_STATES", "WORN_STATES", "BAND_LABELS", "HF_BANDS", "LM_BANDS",
           "ProtectionSettings", "WearState", "IntervalSpectra", "ProtectionMeter",
           "ProtectionIntervals", "classify", "ProtectionMonitor"]
