"""Speed, memory and accuracy of the edge meter against the bare limit and a peer, in one run.

Not a test: it prints figures; its last line is one JSON object with
``rtf_full``, ``rtf_bands``, ``limit_ratio``, ``peer``, ``peer_ratio``, ``peak_rss_mb`` (and
more). Run with ``make bench`` (which installs the peer, acoustic-toolbox, into the venv).

(a) the bare limit: scipy ``sosfilt`` of a plain bilinear A and C weighting over the audio;
(b) tingbao's full interval metric set (SoundLevelMeter, 1 s intervals);
(b') the full metric set fed in calls of 4,800 samples (0.1 s, as the agent feeds it), on the
    first 10 minutes (``rtf_full_calls_of_4800``);
(c) the same with 1/3-octave bands 25 Hz–10 kHz;
(e) the full metric set on 8 channels of one meter (48 kHz), CPU time per channel, beside the
    bare limit on the same 8 channels (``--multi-minutes``, default 10);
(d) acoustic-toolbox on the metrics it has (LAeq, LAFmax, LCpeak per second). It pins the
    ancient ``pysoundfile`` package, which overwrites ``soundfile`` and breaks tingbao's venv,
    so it lives in ``bench/.peer-venv`` (``make bench`` creates it) and this script runs it in
    a child process on the same synthesised audio, within the same run.

(a), (b) and (c) run interleaved, second of audio by second of audio, in rotating order, and
so do the two halves of (e): on the development machine the speed swings by up to half from
minute to minute, and runs one after the other gave ratios that moved with it. The JSON's
``rounds`` gives the figures per sixth of the run, to show how much the machine moved.

The audio: ``--minutes`` (default 60) of 48 kHz mono, synthesised block by block (pink noise
with stamping impulses, level varying second to second), never held whole. Times are CPU
seconds of this process (one thread: BLAS threads are pinned to 1), of the calls alone (not
of making the audio). The peer runs on the first
``--peer-minutes`` (default 10) and its time is compared per audio second.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy import signal  # noqa: E402

FS = 48_000
P0 = 20e-6
CHANNELS = 8
"""Channels of the multichannel figure (one meter, 48 kHz)."""
REFERENCE_RTF_LIMIT = 1_218.0
"""rtf_limit of the run quoted when the targets were set (issue 15, 2026-11-29): the absolute
targets (rtf_full, rtf_bands) are also shown scaled to a machine as fast as that one was."""
AGENT_CALL = 4_800
"""Samples per call of the agent's audio loop (0.1 s at 48 kHz; edge/agent.py)."""
PEER_PYTHON = Path(__file__).resolve().parent / ".peer-venv" / "bin" / "python"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Audio:
    """Deterministic synthetic audio in 1 s blocks (Pa): a 60 s pink-noise bed with stamping
    impulses, each second scaled by its own gain (60–100 dB(A) range)."""

    def __init__(self, seconds: int, seed: int = 0):
        self.seconds = seconds
        rng = np.random.default_rng(seed)
        n = 60 * FS
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1 / FS)
        spec[1:] /= np.sqrt(f[1:] / 1000.0)
        spec[0] = 0
        bed = np.fft.irfft(spec, n)
        bed /= np.sqrt(np.mean(bed**2))
        for k in range(0, n, FS // 2):  # an impulse every 0.5 s
            m = min(2400, n - k)
            bed[k : k + m] += 8.0 * np.exp(-np.arange(m) / 300.0) * rng.standard_normal(m)
        self.bed = bed.reshape(60, FS)
        self.gain = 10 ** (rng.uniform(-2.0, 2.0, seconds) / 20) * 0.5  # ~ 82-92 dB

    def __iter__(self):
        for i in range(self.seconds):
            yield self.bed[i % 60] * self.gain[i]

    def multichannel(self, channels: int):
        """(channels, FS) blocks: channel c plays the bed 7·c seconds later, 1 dB louder per
        channel, so no two channels carry the same samples."""
        gains = 10 ** (np.arange(channels) / 20)
        for i in range(self.seconds):
            rows = [(i + 7 * c) % 60 for c in range(channels)]
            yield self.bed[rows] * (self.gain[i] * gains)[:, None]


def bilinear_sos(weighting: str, iec61672) -> np.ndarray:
    w = 2 * np.pi * np.array([iec61672.F1, iec61672.F1, iec61672.F4, iec61672.F4])
    zeros = 2
    if weighting == "A":
        w = np.concatenate([w, 2 * np.pi * np.array([iec61672.F2, iec61672.F3])])
        zeros = 4
    zd, pd, kd = signal.bilinear_zpk([0.0] * zeros, -w, 1.0, FS)
    sos = signal.zpk2sos(zd, pd, kd)
    _, h = signal.sosfreqz(sos, worN=[1000.0], fs=FS)
    sos[0, :3] *= 10 ** (iec61672.weighting_db(weighting, 1000.0) / 20) / abs(h[0])
    return sos


ROUNDS = 6
"""The interleaved run is reported per round (a sixth of the audio each) as well as whole."""


def bare_limit(iec61672, channels: int | None = None):
    """The bare limit as a function of one block: scipy ``sosfilt`` of a plain bilinear A and
    C weighting, states carried; blocks of shape (n,), or (channels, n) filtered along the
    time axis."""
    sa, sc = bilinear_sos("A", iec61672), bilinear_sos("C", iec61672)
    lead = () if channels is None else (channels,)
    z = {"A": np.zeros((sa.shape[0], *lead, 2)), "C": np.zeros((sc.shape[0], *lead, 2))}

    def limit(x):
        _, z["A"] = signal.sosfilt(sa, x, axis=-1, zi=z["A"])
        _, z["C"] = signal.sosfilt(sc, x, axis=-1, zi=z["C"])

    return limit


def interleave(blocks, seconds: int, runs: dict, checkpoints: dict | None = None):
    """Each of ``seconds`` blocks through every function of ``runs`` in an order that
    rotates every block (whoever goes first reads the freshly made samples from memory), so
    that all see the machine in the same state: on the development machine, speed swings by
    up to half from minute to minute, and runs one after the other gave ratios that moved
    with it. Only the calls themselves are timed (CPU s), not the making of the blocks.
    Returns, per name of ``runs``, the CPU seconds of each of ROUNDS rounds; with
    ``checkpoints``, records the peak RSS after a tenth of the blocks and at the end."""
    names = list(runs)
    spent = {name: np.zeros(ROUNDS) for name in names}
    for i, block in enumerate(blocks):
        r = i * ROUNDS // seconds
        for j in range(len(names)):
            name = names[(i + j) % len(names)]
            t = time.process_time()
            runs[name](block)
            spent[name][r] += time.process_time() - t
        if checkpoints is not None and i == seconds // 10:
            checkpoints["rss_mb_at_10pct"] = rss_mb()
    if checkpoints is not None:
        checkpoints["rss_mb_at_end"] = rss_mb()
    return spent


def run_interleaved(audio: Audio, iec61672, checkpoints: dict) -> dict[str, np.ndarray]:
    """(a), (b) and (c) on the same audio, second by second (:func:`interleave`): the bare
    limit, the full metric set and the full metric set with 1/3-octave bands. Returns, per
    name ("limit", "full", "third"), the CPU seconds of each of ROUNDS rounds."""
    from tingbao.edge.meter import SoundLevelMeter

    runs = {"limit": bare_limit(iec61672), "full": SoundLevelMeter(FS).process,
            "third": SoundLevelMeter(FS, bands="third").process}
    return interleave(audio, audio.seconds, runs, checkpoints)


def run_tingbao(audio: Audio, bands: str | None, call: int = FS) -> float:
    """The meter on ``audio`` fed in calls of ``call`` samples (1 s by default; the agent
    feeds 0.1 s, ``AGENT_CALL``); CPU seconds spent in the meter."""
    from tingbao.edge.meter import SoundLevelMeter

    meter = SoundLevelMeter(FS, bands=bands)
    spent = 0.0
    for x in audio:
        t = time.process_time()
        for start in range(0, x.size, call):
            meter.process(x[start : start + call])
        spent += time.process_time() - t
    return spent


def run_multichannel(audio: Audio, channels: int, iec61672) -> tuple[float, float]:
    """The bare limit (along the time axis of (channels, n) blocks) and the full metric set
    of one meter on ``channels`` channels ((n, channels) blocks, made outside the timing),
    interleaved second by second (:func:`interleave`). Returns their CPU seconds."""
    from tingbao.edge.meter import SoundLevelMeter

    limit, meter = bare_limit(iec61672, channels), SoundLevelMeter(FS, channels=channels)
    blocks = ((x, np.ascontiguousarray(x.T)) for x in audio.multichannel(channels))
    spent = interleave(blocks, audio.seconds, {"limit": lambda xb: limit(xb[0]),
                                               "full": lambda xb: meter.process(xb[1])})
    return float(spent["limit"].sum()), float(spent["full"].sum())


def run_peer_documented(audio: Audio, chunk_s: int = 60):
    """acoustic-toolbox used as documented: ``frequency_weighting`` (A and C) and
    ``time_weighting`` ('fast') on arrays of ``chunk_s`` seconds; LAeq, LAFmax, LCpeak per
    second from them. (Its F weighting restarts at each chunk; ours never does.)"""
    from acoustic_toolbox.standards import iec_61672_1_2013 as at

    spent = 0.0
    buf = []
    for x in audio:
        buf.append(x)
        if len(buf) < chunk_s:
            continue
        x = np.concatenate(buf)
        buf = []
        t = time.process_time()
        a = at.frequency_weighting(x, FS, "A")
        c = at.frequency_weighting(x, FS, "C")
        a2 = (a**2).reshape(-1, FS)
        laeq = 10 * np.log10(a2.mean(axis=1) / P0**2)
        y = at.time_weighting(a, FS, "fast").reshape(-1, FS)
        lafmax = 10 * np.log10(y.max(axis=1) / P0**2)
        lcpeak = 20 * np.log10(np.abs(c).reshape(-1, FS).max(axis=1) / P0)
        spent += time.process_time() - t
        del laeq, lafmax, lcpeak
    return spent


def run_peer_streaming(audio: Audio):
    """acoustic-toolbox tuned for streaming: stateful ``WeightingFilter`` objects for A and C,
    ``time_weighting`` with its state carried, 1 s blocks."""
    from acoustic_toolbox.standards import iec_61672_1_2013 as at

    fa = at.WeightingFilter(FS, "A", stateful=True)
    fc = at.WeightingFilter(FS, "C", stateful=True)
    state = None
    spent = 0.0
    for x in audio:
        t = time.process_time()
        a = fa.filter(x)
        c = fc.filter(x)
        laeq = 10 * np.log10(np.mean(a**2) / P0**2)
        y = at.time_weighting(a, FS, "fast", initial_state=state)
        state = y[-1]
        lafmax = 10 * np.log10(np.max(y) / P0**2)
        lcpeak = 20 * np.log10(np.max(np.abs(c)) / P0)
        spent += time.process_time() - t
        del laeq, lafmax, lcpeak
    return spent


def test_signals():
    """A 94.0 dB 1 kHz tone (5 s) and 10 s of pink noise (0.5 Pa RMS), in Pa."""
    t = np.arange(5 * FS) / FS
    tone = np.sqrt(2) * P0 * 10 ** (94.0 / 20) * np.sin(2 * np.pi * 1000 * t)
    rng = np.random.default_rng(5)
    n = 10 * FS
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / FS)
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    noise = np.fft.irfft(spec, n)
    noise *= 0.5 / np.sqrt(np.mean(noise**2))
    return tone, noise


def peer_main(seconds: int) -> int:
    """Child-process entry (in bench/.peer-venv): time the peer and read the test signals."""
    from acoustic_toolbox.standards import iec_61672_1_2013 as at

    t_doc = run_peer_documented(Audio(seconds))
    t_stream = run_peer_streaming(Audio(seconds))
    tone, noise = test_signals()

    def laeq(x):
        a = at.frequency_weighting(x, FS, "A")
        return float(10 * np.log10(np.mean(a[FS:] ** 2) / P0**2))

    print(json.dumps({"t_doc": t_doc, "t_stream": t_stream, "tone": laeq(tone),
                      "pink": laeq(noise)}))
    return 0


def reference_readings(iec61672, SoundLevelMeter):
    """tingbao's and the bare bilinear limit's readings of the test signals, and the
    independent FFT-domain LAeq of the pink noise."""
    tone, noise = test_signals()
    n = len(noise)
    f = np.fft.rfftfreq(n, 1 / FS)
    w = np.zeros_like(f)
    w[1:] = 10 ** (iec61672.a_weighting_db(f[1:]) / 10)
    scale = np.where((f > 0) & (f < FS / 2), 2.0, 1.0)
    ref = 10 * np.log10(np.sum(np.abs(np.fft.rfft(noise)) ** 2 * w * scale) / n**2 / P0**2)

    def ours(x):
        ivs = SoundLevelMeter(FS).process(x)
        return 10 * np.log10(sum(iv.ea[0] for iv in ivs[1:]) / (len(ivs) - 1) / P0**2)

    lim = signal.sosfilt(bilinear_sos("A", iec61672), noise)[FS:]
    return ref, {
        "tone_94db_tingbao": round(float(ours(tone)), 3),
        "pink_laeq_error_tingbao_db": round(float(ours(noise) - ref), 3),
        "pink_laeq_error_bilinear_limit_db": round(
            float(10 * np.log10(np.mean(lim**2) / P0**2) - ref), 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--peer-minutes", type=float, default=10.0)
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--multi-minutes", type=float, default=10.0,
                    help="audio minutes of the 8-channel run (default 10)")
    ap.add_argument("--peer-child", type=int, metavar="SECONDS", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peer_child:
        return peer_main(args.peer_child)

    from tingbao.edge import iec61672
    from tingbao.edge.meter import SoundLevelMeter

    seconds = int(args.minutes * 60)
    audio = Audio(seconds)
    extra: dict = {"audio_seconds": seconds, "samplerate": FS}
    print(f"audio: {seconds} s of 48 kHz mono, synthesised in 1 s blocks", file=sys.stderr)

    spent = run_interleaved(audio, iec61672, extra)
    t_limit, t_full, t_bands = (float(spent[k].sum()) for k in ("limit", "full", "third"))
    print(f"(a) bare limit, sosfilt A + C: {t_limit:.2f} CPU s", file=sys.stderr)
    print(f"(b) tingbao full metric set: {t_full:.2f} CPU s", file=sys.stderr)
    print(f"(c) tingbao + 1/3-octave bands: {t_bands:.2f} CPU s", file=sys.stderr)
    agent = Audio(min(seconds, 600))
    t_agent = run_tingbao(agent, None, call=AGENT_CALL)
    print(f"(b') tingbao full metric set in calls of {AGENT_CALL} samples, {agent.seconds} s: "
          f"{t_agent:.2f} CPU s", file=sys.stderr)

    multi = Audio(int(args.multi_minutes * 60), seed=1)
    t_limit8, t_full8 = run_multichannel(multi, CHANNELS, iec61672)
    per_ch8 = multi.seconds * CHANNELS
    print(f"(e) {CHANNELS} channels, {multi.seconds} s: bare limit {t_limit8:.2f} CPU s, "
          f"tingbao full metric set {t_full8:.2f} CPU s", file=sys.stderr)

    rtf_full, rtf_bands = seconds / t_full, seconds / t_bands
    ratio = t_full / t_limit
    flat = flat_bands = extra["rss_mb_at_end"] - extra["rss_mb_at_10pct"]
    per_round = seconds / ROUNDS
    scale = REFERENCE_RTF_LIMIT / (seconds / t_limit)  # this machine's speed against then
    result = {
        "rtf_full": round(rtf_full, 1),
        "rtf_bands": round(rtf_bands, 1),
        "limit_ratio": round(ratio, 3),
        "rtf_limit": round(seconds / t_limit, 1),
        "bands_limit_ratio": round(t_bands / t_limit, 3),
        f"rtf_full_calls_of_{AGENT_CALL}": round(agent.seconds / t_agent, 1),
        "rtf_full_8ch_per_channel": round(per_ch8 / t_full8, 1),
        "rtf_limit_8ch_per_channel": round(per_ch8 / t_limit8, 1),
        "limit_ratio_8ch": round(t_full8 / t_limit8, 3),
        "rss_growth_mb_10pct_to_end": round(max(flat, flat_bands), 1),
        # the same figures per sixth of the run: how much the machine's speed moved
        "rounds": {
            "rtf_limit": [round(per_round / t, 1) for t in spent["limit"]],
            "rtf_full": [round(per_round / t, 1) for t in spent["full"]],
            "rtf_bands": [round(per_round / t, 1) for t in spent["third"]],
            "limit_ratio": [round(a / b, 3) for a, b in zip(spent["full"], spent["limit"],
                                                              strict=True)],
        },
        "targets": {
            "limit_ratio": {"value": round(ratio, 3), "target": "<= 0.75",
                            "met": bool(ratio <= 0.75)},
            "rtf_full": {"value": round(rtf_full, 1), "target": ">= 1500",
                         "met": bool(rtf_full >= 1500),
                         "at_reference_limit_speed": round(rtf_full * scale, 1)},
            "rtf_bands": {"value": round(rtf_bands, 1), "target": ">= 600",
                          "met": bool(rtf_bands >= 600),
                          "at_reference_limit_speed": round(rtf_bands * scale, 1)},
            "memory_flat": {"value_mb": round(max(flat, flat_bands), 1),
                            "target": "peak RSS grows < 5 MB from 10 % to the end",
                            "met": bool(max(flat, flat_bands) < 5.0)},
        },
        "peer": None,
        "peer_ratio": None,
    }
    ref, readings = reference_readings(iec61672, SoundLevelMeter)
    result.update(readings)
    if not args.no_peer:
        if not PEER_PYTHON.exists():
            print(f"no peer venv at {PEER_PYTHON}: run `make bench` to create it",
                  file=sys.stderr)
            return 2
        peer_s = int(args.peer_minutes * 60)
        out = subprocess.run([str(PEER_PYTHON), __file__, "--peer-child", str(peer_s)],
                             check=True, capture_output=True, text=True)
        p = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"(d) acoustic-toolbox on {peer_s} s: documented functions {p['t_doc']:.2f} CPU s,"
              f" tuned streaming {p['t_stream']:.2f} CPU s", file=sys.stderr)
        per_s = t_full / seconds
        result.update(
            peer="acoustic-toolbox 0.2.2",
            peer_ratio=round(p["t_doc"] / peer_s / per_s, 2),
            peer_ratio_streaming=round(p["t_stream"] / peer_s / per_s, 2),
            rtf_peer=round(peer_s / p["t_doc"], 1),
            tone_94db_peer=round(p["tone"], 3),
            pink_laeq_error_peer_db=round(p["pink"] - ref, 3),
            peer_lacks=["EA (sound exposure)", "LAFmin and statistical levels LAFN", "LASmax",
                        "overload and coverage", "gaps (input overflow)",
                        "calibration from a calibrator recording",
                        "streaming 1/3-octave bands", "class 1 A weighting at 48 kHz"],
        )
    result.update(extra)
    result["peak_rss_mb"] = round(rss_mb(), 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
