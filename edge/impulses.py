"""Counts of C-weighted peak events (impulses) above fixed thresholds, streaming.

What is counted, and why. GBZ 2.2-2007 limits the peak sound pressure of impulse noise by the
number of impulses in a working day: n ≤ 100 → 140 dB, 100 < n ≤ 1 000 → 130 dB,
1 000 < n ≤ 10 000 → 120 dB (the limits are data of the regulatory profile, not of this
module). Its impulse definition is not confirmed (reference, 2026-11-29, confidence L): "a
sound that rises and decays within 0.5 s, with more than 1 s between impulses". The edge
therefore counts, per interval, the *peak events* above each of a few thresholds (default
120, 130, 135, 137 and 140 dB: the three GBZ 2.2 limits and the EU 2003/10/EC upper action
value and limit of 137 and 140 dB(C) peak, with 135 the lower action value); analysis sums
the counts of a shift and compares the shift's LCpeak with the limit for that count.

Counting rule. The signal is the C-weighted sound pressure p_C in Pa, the same one from which
the meter takes LCpeak (IEC 61672-1 clause 5.13), so the counts and the peak agree: a count
at threshold T in an interval implies LCpeak ≥ T in it. For each threshold T (dB re 20 µPa,
pressure p_T = p0·10^(T/20), p0 = 20 µPa) an impulse *starts* at a sample n where

    |p_C[n]| ≥ p_T   and   |p_C[m]| < p_T for the R samples m = n − R … n − 1,

with R = round(refractory_s · fs) samples (default refractory_s = 0.5 s). In words: an
impulse starts at the first sample at or above the threshold after at least ``refractory_s``
below it. Why 0.5 s: an impact and its ringing (the structure, the carrier of a decaying
burst crossing the threshold every half cycle) rise and decay within 0.5 s, which is the
reference's impulse duration; the ringing of one impact is thus one impulse, and two impacts
whose above-threshold parts are less than 0.5 s apart are one impulse (the refractory rule:
they are one event for the ear's protection as for the standard's "rises and decays within
0.5 s"). Every threshold counts independently: a 141 dB impact counts once at each of 120,
130, 135, 137 and 140 dB. Before the first sample of a stream the signal is taken as quiet,
so an impulse in the first samples counts. Audio that never arrived (a meter gap) is fed as
zeros: it is quiet time. The reference's "more than 1 s between impulses" is not a rule
here: impacts 0.5–1 s apart count twice; state it in reports.

The count of an interval is the number of impulses that START in it: an impulse straddling
an interval boundary counts once, in the interval where it starts. The state carried from
block to block is, per (channel, threshold), the number of samples since the last sample at
or above the threshold (capped at R), as a filter carries its ``zi``; so the counts do not
depend on how the audio was cut into blocks. A block costs one comparison per sample and
threshold plus ``np.flatnonzero`` and ``np.diff`` over the samples above it; there is no
Python loop per sample (only per threshold).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .contract import IMPULSE_THRESHOLDS_DB, check_impulse_thresholds
from .levels import P0_SQUARED

DEFAULT_THRESHOLDS_DB = IMPULSE_THRESHOLDS_DB
"""Default thresholds, dB re 20 µPa (C-weighted peak): 120, 130, 135, 137, 140."""
DEFAULT_REFRACTORY_S = 0.5
"""Default quiet time below a threshold before a new impulse can start, s."""
MIN_REFRACTORY_S = 0.01
"""Shortest refractory time accepted, s; it bounds a count to 100 per second of audio (the
contract's :data:`~tingbao.edge.contract.MAX_IMPULSES_PER_S`)."""

__all__ = ["DEFAULT_REFRACTORY_S", "DEFAULT_THRESHOLDS_DB", "ImpulseCounter", "ImpulseStarts",
           "count_impulses", "impulse_starts", "quiet_state", "threshold_pressures"]


def threshold_pressures(thresholds_db) -> np.ndarray:
    """Peak sound pressures p_T = p0·10^(T/20) in Pa of thresholds T in dB re 20 µPa;
    shape (thresholds,)."""
    return np.sqrt(P0_SQUARED) * 10.0 ** (np.asarray(thresholds_db, dtype=float) / 20.0)


def quiet_state(channels: int, thresholds: int, refractory_samples: int) -> np.ndarray:
    """The state of a stream before its first sample: every (channel, threshold) quiet for
    the whole refractory time. Shape (channels, thresholds), int64 samples."""
    return np.full((channels, thresholds), int(refractory_samples), dtype=np.int64)


@dataclasses.dataclass(frozen=True)
class ImpulseStarts:
    """The impulses that start in one block: three arrays of shape (k,), one entry per
    impulse, grouped by threshold (lowest first), then sorted by channel and sample."""

    channel: np.ndarray
    """Channel index of each impulse."""
    threshold: np.ndarray
    """Index into the thresholds of each impulse."""
    sample: np.ndarray
    """Index of its first sample at or above the threshold, within the block."""

    def counts(self, channels: int, thresholds: int, lo: int = 0,
               hi: int | None = None) -> np.ndarray:
        """Impulses starting at block samples ``lo ≤ n < hi`` per (channel, threshold);
        shape (channels, thresholds), int64."""
        sel = self.sample >= lo
        if hi is not None:
            sel &= self.sample < hi
        out = np.zeros((channels, thresholds), dtype=np.int64)
        np.add.at(out, (self.channel[sel], self.threshold[sel]), 1)
        return out


def impulse_starts(p_c: np.ndarray, thresholds_pa: np.ndarray, refractory_samples: int,
                   quiet: np.ndarray) -> tuple[ImpulseStarts, np.ndarray]:
    """The impulses that start in one block, and the state after it (pure function).

    Args:
        p_c: C-weighted sound pressure in Pa, shape (channels, n).
        thresholds_pa: peak pressures of the thresholds in Pa, shape (thresholds,)
            (:func:`threshold_pressures`).
        refractory_samples: R, samples below a threshold before an impulse may start.
        quiet: the state before the block, shape (channels, thresholds): samples since the
            last sample at or above each threshold, capped at R (:func:`quiet_state` for a
            new stream). Not modified.

    Returns:
        (:class:`ImpulseStarts` of the block, the state after the block). The usual block,
        below the lowest threshold, costs one pass for its extremes.
    """
    p_c = np.asarray(p_c, dtype=float)
    ch, n = p_c.shape
    r = int(refractory_samples)
    after = np.minimum(quiet + n, r)  # a (channel, threshold) with no sample above the
    if n == 0:  # threshold in the block has been quiet n samples longer
        empty = np.zeros(0, dtype=np.int64)
        return ImpulseStarts(empty, empty, empty), after
    chans, thrs, samples = [], [], []
    thresholds_pa = np.asarray(thresholds_pa, dtype=float)
    if max(float(p_c.max()), -float(p_c.min())) < thresholds_pa.min():  # the usual block
        empty = np.zeros(0, dtype=np.int64)
        return ImpulseStarts(empty, empty, empty), after
    mag = np.abs(p_c).ravel()
    order = np.argsort(thresholds_pa, kind="stable")
    flat = None  # samples at or above the previous (lower) threshold
    for j in order:
        p_t = thresholds_pa[j]
        if flat is None:
            flat = np.flatnonzero(mag >= p_t)  # row-major: by channel, then sample
        else:  # a higher threshold: a subset of the samples above the lower one
            flat = flat[mag[flat] >= p_t]
        if flat.size == 0:
            break
        c_i, col = np.divmod(flat, n)
        first = np.ones(flat.size, dtype=bool)  # the first sample above T of its channel
        first[1:] = c_i[1:] != c_i[:-1]
        below = np.empty(flat.size, dtype=np.int64)  # samples below T just before each one
        below[1:] = np.diff(col) - 1
        below[first] = col[first] + quiet[c_i[first], j]
        start = below >= r
        chans.append(c_i[start])
        samples.append(col[start])
        thrs.append(np.full(int(start.sum()), j, dtype=np.int64))
        last = np.ones(flat.size, dtype=bool)  # the last sample above T of its channel
        last[:-1] = first[1:]
        after[c_i[last], j] = np.minimum(n - 1 - col[last], r)
    if not chans:
        empty = np.zeros(0, dtype=np.int64)
        return ImpulseStarts(empty, empty, empty), after
    return ImpulseStarts(np.concatenate(chans).astype(np.int64), np.concatenate(thrs),
                         np.concatenate(samples).astype(np.int64)), after


class ImpulseCounter:
    """Streaming impulse counter over C-weighted blocks (the state of :func:`impulse_starts`
    kept for the caller).

    Args:
        samplerate: Hz.
        channels: number of independent channels.
        thresholds_db: thresholds, dB re 20 µPa, strictly increasing, each a multiple of
            0.1 dB, 1 … 16 of them (:func:`~tingbao.edge.contract.check_impulse_thresholds`).
        refractory_s: quiet time below a threshold before a new impulse, s (≥ 0.01).
    """

    def __init__(self, samplerate: float, channels: int = 1,
                 thresholds_db=DEFAULT_THRESHOLDS_DB,
                 refractory_s: float = DEFAULT_REFRACTORY_S):
        thresholds = check_impulse_thresholds(thresholds_db)
        if not thresholds:
            raise ValueError("no impulse thresholds")
        if not refractory_s >= MIN_REFRACTORY_S:
            raise ValueError(f"refractory time {refractory_s} s is below {MIN_REFRACTORY_S} s")
        self.samplerate = float(samplerate)
        self.channels = int(channels)
        self.thresholds_db: tuple[float, ...] = thresholds
        self.refractory_s = float(refractory_s)
        self.refractory_samples = max(round(self.refractory_s * self.samplerate), 1)
        self.thresholds_pa = threshold_pressures(thresholds)
        self.reset()

    def reset(self) -> None:
        """A new stream: quiet before its first sample."""
        self.state = quiet_state(self.channels, len(self.thresholds_db),
                                 self.refractory_samples)

    def starts(self, p_c: np.ndarray) -> ImpulseStarts:
        """The impulses starting in the next block of C-weighted pressure (Pa), shape
        (channels, n) (or (n,) for one channel)."""
        p_c = np.asarray(p_c, dtype=float)
        if p_c.ndim == 1:
            p_c = p_c[None, :]
        found, self.state = impulse_starts(p_c, self.thresholds_pa, self.refractory_samples,
                                           self.state)
        return found

    def count(self, p_c: np.ndarray) -> np.ndarray:
        """Impulses starting in the next block, per (channel, threshold); shape (channels,
        thresholds), int64."""
        return self.starts(p_c).counts(self.channels, len(self.thresholds_db))


def count_impulses(p_c: np.ndarray, samplerate: float, thresholds_db=DEFAULT_THRESHOLDS_DB,
                   refractory_s: float = DEFAULT_REFRACTORY_S) -> np.ndarray:
    """Impulses in a whole C-weighted signal (Pa), shape (n,) or (channels, n); returns the
    counts per (channel, threshold), shape (channels, thresholds)."""
    p_c = np.asarray(p_c, dtype=float)
    channels = 1 if p_c.ndim == 1 else p_c.shape[0]
    return ImpulseCounter(samplerate, channels, thresholds_db, refractory_s).count(p_c)
