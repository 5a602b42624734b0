"""The report's figures, drawn with matplotlib (Agg, object API: no pyplot state) as SVG
text for the HTML to inline: the daily LEX,8h chart with the limit line and the GBZ/T
229.4-2012 grade bands, the level–time plot of a post (minute LAeq, LAFmax and LCpeak from
the ``levels_1m`` rollups), and a post's band spectrum (LZeq per band, IEC 61260-1 midbands).

Levels in dB re 20 µPa; times in minutes from a shift's start. Chinese labels need a CJK
font: :func:`cjk_font` finds Noto Sans CJK (Debian ``fonts-noto-cjk``) through
:mod:`matplotlib.font_manager` and fails with the install command when it is absent. The
SVG draws text as paths (``svg.fonttype = path``), so a figure needs no font where it is
shown, and is byte-for-byte reproducible (fixed hash salt, no date).
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

from matplotlib import font_manager  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from tingbao.collector.registry.profiles import Profile  # noqa: E402

__all__ = ["FontMissing", "cjk_font", "level_time_svg", "lex_chart_svg", "spectrum_svg"]

CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans SC", "Noto Serif CJK SC", "Noto Sans CJK JP")
"""Font families tried in this order (the SC cut first: Simplified Chinese glyph shapes)."""

GRADE_COLOURS = ("#fff3c4", "#ffd59a", "#ffab8a", "#f28b82")
"""Fill of the grade bands I … IV (light to dark)."""


class FontMissing(RuntimeError):
    """No CJK font for Chinese labels."""


@functools.cache
def cjk_font() -> str:
    """The family name of an installed Noto CJK font (see :data:`CJK_FAMILIES`); raises
    :class:`FontMissing` naming ``apt-get install fonts-noto-cjk`` when none is found."""
    names = {f.name for f in font_manager.fontManager.ttflist}
    for family in CJK_FAMILIES:
        if family in names:
            return family
    # a font installed after matplotlib built its cache: look at the files once more
    for path in font_manager.findSystemFonts():
        if "NotoSansCJK" in path or "NotoSerifCJK" in path:
            font_manager.fontManager.addfont(path)
    names = {f.name for f in font_manager.fontManager.ttflist}
    for family in CJK_FAMILIES:
        if family in names:
            return family
    raise FontMissing("no Noto CJK font for the Chinese text of the report: install it with "
                      "`apt-get install fonts-noto-cjk` (then `fc-cache -f`)")


def _rc() -> dict:
    return {"font.family": "sans-serif", "font.sans-serif": [cjk_font(), "DejaVu Sans"],
            "axes.unicode_minus": False, "svg.fonttype": "path", "svg.hashsalt": "tingbao",
            "font.size": 8.5}


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype: inlined in HTML


def _finite(xs: Sequence[float | None]) -> list[float]:
    return [math.nan if x is None else float(x) for x in xs]


def lex_chart_svg(series: Sequence[tuple[str, Sequence[tuple[dt.date, float, float | None]]]],
                  prof: Profile, title: str) -> str:
    """Daily LEX,8h (dB(A)) of each named series, ``[(label, [(date, lex, U or None), …])]``,
    with error bars of U, the profile's limit line and its grade bands."""
    with matplotlib.rc_context(_rc()):
        fig = Figure(figsize=(7.2, 3.4))
        ax = fig.add_subplot()
        dates = sorted({d for _, pts in series for d, _, _ in pts})
        lows = [v - (u or 0.0) for _, pts in series for _, v, u in pts]
        highs = [v + (u or 0.0) for _, pts in series for _, v, u in pts]
        edges = [g.from_db for g in prof.grades]
        lo = math.floor(min([*lows, prof.lex_limit_db, *(edges[:1])]) - 3)
        hi = math.ceil(max([*highs, prof.lex_limit_db]) + 3)
        for i, g in enumerate(prof.grades):
            top = edges[i + 1] if i + 1 < len(edges) else max(hi, g.from_db + 5)
            if g.from_db < hi:
                ax.axhspan(g.from_db, top, color=GRADE_COLOURS[min(i, 3)], alpha=0.6, lw=0)
                ax.text(1.005, (g.from_db + min(top, hi)) / 2, g.code, va="center",
                        transform=ax.get_yaxis_transform(), fontsize=8)
        ax.axhline(prof.lex_limit_db, color="#b00020", lw=1.4,
                   label=f"接触限值 limit {prof.lex_limit_db:g} dB(A) ({prof.id})")
        n = max(len(series), 1)
        for k, (label, pts) in enumerate(series):
            if not pts:
                continue
            offset = (k - (n - 1) / 2) * 0.6 / n  # series side by side within a day
            xs = [dates.index(d) + offset for d, _, _ in pts]
            ys = [v for _, v, _ in pts]
            us = [u if u is not None else 0.0 for _, _, u in pts]
            ax.errorbar(xs, ys, yerr=us, fmt="o", ms=4, capsize=2.5, lw=1, label=label)
        ax.set_xticks(range(len(dates)), [d.strftime("%m-%d") for d in dates],
                      rotation=45 if len(dates) > 10 else 0)
        ax.set_xlim(-0.6, max(len(dates) - 0.4, 0.6))
        ax.set_ylim(lo, hi)
        ax.set_ylabel("LEX,8h  dB(A)")
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", lw=0.3, alpha=0.6)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.04, 1.0), frameon=False)
        return _svg(fig)


def level_time_svg(days: Sequence, shift_hours: float, prof: Profile, title: str) -> str:
    """Minute levels of one post over the period's shifts (``days``: MinuteLevels, one per
    shift date), the shifts side by side on one axis (hours into each shift), a thin line
    between days and gaps where no minute was measured."""
    with matplotlib.rc_context(_rc()):
        fig = Figure(figsize=(7.2, 2.8))
        ax = fig.add_subplot()
        span = shift_hours
        first = True
        for i, d in enumerate(days):
            x0 = i * span
            xs, series = _with_gaps(d.minutes, (d.laeq, d.lafmax, d.lcpeak))
            hx = [x0 + m / 60 if not math.isnan(m) else math.nan for m in xs]
            ax.plot(hx, series[2], lw=0.5, color="#9e9e9e",
                    label="LCpeak" if first else None)
            ax.plot(hx, series[1], lw=0.6, color="#ef6c00",
                    label="LAFmax" if first else None)
            ax.plot(hx, series[0], lw=0.9, color="#1565c0",
                    label="LAeq,1min" if first else None)
            if i:
                ax.axvline(x0, color="#424242", lw=0.5)
            ax.text(x0 + span / 2, 1.01, d.date.strftime("%m-%d"), ha="center", va="bottom",
                    transform=ax.get_xaxis_transform(), fontsize=7)
            first = False
        ax.axhline(prof.lex_limit_db, color="#b00020", lw=0.8, ls="--",
                   label=f"{prof.lex_limit_db:g} dB(A)")
        ax.set_xlim(0, max(len(days), 1) * span)
        if len(days) <= 3:
            step = 1 if span <= 12 else 2
            ticks = [i * span + h for i in range(len(days)) for h in range(0, int(span), step)]
            ax.set_xticks(ticks, [f"{(t % span):g}" for t in ticks])
            ax.set_xlabel("班次内时间 h / hours into the shift")
        else:
            ax.set_xticks([])
            ax.set_xlabel("班次（按日期）/ shifts by date")
        ax.set_ylabel("dB")
        ax.set_title(title, fontsize=9, pad=14)
        ax.grid(axis="y", lw=0.3, alpha=0.6)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        return _svg(fig)


def _with_gaps(minutes: Sequence[float], columns: Sequence[Sequence[float | None]]):
    """Insert a NaN wherever consecutive minutes are more than one minute apart, so the plot
    shows a gap instead of a line across unmeasured time."""
    xs: list[float] = []
    out: list[list[float]] = [[] for _ in columns]
    prev = None
    for i, m in enumerate(minutes):
        if prev is not None and m - prev > 1.5:
            xs.append(math.nan)
            for col in out:
                col.append(math.nan)
        xs.append(m)
        for col, src in zip(out, columns, strict=True):
            v = src[i]
            col.append(math.nan if v is None else float(v))
        prev = m
    return xs, out


def spectrum_svg(labels: Sequence[str], levels_db: Sequence[float], title: str) -> str:
    """Bars of band levels (LZeq, dB re 20 µPa) at their nominal midbands ``labels`` (Hz)."""
    with matplotlib.rc_context(_rc()):
        fig = Figure(figsize=(7.2, 2.6))
        ax = fig.add_subplot()
        xs = range(len(labels))
        ax.bar(xs, _finite(levels_db), color="#5c6bc0", width=0.8)
        ax.set_xticks(list(xs), [_short(x) for x in labels],
                      rotation=90 if len(labels) > 12 else 0, fontsize=7)
        finite = [x for x in levels_db if x is not None and math.isfinite(x)]
        if finite:
            ax.set_ylim(max(0.0, min(finite) - 10), max(finite) + 5)
        ax.set_xlabel("频带中心频率 Hz / band midband frequency, Hz")
        ax.set_ylabel("LZeq  dB")
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", lw=0.3, alpha=0.6)
        return _svg(fig)


def _short(label: str) -> str:
    f = float(label)
    if f >= 1000:
        k = f / 1000
        return f"{k:g}k"
    return label
