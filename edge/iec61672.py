"""IEC 61672-1:2013 frequency and time weightings as digital filters.

What this module implements, clause by clause:

* Annex E (eqs. E.1–E.6): the analytic A and C weightings, with the pole frequencies
  f1 = 20.598997 Hz, f2 = 107.65265 Hz, f3 = 737.86223 Hz, f4 = 12194.217 Hz and the
  normalisation constants A1000 = −2.000 dB, C1000 = −0.062 dB (:func:`a_weighting_db`,
  :func:`c_weighting_db`).
* Clause 5.5 and Table 3: the digital A, C and Z weighting filters as second-order sections
  (:func:`weighting_sos`) and the table of design goals with class 1 acceptance limits
  (:func:`table3`).
* Clause 5.8: exponential time weightings F (τ = 0.125 s) and S (τ = 1 s)
  (:data:`TAU_F`, :data:`TAU_S`, :func:`exponential_block_weights`).
* Tables 4 and 5: the reference tone-burst and peak responses used by the tests
  (:func:`table4`, :func:`table5`).

Digital design of the weightings. The bilinear transform of the analogue prototype maps
s = ∞ onto z = −1, so the double pole at f4 = 12.2 kHz is squeezed towards Nyquist and the
response falls off the analytic curve (−1.2 dB at 10 kHz at 48 kHz). Here the prototype is split
into a low-frequency part (the zeros at s = 0 and the poles f1, f2, f3, which lie far below
Nyquist, bilinear-transformed) and the high-frequency part 1/(1 + s/ω4)², which is replaced by
one digital biquad whose magnitude is fitted by least squares to the analytic magnitude from
10 Hz to min(20 kHz, 0.999·fs/2), weighted ten times more below 10.5 kHz. Its poles are kept
real and inside the unit circle by construction and its zeros are reflected inside the unit
circle (minimum phase, like the prototype). Result (tests/test_iec61672.py): within 0.02 dB of
the analytic curve up to 10 kHz at 44.1, 48, 51.2 and 96 kHz, and within the class 1 acceptance
limits from 10 Hz to 20 kHz (cf. Rimell, Mansfield & Paddan, Industrial Health 53 (2015) 21–27,
on the errors of the plain bilinear design).

The C weighting is the cascade [f1 section, HF section]; the A weighting is the C weighting
followed by one more section (zeros at s = 0, poles f2 and f3): :func:`c_to_a_sos`. The meter
filters once for C and once more for A, so A and C stay consistent and cost three sections.
"""

from __future__ import annotations

import csv
import functools
from importlib import resources

import numpy as np
from scipy import signal
from scipy.optimize import least_squares

F1 = 20.598997
"""Pole frequency f1 of the A and C weightings (IEC 61672-1 Annex E, eq. E.1), Hz."""
F2 = 107.65265
"""Pole frequency f2 of the A weighting (Annex E, eq. E.5), Hz."""
F3 = 737.86223
"""Pole frequency f3 of the A weighting (Annex E, eq. E.5), Hz."""
F4 = 12194.217
"""Pole frequency f4 of the A and C weightings (Annex E, eq. E.2), Hz."""
A1000 = -2.000
"""Normalisation constant of the A weighting (Annex E, eq. E.6), dB."""
C1000 = -0.062
"""Normalisation constant of the C weighting (Annex E, eq. E.6), dB."""

TAU_F = 0.125
"""Time constant of time weighting F (Fast), IEC 61672-1 clause 5.8.1, seconds."""
TAU_S = 1.0
"""Time constant of time weighting S (Slow), IEC 61672-1 clause 5.8.1, seconds."""

WEIGHTINGS = ("A", "C", "Z")

MIN_SAMPLERATE = 44_100.0
"""Lowest sample rate for which the weighting filters are specified to meet class 1, Hz."""


def a_weighting_db(f):
    """Analytic A weighting in dB at frequency ``f`` (Hz, any shape), IEC 61672-1 eq. E.6.

    A(f) = 20 lg[f4² f⁴ / ((f² + f1²) √(f² + f2²) √(f² + f3²) (f² + f4²))] − A1000.
    Returns −inf at 0 Hz.
    """
    f2 = np.asarray(f, dtype=float) ** 2
    with np.errstate(divide="ignore"):
        num = F4**2 * f2**2
        den = (f2 + F1**2) * np.sqrt(f2 + F2**2) * np.sqrt(f2 + F3**2) * (f2 + F4**2)
        return 20.0 * np.log10(num / den) - A1000


def c_weighting_db(f):
    """Analytic C weighting in dB at frequency ``f`` (Hz, any shape), IEC 61672-1 eq. E.6.

    C(f) = 20 lg[f4² f² / ((f² + f1²)(f² + f4²))] − C1000. Returns −inf at 0 Hz.
    """
    f2 = np.asarray(f, dtype=float) ** 2
    with np.errstate(divide="ignore"):
        return 20.0 * np.log10(F4**2 * f2 / ((f2 + F1**2) * (f2 + F4**2))) - C1000


def weighting_db(weighting: str, f):
    """Analytic weighting ``'A'``, ``'C'`` or ``'Z'`` in dB at ``f`` (Hz), IEC 61672-1 Annex E."""
    weighting = _check_weighting(weighting)
    if weighting == "A":
        return a_weighting_db(f)
    if weighting == "C":
        return c_weighting_db(f)
    return np.zeros(np.shape(f))


def _check_weighting(weighting: str) -> str:
    w = str(weighting).upper()
    if w not in WEIGHTINGS:
        raise ValueError(f"unknown frequency weighting {weighting!r}: use one of A, C, Z")
    return w


def _check_samplerate(fs: float) -> float:
    fs = float(fs)
    if not np.isfinite(fs) or fs < MIN_SAMPLERATE:
        raise ValueError(
            f"sample rate {fs} Hz is too low for class 1 A/C weighting up to 20 kHz: "
            f"record at {MIN_SAMPLERATE:.0f} Hz or more"
        )
    return fs


def _hf_magnitude_db(f):
    """Analytic magnitude of the high-frequency factor 1/(1 + s/ω4)² in dB."""
    return -20.0 * np.log10(1.0 + (np.asarray(f, dtype=float) / F4) ** 2)


@functools.lru_cache(maxsize=16)
def _hf_section(fs: float) -> tuple[float, ...]:
    """One biquad (b0, b1, b2, 1, a1, a2) whose magnitude follows 1/|1 + jf/f4|² at rate fs.

    Least-squares fit in dB over 10 Hz … min(20 kHz, 0.999 fs/2); the two poles are real,
    parameterised as tanh(·) so they stay inside the unit circle; the zeros are reflected
    inside the unit circle afterwards (same magnitude, minimum phase). Gain is exact at DC.
    """
    top = min(20_000.0, 0.999 * fs / 2)
    f = np.concatenate([np.geomspace(10.0, 1000.0, 60), np.linspace(1000.0, top, 600)])
    w = np.where(f <= 10_500.0, 10.0, 1.0)
    target = _hf_magnitude_db(f)
    zf = np.exp(-2j * np.pi * f / fs)

    def response_db(p):
        b0, b1, b2, r1, r2 = p
        q1, q2 = np.tanh(r1), np.tanh(r2)
        num = b0 + b1 * zf + b2 * zf**2
        den = (1 - q1 * zf) * (1 - q2 * zf)
        return 20.0 * np.log10(np.abs(num / den) + 1e-300)

    pole = np.exp(-2 * np.pi * F4 / fs)
    x0 = [(1 - pole) ** 2, 0.0, 0.0, np.arctanh(pole), np.arctanh(pole * 0.999)]
    sol = least_squares(lambda p: w * (response_db(p) - target), x0, method="lm", max_nfev=4000)
    b0, b1, b2, r1, r2 = sol.x
    q1, q2 = np.tanh(r1), np.tanh(r2)
    zeros = np.roots([b0, b1, b2])
    gain = b0
    # Reflect zeros outside the unit circle inside it: |1 - z/zk| scales by |zk| when zk -> 1/zk*.
    outside = np.abs(zeros) > 1.0
    gain = gain * np.prod(np.abs(zeros[outside]))
    zeros = np.where(outside, 1.0 / np.conj(zeros), zeros)
    b = np.real(gain * np.poly(zeros))
    a = np.real(np.poly([q1, q2]))
    # Exact unity gain at DC, as the analogue factor.
    b = b * (np.sum(a) / np.sum(b))
    return tuple(np.concatenate([b, a]).tolist())


def _bilinear_section(zeros_hz: int, poles_hz: tuple[float, float], fs: float) -> np.ndarray:
    """Bilinear transform of s^zeros_hz / ((s + ω_a)(s + ω_b)) as one normalised biquad."""
    z = [0.0] * zeros_hz
    p = [-2 * np.pi * poles_hz[0], -2 * np.pi * poles_hz[1]]
    zd, pd, kd = signal.bilinear_zpk(z, p, 1.0, fs)
    return signal.zpk2sos(zd, pd, kd)


def _normalise(sos: np.ndarray, fs: float, target_db: float) -> np.ndarray:
    """Scale ``sos`` so that its gain at 1 kHz equals ``target_db`` (the analytic value)."""
    _, h = signal.sosfreqz(sos, worN=[1000.0], fs=fs)
    sos = np.array(sos, dtype=float)
    sos[0, :3] *= 10 ** (target_db / 20) / np.abs(h[0])
    return sos


@functools.lru_cache(maxsize=16)
def _c_sos_cached(fs: float) -> np.ndarray:
    low = _bilinear_section(2, (F1, F1), fs)
    hf = np.asarray(_hf_section(fs))[None, :]
    return _normalise(np.vstack([low, hf]), fs, float(c_weighting_db(1000.0)))


@functools.lru_cache(maxsize=16)
def _c_to_a_sos_cached(fs: float) -> np.ndarray:
    sec = _bilinear_section(2, (F2, F3), fs)
    target = float(a_weighting_db(1000.0) - c_weighting_db(1000.0))
    return _normalise(sec, fs, target)


def c_to_a_sos(fs: float) -> np.ndarray:
    """Second-order sections that turn a C-weighted signal into an A-weighted one at rate
    ``fs`` (Hz): zeros at s = 0 and the poles f2, f3 of IEC 61672-1 eq. E.5, gain set so
    that the cascade C → A reads A(1 kHz) exactly. Shape (1, 6)."""
    return _c_to_a_sos_cached(_check_samplerate(fs)).copy()


def weighting_sos(weighting: str, fs: float) -> np.ndarray:
    """Digital frequency weighting ``'A'``, ``'C'`` or ``'Z'`` (IEC 61672-1 clause 5.5) as
    second-order sections for sample rate ``fs`` in Hz (≥ 44.1 kHz).

    Returns an array of shape (n_sections, 6) for :func:`scipy.signal.sosfilt`; input and
    output are sound pressure in Pa. Within 0.02 dB of the analytic Annex E curve up to
    10 kHz and within class 1 limits (Table 3) from 10 Hz to 20 kHz. Z is one unity section.
    """
    weighting = _check_weighting(weighting)
    fs = _check_samplerate(fs)
    if weighting == "Z":
        return np.array([[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]])
    c = _c_sos_cached(fs)
    if weighting == "C":
        return c.copy()
    return np.vstack([c, _c_to_a_sos_cached(fs)])


def exponential_block_weights(tau: float, fs: float, m: int) -> tuple[np.ndarray, float]:
    """Exact block form of the exponential time weighting (IEC 61672-1 clause 5.8, eq. 6).

    The time-weighted mean square y[n] = a·y[n−1] + (1 − a)·e[n], a = exp(−1/(τ·fs)), evaluated
    only at the end of each block of ``m`` samples, is
    Y_j = a^m · Y_{j−1} + Σ_k w_k e_{jm+k} with w_k = (1 − a)·a^(m−1−k).

    Returns ``(w, a**m)``: ``w`` of shape (m,) and the block decay factor. ``tau`` in seconds,
    ``fs`` in Hz. The weighting is continuous: nothing restarts at block edges.
    """
    a = np.exp(-1.0 / (tau * fs))
    k = np.arange(m)
    return (1.0 - a) * a ** (m - 1 - k), float(a**m)


def _read_table(name: str) -> dict[str, np.ndarray]:
    text = resources.files("tingbao.edge").joinpath("data", name).read_text(encoding="utf-8")
    rows = [r for r in csv.reader(line for line in text.splitlines() if not line.startswith("#"))]
    header, body = rows[0], [r for r in rows[1:] if r]
    cols: dict[str, np.ndarray] = {}
    for i, key in enumerate(header):
        values = [r[i] for r in body]
        try:
            cols[key] = np.array([float(v) for v in values])
        except ValueError:
            cols[key] = np.array(values)
    return cols


def table3() -> dict[str, np.ndarray]:
    """IEC 61672-1:2013 Table 3 as columns: ``nominal_hz``, ``index_n`` (exact frequency
    1000·10^(n/10) Hz), ``a_db``, ``c_db`` (design goals, dB) and ``class1_upper_db``,
    ``class1_lower_db`` (acceptance limits, dB; −inf where there is none)."""
    return _read_table("iec61672_table3.csv")


def table4() -> dict[str, np.ndarray]:
    """IEC 61672-1:2013 Table 4 as columns: ``burst_ms``, reference 4 kHz tone-burst responses
    ``ref_f_db``, ``ref_s_db``, ``ref_e_db`` (dB re the steady level) and class 1 acceptance
    limits ``class1_upper_db``, ``class1_lower_db`` (dB)."""
    return _read_table("iec61672_table4.csv")


def table5() -> dict[str, np.ndarray]:
    """IEC 61672-1:2013 Table 5 as columns: ``signal``, ``frequency_hz``, ``cycles``,
    ``polarity``, ``ref_db`` (LCpeak − LC, dB) and class 1 limits (dB)."""
    return _read_table("iec61672_table5.csv")
