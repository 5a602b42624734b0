"""Individual hearing-protector fit tests (field attenuation systems, ANSI/ASA S12.71-2018:
F-MIRE such as 3M E-A-Rfit, REAT such as Honeywell VeriPRO, loudness balance), as the records
such a system exports, checked and judged (noise-standards.md, "Checked 2026-11-29 / Hearing
protectors"; Guangdong field data in peers.md: median PAR 12–17 dB, a third failing).

A record (:class:`FitTest`): enterprise, worker pseudonym, test date, protector, method
(:data:`METHODS`), the personal attenuation rating PAR of the left and right ear and both
(binaural), its uncertainty ``par_u``, optionally the attenuation per octave band (``att_63``
… ``att_8000``), the job and the worker's exposure LEX,8h. One function checks a record,
whatever brought it (CSV row or MQTT message): :func:`parse_record`.

**Pass rule:** binaural PAR − uncertainty ≥ exposure − limit (dB; the limit is the profile's
``lex_limit_db``, 85 dB(A) for CN-GBZ, unless the record gives ``limit_db``); equality passes.
Without an exposure the test is not judged (``passed`` None).

**Cautions** (:data:`CAUTIONS`; always shown, never hidden, also on passing tests): an
attenuation below 10 dB at 125 Hz (a shallow or leaking fit lets the low frequencies through);
a left/right PAR gap of 15 dB or more (one ear fitted badly); implausible band values (negative,
above 60 dB or not finite: a measurement artefact, e.g. a noisy room or a broken probe).

**Individual effective exposure:** the job's LEX,8h minus the worker's binaural PAR, with the
GB/T 23466-2009 verdict of that level (:func:`tingbao.analysis.gbt23466.verdict`).

Levels in dB(A) re 20 µPa; attenuations and PAR in dB.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from collections.abc import Mapping

from tingbao.collector.registry.profiles import Profile, profile
from tingbao.edge import contract

from .gbt23466 import Verdict, verdict
from .iso4869_2 import OCTAVE_BANDS_HZ
from .spreadsheets import RowInvalid, RowProblems

__all__ = ["CAUTIONS", "COLUMN_ALIASES", "METHODS", "PAR_RANGE_DB", "Caution", "FitResult",
           "FitTest", "assess", "cautions", "individual_exposure", "parse_record", "passes"]

METHODS = {"f_mire": "F-MIRE", "reat": "REAT", "loudness_balance": "loudness balance"}
"""Method codes (stored as the ``method`` tag) and how they are printed."""
_METHOD_ALIASES = {"f-mire": "f_mire", "fmire": "f_mire", "f_mire": "f_mire", "mire": "f_mire",
                   "reat": "reat", "loudness_balance": "loudness_balance",
                   "loudness-balance": "loudness_balance", "loudness balance": "loudness_balance",
                   "lb": "loudness_balance", "响度平衡": "loudness_balance"}
PAR_RANGE_DB = (-10.0, 60.0)
"""A PAR outside this range is impossible for a passive protector (a row error, not a
caution): more than 60 dB would exceed bone conduction, and a protector does not amplify."""
UNCERTAINTY_RANGE_DB = (0.0, 20.0)
LOW_125_DB = 10.0
"""Caution: attenuation at 125 Hz below this (dB)."""
GAP_DB = 15.0
"""Caution: left/right PAR differing by this much or more (dB)."""
BAND_RANGE_DB = (0.0, 60.0)
"""Caution: a band attenuation outside this range (dB), or not finite."""

CAUTIONS = {
    "low_125": ("125 Hz 衰减低于 10 dB：佩戴过浅或漏声", "attenuation below 10 dB at 125 Hz: "
                "shallow fit or leak"),
    "left_right_gap": ("左右耳 PAR 相差 ≥ 15 dB：一侧佩戴不当", "left/right PAR differ by 15 dB or "
                       "more: one ear badly fitted"),
    "implausible_bands": ("频带衰减值不可信（负值、> 60 dB 或非数值）", "implausible band "
                          "attenuation (negative, above 60 dB or not a number)"),
}
"""Caution code → (Chinese, English) text."""

COLUMN_ALIASES = {
    "企业": "enterprise", "单位": "enterprise", "劳动者": "worker", "工号": "worker",
    "worker_pseudonym": "worker", "pseudonym": "worker", "劳动者代号": "worker",
    "日期": "date", "测试日期": "date", "test_date": "date", "护听器": "protector",
    "护听器型号": "protector", "方法": "method", "测试方法": "method",
    "左耳par": "par_left", "par_l": "par_left", "右耳par": "par_right", "par_r": "par_right",
    "双耳par": "par_binaural", "par": "par_binaural", "par_b": "par_binaural",
    "不确定度": "par_u", "uncertainty": "par_u", "par_uncertainty": "par_u", "工种": "job",
    "接触水平": "exposure_db", "lex": "exposure_db", "lex_8h": "exposure_db",
    "exposure": "exposure_db", "限值": "limit_db", "limit": "limit_db",
}
"""Header names a fit-test export may use (normalised by ``spreadsheets.normalise_header``)
→ the record's keys; ``att_125`` … are taken as they are."""

REQUIRED = ("worker", "date", "protector", "method", "par_binaural", "par_u")


@dataclasses.dataclass(frozen=True)
class FitTest:
    """One checked fit-test record (module docstring). ``bands`` maps octave midband (Hz) to
    the measured attenuation (dB; may be implausible: see the cautions)."""

    enterprise: str
    worker: str
    date: dt.date
    protector: str
    method: str
    par_binaural: float
    par_u: float
    par_left: float | None = None
    par_right: float | None = None
    bands: Mapping[int, float] = dataclasses.field(default_factory=dict)
    job: str | None = None
    exposure_db: float | None = None
    limit_db: float | None = None

    def as_json(self) -> str:
        """The record as canonical JSON (sorted keys; non-finite band values as strings):
        what is stored in the ``record`` field and compared to find duplicates."""
        bands = {str(f): (v if math.isfinite(v) else repr(v)) for f, v in
                 sorted(self.bands.items())}
        obj = {"enterprise": self.enterprise, "worker": self.worker,
               "date": self.date.isoformat(), "protector": self.protector,
               "method": self.method, "par_binaural": self.par_binaural, "par_u": self.par_u,
               "par_left": self.par_left, "par_right": self.par_right, "bands": bands,
               "job": self.job, "exposure_db": self.exposure_db, "limit_db": self.limit_db}
        return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


# ------------------------------------------------------------------------------- parsing
def _text(v) -> str:
    return "" if v is None else str(v).strip()


def _number(text_or_number, what: str, lo: float | None = None, hi: float | None = None,
            finite: bool = True) -> float:
    v = text_or_number
    if isinstance(v, bool):
        raise ValueError(f"{what} must be a number, not {v!r}")
    if isinstance(v, str):
        try:
            v = float(v.strip())
        except ValueError:
            raise ValueError(f"{what} {text_or_number!r} is not a number") from None
    if not isinstance(v, int | float):
        raise ValueError(f"{what} must be a number, not {type(v).__name__}")
    v = float(v)
    if finite and not math.isfinite(v):
        raise ValueError(f"{what} {v!r} is not a finite number")
    if lo is not None and hi is not None and math.isfinite(v) and not lo <= v <= hi:
        raise ValueError(f"{what} {v:g} dB is outside {lo:g} … {hi:g} dB (impossible value)")
    return v


def _date(v) -> dt.date:
    if isinstance(v, dt.date):
        return v
    text = _text(v).replace("/", "-").replace(".", "-")
    try:
        y, m, d = (int(x) for x in text.split("-"))
        return dt.date(y, m, d)
    except (ValueError, TypeError):
        raise ValueError(f"{v!r} is not a date YYYY-MM-DD") from None


def _method(v) -> str:
    key = _text(v).casefold().replace("_", "-") if v is not None else ""
    code = _METHOD_ALIASES.get(key) or _METHOD_ALIASES.get(key.replace("-", "_"))
    if code is None:
        raise ValueError(f"method {v!r}: one of F-MIRE, REAT, loudness_balance")
    return code


def parse_record(values: Mapping[str, object], *, row: int = 0,
                 enterprise: str | None = None, today: dt.date | None = None) -> FitTest:
    """Check one record (a CSV row's normalised columns, or an MQTT message's JSON object)
    and build a :class:`FitTest`; :class:`~tingbao.analysis.spreadsheets.RowInvalid` listing
    every problem by column otherwise. ``enterprise`` is used when the record names none (a
    CSV imported for one enterprise, the enterprise of an MQTT topic); when both are given
    they must agree. Empty strings count as absent. ``today``: a test date after it is
    refused."""
    p = RowProblems(row)

    def given(key: str) -> bool:
        return _text(values.get(key)) != ""

    for key in REQUIRED:
        if not given(key):
            p.add(key, "missing (required)")
    ent_text = _text(values.get("enterprise")) or enterprise or ""
    if enterprise and given("enterprise") and _text(values["enterprise"]) != enterprise:
        p.add("enterprise", f"{values['enterprise']!r} differs from {enterprise!r}")
    ent = None
    if not ent_text:
        p.add("enterprise", "missing: give the column or the enterprise to import for")
    else:
        ent = p.take("enterprise", lambda t: contract.check_id(t, "enterprise"), ent_text)
    worker = (p.take("worker", lambda t: contract.check_id(t, "worker pseudonym"),
                     _text(values["worker"])) if given("worker") else None)
    protector = (p.take("protector", lambda t: contract.check_id(t, "protector id"),
                        _text(values["protector"])) if given("protector") else None)
    date = p.take("date", _date, values["date"]) if given("date") else None
    if date is not None and today is not None and date > today:
        p.add("date", f"{date} is in the future")
    method = p.take("method", _method, values["method"]) if given("method") else None
    lo, hi = PAR_RANGE_DB
    par = {}
    for key in ("par_binaural", "par_left", "par_right"):
        if given(key):
            par[key] = p.take(key, lambda t, k=key: _number(t, k, lo, hi), values[key])
    u = (p.take("par_u", lambda t: _number(t, "uncertainty", *UNCERTAINTY_RANGE_DB),
                values["par_u"]) if given("par_u") else None)
    bands = {}
    for fc in OCTAVE_BANDS_HZ:
        key = f"att_{fc}"
        if given(key):
            v = p.take(key, lambda t, k=key: _number(t, k, finite=False), values[key])
            if v is not None:
                bands[fc] = v
    job = (p.take("job", lambda t: contract.check_id(t, "job"), _text(values["job"]))
           if given("job") else None)
    exposure = (p.take("exposure_db", lambda t: _number(t, "exposure", 0.0, 200.0),
                       values["exposure_db"]) if given("exposure_db") else None)
    limit = (p.take("limit_db", lambda t: _number(t, "limit", 40.0, 140.0), values["limit_db"])
             if given("limit_db") else None)
    p.check()
    return FitTest(ent, worker, date, protector, method, par["par_binaural"], u,
                   par.get("par_left"), par.get("par_right"), bands, job, exposure, limit)


def problems_text(e: RowInvalid) -> str:
    """The problems of a refused record as one line (the reason of a dead letter)."""
    return "; ".join(f"{x.column or 'record'}: {x.reason}" for x in e.errors)


# ------------------------------------------------------------------------------- judging
@dataclasses.dataclass(frozen=True)
class Caution:
    """One caution of a fit test: ``code`` (:data:`CAUTIONS`), its texts and the detail."""

    code: str
    detail: str

    @property
    def text_zh(self) -> str:
        return CAUTIONS[self.code][0]

    @property
    def text_en(self) -> str:
        return CAUTIONS[self.code][1]

    def __str__(self) -> str:
        return f"{self.text_zh} / {self.text_en} ({self.detail})"


def cautions(t: FitTest) -> tuple[Caution, ...]:
    """The cautions of a test (module docstring), in the order of :data:`CAUTIONS`."""
    out = []
    a125 = t.bands.get(125)
    if a125 is not None and math.isfinite(a125) and a125 < LOW_125_DB:
        out.append(Caution("low_125", f"125 Hz: {a125:g} dB < {LOW_125_DB:g} dB"))
    if t.par_left is not None and t.par_right is not None:
        gap = abs(t.par_left - t.par_right)
        if gap >= GAP_DB:
            out.append(Caution("left_right_gap", f"L {t.par_left:g} / R {t.par_right:g} dB: "
                                                 f"gap {gap:g} dB ≥ {GAP_DB:g}"))
    lo, hi = BAND_RANGE_DB
    bad = [f"{fc} Hz: {v!r}" for fc, v in sorted(t.bands.items())
           if not math.isfinite(v) or not lo <= v <= hi]
    if bad:
        out.append(Caution("implausible_bands", ", ".join(bad)))
    return tuple(out)


_TOL_DB = 1e-9
"""Decimal inputs (20.1 − 3.1) make binary rounding errors; the pass rule's equality holds
within this."""


def passes(par_binaural_db: float, par_u_db: float, exposure_db: float | None,
           limit_db: float) -> bool | None:
    """The pass rule: PAR − u ≥ exposure − limit (dB); None without an exposure."""
    if exposure_db is None:
        return None
    return par_binaural_db - par_u_db >= exposure_db - limit_db - _TOL_DB


def individual_exposure(lex_db: float, par_db: float, prof: Profile | str | None = None
                        ) -> tuple[float, Verdict]:
    """The worker's effective exposure LEX,8h − PAR (dB(A)) and its GB/T 23466 verdict."""
    level = float(lex_db) - float(par_db)
    return level, verdict(level, prof)


@dataclasses.dataclass(frozen=True)
class FitResult:
    """A judged fit test: the record, the exposure and limit used (dB(A)), ``passed`` (None:
    not judged), the ``cautions``, the individual effective exposure and its verdict (None
    without an exposure), and the profile."""

    test: FitTest
    exposure_db: float | None
    limit_db: float
    passed: bool | None
    cautions: tuple[Caution, ...]
    effective_db: float | None
    verdict: Verdict | None
    profile: str

    @property
    def required_par_db(self) -> float | None:
        """The PAR − u the pass rule asked for: exposure − limit (dB)."""
        return None if self.exposure_db is None else self.exposure_db - self.limit_db


def assess(t: FitTest, prof: Profile | str | None = None, *, exposure_db: float | None = None
           ) -> FitResult:
    """Judge ``t`` in profile ``prof`` (default CN-GBZ): the exposure is the record's own,
    else ``exposure_db`` (e.g. the job's stored LEX,8h); the limit the record's, else the
    profile's ``lex_limit_db``."""
    p = prof if isinstance(prof, Profile) else profile(prof or "CN-GBZ")
    exposure = t.exposure_db if t.exposure_db is not None else exposure_db
    limit = t.limit_db if t.limit_db is not None else p.lex_limit_db
    eff, v = (individual_exposure(exposure, t.par_binaural, p) if exposure is not None
              else (None, None))
    return FitResult(t, exposure, limit, passes(t.par_binaural, t.par_u, exposure, limit),
                     cautions(t), eff, v, p.id)
