"""``tingbao scene``: a synthetic factory scene measured live by the meter on this device,
printed as a table of levels (no broker or database needed; ``tingbao demo`` runs the whole
backbone).

The table shows levels and the exposure accumulated so far as LEX,8h (the level arithmetic
of :mod:`tingbao.edge.levels`). It grades nothing: a hazard grade (GBZ/T 229.4) belongs to a
working day's exposure and is computed server-side in :mod:`tingbao.analysis`, which the edge
does not import (ARCHITECTURE.md, the dependency rule)."""

from __future__ import annotations

import sys
import time

HEADER = "  time   LAeq,1s  LAFmax  LCpeak  LAF90   EA(Pa²s)  LEX,8h so far"


def register(sub) -> None:
    p = sub.add_parser("scene", help="measure a synthetic factory scene live on this device")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of audio (default 60)")
    p.add_argument("--speed", type=float, default=10.0,
                   help="how much faster than real time to play (default 10; 0 = as fast as "
                        "possible)")
    p.add_argument("--profile", default="mixed",
                   help="scene: mixed, stamping, grinding, quiet, steady")
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..levels import lex_8h
    from ..meter import SoundLevelMeter
    from ..sources.synthetic import SyntheticScene

    scene = SyntheticScene(duration=args.duration, seed=args.seed, profile=args.profile)
    meter = SoundLevelMeter(scene.samplerate, channels=scene.channels,
                            pa_per_unit=scene.pa_per_unit)
    out = sys.stdout
    out.write("听保 tingbao scene — synthetic factory scene "
              f"'{args.profile}' (IEC 61672-1 class 1 meter, 1 s intervals)\n")
    out.write(HEADER + "\n")
    t0 = time.monotonic()
    exposure = 0.0
    for chunk in scene:
        for iv in meter.process(chunk.data):
            exposure += float(iv.ea[0])
            lex = float(lex_8h(exposure))
            out.write(f"{iv.start:6.0f}s  {iv.laeq[0]:7.1f}  {iv.lafmax[0]:6.1f}  "
                      f"{iv.lcpeak[0]:6.1f}  {iv.lafn[90][0]:5.1f}  {iv.ea[0]:9.4f}  "
                      f"{lex:14.1f}\n")
            out.flush()
        if args.speed > 0:
            ahead = meter.clock / scene.samplerate / args.speed - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
    out.write(f"exposure so far EA = {exposure:.3f} Pa²·s → LEX,8h = {float(lex_8h(exposure)):.1f} "
              "dB(A) (the shift's exposure normalised to 8 h, GBZ/T 189.8)\n")
    return 0
