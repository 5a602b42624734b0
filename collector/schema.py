"""The storage schema: every InfluxDB database, retention policy, measurement, tag and field
name tingbao uses, and the InfluxQL queries built on them (ARCHITECTURE.md, "Where things
are"). Nothing else in the tree spells these names; writers (the collector, rollups, dead
letters, the stack) and readers (the demo, analysis, dashboards, tests, bench) import them.

Layout (InfluxDB 1.x, also served by 2.x/3.x through ``/write`` and ``/query``)::

    database tingbao
      retention policy levels_1s (default, 90 days unless told)
        levels        enterprise, site, meter, channel   LEVEL fields, ea (Pa²·s), coverage (s),
                                                         duration_s, overload, seq, calibrated,
                                                         imported (only on imported points),
                                                         imp_<threshold> (impulse counts)
        bands         enterprise, site, meter, channel   one field per band (z_1000 …)
        meter_status  enterprise, site, meter            the agent's status counters
        meter_events  enterprise, site, meter            event, plus small extras
        dead_letters  collector, kind, stage             reason, topic, payload_b64, …
                      (stage one of DEAD_LETTER_STAGES)
        rollups_due   enterprise, site, meter, channel,  at (ns): a minute (the point's time)
                      writer                             still owed a rollup
      retention policy forever
        levels_1m     enterprise, site, meter, channel   SUM(ea), SUM(coverage), SUM(duration_s),
                                                         MAX of maxima, MIN(lafmin), n, laeq,
                                                         SUM of each imp_<threshold>

Energy, not decibels, adds up: ``ea`` is the A-weighted sound exposure of an interval in
Pa²·s (IEC 61672-1 clause 3.9), so the exposure of any period is ``SUM(ea)`` and
LEX,8h = 10 lg(SUM(ea) / (p0² · 28 800 s)) (GBZ/T 189.8-2007 clause 6, ISO 9612 clause 3.9).
The minute rollups hold the same sums, so a period of closed minutes is summed from
``levels_1m`` (60 times fewer points) and only the minute still running from ``levels``:
:func:`exposure_sums` builds both statements.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from tingbao.edge import contract

DATABASE = "tingbao"
RP_LEVELS = "levels_1s"
"""Default retention policy: the 1 s points and everything else the collector writes."""
RP_FOREVER = "forever"
"""Retention policy of the minute rollups (duration INF)."""
DEFAULT_RETENTION = "90d"
"""Duration of ``levels_1s`` unless a deployment sets another (InfluxQL duration)."""

LEVELS = "levels"
LEVELS_1M = "levels_1m"
BANDS = "bands"
STATUS = "meter_status"
EVENTS = "meter_events"
DEAD_LETTERS = "dead_letters"
ROLLUPS_DUE = "rollups_due"
"""Durable rollup bookkeeping: one point per (series, minute, writer) that a stored batch
touched and whose ``levels_1m`` point is not yet recomputed (``collector/rollups.py``). It is
written in the same ``/write`` as the batch's data, into the data's retention policy, and
deleted once the minute is rolled up."""

MEASUREMENT_OF_KIND = {"levels": LEVELS, "bands": BANDS, "status": STATUS, "events": EVENTS}
"""Contract message kind → measurement."""

SERIES_TAGS = ("enterprise", "site", "meter", "channel")
"""Tags of ``levels``, ``bands`` and ``levels_1m``: a point is (these tags, interval start)."""
METER_TAGS = ("enterprise", "site", "meter")
"""Tags of ``meter_status`` and ``meter_events``."""
DEAD_LETTER_TAGS = ("collector", "kind", "stage")
STAGE_FIT_TEST = "fit_test"
"""``stage`` of the dead letter of a refused fit-test message (``analysis/fit_test_import.py``:
not JSON, a bad record, an unknown enterprise)."""
DEAD_LETTER_STAGES = ("contract", "meter", "convert", "store", "internal", "audio",
                      STAGE_FIT_TEST)
"""Values of a dead letter's ``stage`` tag (``collector/deadletter.py`` says what each
means); a writer that names another stores ``internal``."""
MARKER_WRITER = "writer"
"""Tag of a ``rollups_due`` point besides :data:`SERIES_TAGS`: the collector (MQTT client id)
that wrote it."""
MARKER_AT = "at"
"""Field of a ``rollups_due`` point: the writer's wall clock when it made the marker, ns."""

LEVEL_FIELDS = contract.LEVEL_FIELDS
"""Decibel fields of a ``levels`` point (dB re 20 µPa), as in the contract."""
EA = "ea"
"""A-weighted sound exposure of the interval, Pa²·s."""
COVERAGE = "coverage"
"""Seconds of valid audio in the interval."""
DURATION = "duration_s"
"""Nominal interval length, s."""
SEQ = "seq"
IMPORTED = "imported"
"""Boolean field ``true`` on the ``levels`` and ``bands`` points stored by ``tingbao import``
(an inspector's recording, ``collector/recording_import.py``); live points do not have it.
Not a tag: the series (:data:`SERIES_TAGS`) of imported and live points are the same."""
IMPORT_SEQ_BASE = 2**62
"""``seq`` of an imported interval = this + its index in the recording (0, 1, …): a range no
agent's outbox sequence reaches, so an imported point is never taken for a live one."""

ROLLUP_AGGREGATES = (("ea", "SUM"), ("coverage", "SUM"), ("duration_s", "SUM"),
                     ("lafmax", "MAX"), ("lcpeak", "MAX"), ("lzpeak", "MAX"),
                     ("lasmax", "MAX"), ("lafmin", "MIN"))
"""(field, InfluxQL aggregate) of a ``levels_1m`` point; it also has ``n`` (the number of 1 s
points), ``laeq`` (from the summed energy over the summed coverage) and the sums of the
fields of :data:`ROLLUP_SUMMED_PREFIXES`."""

IMPULSE_PREFIX = "imp_"
"""Field-name prefix of the edge's impulse counts: integer fields of a ``levels`` point, the
number of C-weighted peak events (``tingbao.edge.impulses``) that started in the interval at
or above a threshold, one per threshold of the message's ``impulses``
(:func:`impulse_field`)."""
ROLLUP_SUMMED_PREFIXES = (IMPULSE_PREFIX,)
"""Every field of ``levels`` whose name starts with one of these is summed into the
``levels_1m`` field of the same name, as an integer (``SUM(/^imp_/)``: whatever thresholds
the meters count at, ``imp_120`` … ``imp_140`` by default). A minute whose points carry no
such field (older agents, counting off) has none; InfluxDB 1.6 answers the regex with no
column then, and the other aggregates are unchanged."""


def impulse_field(threshold_db: float) -> str:
    """The field of the impulse count at ``threshold_db`` (dB re 20 µPa, a multiple of 0.1 dB
    within the contract's level range): 120 → ``imp_120``, 137.5 → ``imp_137p5``. Raises
    ValueError (a ContractError) for other values."""
    (t,) = contract.check_impulse_thresholds([threshold_db])
    whole, tenth = divmod(round(t * 10), 10)
    return f"{IMPULSE_PREFIX}{whole}" + (f"p{tenth}" if tenth else "")


def impulse_thresholds(field_names: Iterable[str]) -> dict[float, str]:
    """The impulse-count fields among ``field_names`` (the columns of an answer, the keys of
    ``SHOW FIELD KEYS``; a ``sum_`` or ``max_`` in front is not stripped) as {threshold dB:
    field name}, lowest threshold first; other names (and names :func:`impulse_field` would
    not write) are left out."""
    out = {}
    for name in field_names:
        if not isinstance(name, str) or not name.startswith(IMPULSE_PREFIX):
            continue
        whole, _, tenth = name[len(IMPULSE_PREFIX):].partition("p")
        if not whole.isdigit() or (tenth and not (len(tenth) == 1 and tenth in "123456789")):
            continue
        try:
            t = int(whole) + int(tenth or 0) / 10
            if impulse_field(t) == name:
                out[round(t, 1)] = name
        except ValueError:
            continue
    return dict(sorted(out.items()))

MINUTE_NS = 60 * 1_000_000_000

# ------------------------------------------------------------------- analysis results
EXPOSURE = "exposure"
"""One point per (enterprise, kind, subject, profile) and shift, written by analysis
(``analysis/ledger.py``) into :data:`RP_FOREVER`; its time is the shift's start (UTC ns).
``kind`` is ``post`` (tags ``meter``, ``channel``) or ``job`` (tag ``job``)."""
EXPOSURE_TAGS = ("enterprise", "kind", "meter", "channel", "job", "profile")
"""Tags of an ``exposure`` point; a post has no ``job`` tag, a job no ``meter``/``channel``."""
EXPOSURE_CHAIN = "exposure_chain"
"""One point per (enterprise, local date): the SHA-256 of that day's exposure points and of
the previous day's chain point (the hash chain ``tingbao verify`` checks), in RP_FOREVER."""
ALERTS = "alerts"
"""One point per alert state change (open, acknowledged, resolved), in RP_FOREVER, at the
change's time; tags :data:`ALERT_TAGS`, fields ``job``, ``shift_date``, ``profile``,
``severity``, ``text_zh``, ``text_en``, ``evidence`` (JSON), ``who``, ``note``,
``raised_ns``, ``occurrence`` (``analysis/alert_store.py``)."""
ALERT_TAGS = ("enterprise", "id", "rule", "meter", "channel", "worker", "state")
"""Tags of an ``alerts`` point. ``meter``/``channel`` only on alerts about a post, ``worker``
(a pseudonym) only on alerts about a worker (the hearing-screening rules); points stored before
``worker`` existed have none and read as alerts about no worker."""

# ------------------------------------------------------- hearing protection and the pilots
# Issue 14. Times are UTC ns; a "local date" point is at that date's 00:00 in the
# enterprise's time zone. Ids (worker pseudonyms, protectors, posts) are contract.check_id
# safe, so they may be tags.
PROTECTION = "protection"
"""Protection measured at the ear by a two-channel agent (outer microphone at the ear, inner
one under the protector), one point per (meter, interval) in :data:`RP_LEVELS`, written by the
collector from ``tingbao.protection/1`` messages. Tags :data:`PROTECTION_TAGS`; fields
``outer_laeq``, ``inner_laeq`` (dB re 20 µPa), ``att_a`` (outer − inner, dB), ``required_db``,
``state`` (string: worn, removed, poor_fit, voice, quiet, no_audio), ``protector`` (string:
the id of the protector the worker wears, from the agent's ``[protection]`` settings),
``worn_s`` (seconds of the interval worn correctly), ``assessed_s`` (seconds whose state could
be decided), ``coverage``, ``duration_s``, ``seq``, ``calibrated`` and ``att_<fc>`` per band
(``att_125``, ``att_1000`` …, dB)."""
PROTECTION_TAGS = ("enterprise", "site", "meter", "worker")
WEAR_DAILY = "wear_daily"
"""A worker's measured wear time of one local date (``analysis/wear_time.py``), in
:data:`RP_FOREVER` at the date's start; tags :data:`WEAR_DAILY_TAGS`; fields ``worn_s``,
``assessed_s``, ``removed_s``, ``poor_fit_s``, ``voice_s``, ``share`` (worn_s/assessed_s)."""
WEAR_DAILY_TAGS = ("enterprise", "meter", "worker")
FIT_TESTS = "fit_tests"
"""One individual fit test (F-MIRE, REAT, loudness balance) in :data:`RP_FOREVER` at the test
date's start plus the record's index in its day (ns), so tests of one day never overwrite each
other; tags :data:`FIT_TEST_TAGS`; fields ``par_left``, ``par_right``, ``par_binaural``,
``par_u`` (dB), ``att_<fc>`` per octave band (dB), ``job``, ``exposure_db``, ``limit_db``,
``passed`` (bool), ``cautions`` (JSON list of codes), ``source`` (csv, mqtt), ``record``
(the checked record as JSON)."""
FIT_TEST_TAGS = ("enterprise", "worker", "protector", "method")
OBSERVATIONS = "wearing_observations"
"""One spot-check observation (a surveyor saw a worker at a post), in :data:`RP_FOREVER` at the
local date's start; tags :data:`OBSERVATION_TAGS`; fields ``wearing`` (bool), ``correct``
(bool: worn correctly; false when not wearing), ``protector``, ``source`` (file name),
``row`` (its row number), ``imported_ns``. One worker at one post on one date is one point:
a repeated row overwrites itself and is reported as a duplicate."""
OBSERVATION_TAGS = ("enterprise", "workshop", "post", "worker")
WEARING_RATE = "wearing_rate"
"""The correct-wearing rate of one group and period (``analysis/wearing_rate.py``), in
:data:`RP_FOREVER` at the period's start; tags :data:`WEARING_RATE_TAGS`: ``scope`` (enterprise,
industry, group, all), ``key`` (the enterprise id, industry, ``pilot``/``comparison`` or
``all``), ``period`` (``2025``, ``2025-Q3``, ``2025-07``), ``source`` (``observed``: spot
checks; ``edge``: wear time measured at the ear). Fields ``n`` (workers observed or worker-days
measured), ``x`` (worn correctly), ``rate``, ``lo95``, ``hi95`` (two-sided 95 %), ``lower95``
(one-sided 95 % lower bound), ``method`` (wilson, beta, gee_bias_reduced, design_effect),
``clusters`` (enterprises), ``deff``, ``icc``, ``milestone`` (the milestone of the period's
year, %, absent when none), ``met`` (bool: lower95 ≥ milestone), ``computed_ns``; source
``edge`` also ``time_share`` (Σ worn_s / Σ assessed_s of the worker-days, %), and ``note``
(string, absent unless the method fell back: its reason, e.g. design effect instead of GEE).
Points written before these two fields existed lack them."""
WEARING_RATE_TAGS = ("scope", "key", "period", "source")
PILOT_DID = "pilot_did"
"""The pilot-vs-comparison difference in differences of one (baseline, follow-up) pair of
periods, in :data:`RP_FOREVER` at the follow-up's start; tags :data:`PILOT_DID_TAGS`; fields
``did_pp``, ``lo_pp``, ``hi_pp`` (percentage points, 95 %), ``p``, ``method`` (cluster_robust,
wild_cluster_bootstrap), ``enterprises_pilot``, ``enterprises_comparison``, ``n``, and the
four cell rates ``pilot_base``, ``pilot_follow``, ``comparison_base``, ``comparison_follow``
(%), ``note`` (only when there is no test: no variation, or a standard error of 0),
``computed_ns``."""
PILOT_DID_TAGS = ("baseline", "followup")
AUDIOGRAMS = "audiograms"
"""One pure-tone audiogram, in :data:`RP_FOREVER` at the exam's local date; tags
:data:`AUDIOGRAM_TAGS`; fields ``age`` (years), ``sex`` (``M``/``F``), ``job``,
``noise_years``, ``baseline`` (bool: the worker's reference audiogram), ``kind`` (pre_placement,
periodic, …) and ``l_500`` … ``l_6000``, ``r_500`` … ``r_6000`` (dB HL at 0.5, 1, 2, 3, 4,
6 kHz), ``source``, ``row``."""
AUDIOGRAM_TAGS = ("enterprise", "worker")
SCREENING = "screening"
"""The screening result of one audiogram (``analysis/screening.py``), at the audiogram's time;
tags :data:`SCREENING_TAGS`; fields ``hfta_db`` (binaural high-frequency average, age/sex
corrected, GBZ 49), ``speech_left_db``, ``speech_right_db``, ``better_ear_db``, ``grade``
(none, mild, moderate, severe), ``suspected`` (bool), ``susceptible`` (bool, GBZ 188),
``sts_left``, ``sts_right``, ``sts_age_left``, ``sts_age_right`` (bool, OSHA),
``lex_db``, ``interval_years``, ``next_due`` (ISO date), ``overdue`` (bool), ``computed_ns``."""
SCREENING_TAGS = ("enterprise", "worker")


# ------------------------------------------------------------------------------- quoting
def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(value: str) -> str:
    """An InfluxQL string literal in single quotes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def source(measurement: str, rp: str | None = None, db: str | None = None) -> str:
    """A FROM clause target: ``"db"."rp"."measurement"`` (or shorter when rp/db are None;
    ``db..measurement`` is not used: a missing rp means the default one)."""
    parts = [quote_ident(measurement)]
    if rp:
        parts.insert(0, quote_ident(rp))
        if db:
            parts.insert(0, quote_ident(db))
    return ".".join(parts)


def where_tags(pairs: Iterable[tuple[str, str]]) -> str:
    """``"tag" = 'value' AND …`` of (tag, value) pairs (values quoted, never interpolated)."""
    return " AND ".join(f"{quote_ident(t)} = {quote_string(v)}" for t, v in pairs)


def where_any(tag: str, values: Iterable[str]) -> str:
    """``("tag" = 'a' OR "tag" = 'b' …)``; a regex would need escaping, equality does not."""
    values = list(values)
    if not values:
        raise ValueError(f"no values for tag {tag!r}")
    return "(" + " OR ".join(f"{quote_ident(tag)} = {quote_string(v)}" for v in values) + ")"


def _scope(enterprise: str | Iterable[str] | None, meters: Iterable[str] | None
           ) -> list[str]:
    """WHERE conditions for one enterprise (a string), several (an iterable: OR of
    equalities) and/or some meters."""
    cond = []
    if isinstance(enterprise, str):
        cond.append(where_tags([("enterprise", contract.check_id(enterprise, "enterprise"))]))
    elif enterprise is not None:
        cond.append(where_any("enterprise", [contract.check_id(e, "enterprise")
                                             for e in enterprise]))
    if meters is not None:
        cond.append(where_any("meter", [contract.check_id(m, "meter") for m in meters]))
    return cond


def _group_by(tags: Iterable[str]) -> str:
    """``GROUP BY "a", "b"`` of tag names."""
    return "GROUP BY " + ", ".join(quote_ident(t) for t in tags)


# ------------------------------------------------------------------------------- queries
@dataclasses.dataclass(frozen=True)
class Period:
    """A half-open time span [start_ns, end_ns), UTC ns."""

    start_ns: int
    end_ns: int

    def __post_init__(self):
        if not (isinstance(self.start_ns, int) and isinstance(self.end_ns, int)):
            raise TypeError("Period bounds are integer ns")
        if self.end_ns <= self.start_ns:
            raise ValueError(f"empty period: end {self.end_ns} <= start {self.start_ns}")

    def where(self) -> str:
        return f"time >= {self.start_ns} AND time < {self.end_ns}"


def rollup_select(from_: str) -> str:
    """SELECT of the minute aggregates of :data:`ROLLUP_AGGREGATES` (plus ``n``, and
    ``sum_<field>`` of every field of :data:`ROLLUP_SUMMED_PREFIXES`)."""
    cols = ", ".join(f"{fn}({quote_ident(f)}) AS {quote_ident(f)}"
                     for f, fn in ROLLUP_AGGREGATES)
    sums = "".join(f", SUM(/^{prefix}/)" for prefix in ROLLUP_SUMMED_PREFIXES)
    return (f"SELECT {cols}{sums}, COUNT({quote_ident(SEQ)}) AS {quote_ident('n')} "
            f"FROM {from_}")


def rollup_group_by() -> str:
    return ("GROUP BY time(1m), " + ", ".join(quote_ident(t) for t in SERIES_TAGS)
            + " fill(none)")


def exposure_sums(period: Period, *, enterprise: str | Iterable[str] | None = None,
                  meters: Iterable[str] | None = None, rollups: bool = True,
                  levels_rp: str | None = None, rollup_rp: str | None = RP_FOREVER,
                  fine_from_ns: int | None = None, count: bool = True) -> list[str]:
    """InfluxQL statements whose answers add up to ``SUM(ea)`` (Pa²·s), ``SUM(coverage)`` (s)
    and ``COUNT(ea)`` per (meter, channel) over ``period``.

    With ``rollups`` the whole minutes inside the period come from ``levels_1m`` (exact:
    energies add) and only the ragged edges (the part of a minute at either end, such as the
    minute still running) from the 1 s ``levels``; the caller sums the rows of all
    statements per (meter, channel). Without ``rollups`` one statement over ``levels``.
    ``fine_from_ns``: whole minutes from then on are read from the 1 s points too (their
    rollups may not be written yet). Columns: ``ea``, ``coverage`` and, unless ``count`` is
    False (a third aggregate costs InfluxDB about a third more), ``n``; tags:
    :data:`SERIES_TAGS`."""
    scope = _scope(enterprise, meters)
    group = _group_by(SERIES_TAGS)

    def stmt(from_: str, start: int, end: int, n_col: str) -> str:
        cond = " AND ".join([*scope, Period(start, end).where()])
        n = f", {n_col} AS {quote_ident('n')}" if count else ""
        return (f"SELECT SUM({quote_ident(EA)}) AS {quote_ident(EA)}, "
                f"SUM({quote_ident(COVERAGE)}) AS {quote_ident(COVERAGE)}{n} "
                f"FROM {from_} WHERE {cond} {group}")

    fine = source(LEVELS, levels_rp)
    count_1s = f"COUNT({quote_ident(EA)})"
    whole, edges = (split_minutes(period, fine_from_ns) if rollups else (None, [period]))
    out = []
    if whole is not None:
        out.append(stmt(source(LEVELS_1M, rollup_rp), whole.start_ns, whole.end_ns,
                        f"SUM({quote_ident('n')})"))
    out += [stmt(fine, e.start_ns, e.end_ns, count_1s) for e in edges]
    return out


def split_minutes(period: Period, fine_from_ns: int | None = None
                  ) -> tuple[Period | None, list[Period]]:
    """``period`` as its whole UTC minutes (None when it holds none) and the ragged edges
    outside them (the part of a minute at either end, such as the minute still running).
    Whole minutes from ``fine_from_ns`` on count as edge too: minutes so recent that their
    rollup may not be written yet (the collector rolls a minute up once it is quiet)."""
    first = -(-period.start_ns // MINUTE_NS) * MINUTE_NS  # first whole minute
    last = period.end_ns - period.end_ns % MINUTE_NS  # end of the last whole minute
    if fine_from_ns is not None:
        last = max(first, min(last, fine_from_ns - fine_from_ns % MINUTE_NS))
    if last <= first:
        return None, [period]
    edges = []
    if period.start_ns < first:
        edges.append(Period(period.start_ns, first))
    if last < period.end_ns:
        edges.append(Period(last, period.end_ns))
    return Period(first, last), edges


def period_peaks(period: Period, *, enterprise: str | None = None,
                 meters: Iterable[str] | None = None, levels_rp: str | None = None,
                 rollup_rp: str | None = RP_FOREVER, fine_from_ns: int | None = None
                 ) -> list[str]:
    """InfluxQL statements whose answers give, per (meter, channel) over ``period``, the
    highest LCpeak, LZpeak and LAFmax (dB; columns ``max_lcpeak``, ``max_lzpeak``,
    ``max_lafmax``) and the SUM of every impulse-count field (columns ``sum_imp_…``): the
    whole minutes from ``levels_1m``, the ragged edges from ``levels``, as
    :func:`exposure_sums`. Combine the rows with :func:`add_peaks`."""
    scope = _scope(enterprise, meters)
    group = _group_by(SERIES_TAGS)
    cols = (f"MAX({quote_ident('lcpeak')}) AS max_lcpeak, MAX({quote_ident('lzpeak')}) AS "
            f"max_lzpeak, MAX({quote_ident('lafmax')}) AS max_lafmax")

    def stmt(from_: str, p: Period) -> list[str]:
        cond = " AND ".join([*scope, p.where()])
        return [f"SELECT {cols} FROM {from_} WHERE {cond} {group}",
                f"SELECT SUM(/^{IMPULSE_PREFIX}/) FROM {from_} WHERE {cond} {group}"]

    whole, edges = split_minutes(period, fine_from_ns)
    out = [] if whole is None else stmt(source(LEVELS_1M, rollup_rp), whole)
    for e in edges:
        out += stmt(source(LEVELS, levels_rp), e)
    return out


def add_peaks(rows: Iterable[Mapping]) -> dict[tuple[str, str], dict[str, float]]:
    """Combine :func:`period_peaks` rows per (meter, channel): maxima of ``max_*`` columns,
    sums of ``sum_imp_*`` columns, as ``{"lcpeak": dB, "lzpeak": dB, "lafmax": dB,
    "imp_120": count, …}`` (a column absent everywhere is absent)."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for r in rows:
        acc = out.setdefault((r["meter"], r["channel"]), {})
        for k, v in r.items():
            if v is None:
                continue
            if k.startswith("max_"):
                name = k[4:]
                acc[name] = max(acc.get(name, -float("inf")), float(v))
            elif k.startswith("sum_" + IMPULSE_PREFIX):
                name = k[4:]
                acc[name] = acc.get(name, 0) + int(v)
    return out


def minute_parts(period: Period, step_s: int, *, enterprise: str | None = None,
                 meters: Iterable[str] | None = None, rollup_rp: str | None = RP_FOREVER
                 ) -> str:
    """SUM(ea) and SUM(coverage) per (meter, channel) and per ``step_s`` seconds (a whole
    number of minutes) of ``period``'s whole minutes, aligned to the period's start: the
    sub-period samples ISO 9612's job-based strategy takes the spread of."""
    if step_s % 60 or step_s <= 0:
        raise ValueError(f"step {step_s} s is not a whole number of minutes")
    whole, _ = split_minutes(period)
    if whole is None:
        raise ValueError("the period holds no whole minute")
    offset_s = (whole.start_ns // 1_000_000_000) % step_s
    cond = " AND ".join([*_scope(enterprise, meters), whole.where()])
    return (f"SELECT SUM({quote_ident(EA)}) AS {quote_ident(EA)}, SUM({quote_ident(COVERAGE)})"
            f" AS {quote_ident(COVERAGE)} FROM {source(LEVELS_1M, rollup_rp)} WHERE {cond} "
            f"GROUP BY time({step_s}s, {offset_s}s), "
            + ", ".join(quote_ident(t) for t in SERIES_TAGS) + " fill(none)")


def latest_levels(*, since: str = "1h", enterprise: str | None = None,
                  meters: Iterable[str] | None = None, levels_rp: str | None = None) -> str:
    """The newest LAeq, LAFmax and LCpeak (dB) of each (meter, channel), with the exposure
    ``ea`` (Pa²·s), ``coverage`` (s) and number ``n`` of 1 s points since ``now() - since``
    (an InfluxQL duration literal such as ``1h``)."""
    if not since or not since[:-1].isdigit() or since[-1] not in "smhdw":
        raise ValueError(f"since {since!r} is not an InfluxQL duration such as 1h or 30m")
    cond = " AND ".join([*_scope(enterprise, meters), f"time > now() - {since}"])
    return (f"SELECT LAST({quote_ident('laeq')}) AS laeq, LAST({quote_ident('lafmax')}) AS "
            f"lafmax, LAST({quote_ident('lcpeak')}) AS lcpeak, COUNT({quote_ident(EA)}) AS n, "
            f"SUM({quote_ident(EA)}) AS ea, SUM({quote_ident(COVERAGE)}) AS coverage "
            f"FROM {source(LEVELS, levels_rp)} WHERE {cond} GROUP BY "
            + ", ".join(quote_ident(t) for t in SERIES_TAGS))


def dead_letters(*, since_ns: int | None = None, stage: str | None = None,
                 limit: int = 100) -> str:
    """The newest dead letters (reason, topic, payload size and hash), newest first."""
    cond = []
    if since_ns is not None:
        cond.append(f"time >= {int(since_ns)}")
    if stage is not None:
        cond.append(where_tags([("stage", stage)]))
    where = f" WHERE {' AND '.join(cond)}" if cond else ""
    return (f"SELECT * FROM {source(DEAD_LETTERS)}{where} ORDER BY time DESC "
            f"LIMIT {int(limit)}")


def add_sums(rows: Iterable[Mapping]) -> dict[tuple[str, str], dict[str, float]]:
    """Sum the rows of :func:`exposure_sums` answers per (meter, channel):
    ``{(meter, channel): {"ea": Pa²·s, "coverage": s, "n": points}}``."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for r in rows:
        key = (r["meter"], r["channel"])
        acc = out.setdefault(key, {"ea": 0.0, "coverage": 0.0, "n": 0})
        acc["ea"] += float(r.get(EA) or 0.0)
        acc["coverage"] += float(r.get(COVERAGE) or 0.0)
        acc["n"] += int(r.get("n") or 0)
    return out


# ------------------------------------------------------------------------------- dose
DOSE = "dose"
"""Column of a :func:`dose_sums` answer: the dose as a fraction (1.0 = 100 %)."""


def _plain_number(x: float, what: str) -> str:
    """``x`` in plain decimal notation (InfluxQL reads neither ``1e-05`` nor ``inf``)."""
    from decimal import Decimal

    x = float(x)
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError(f"{what} {x!r} is not a finite number")
    return format(Decimal(repr(x)), "f")


def dose_sums(period: Period, *, criterion_db: float, exchange_db: float, threshold_db: float,
              enterprise: str | None = None, meters: Iterable[str] | None = None,
              levels_rp: str | None = None) -> str:
    """InfluxQL statement for a noise dosimeter's dose per (meter, channel) over ``period``
    (29 CFR 1910.95 Appendix A; NIOSH 98-126): column :data:`DOSE`, the dose fraction
    Σ coverage · 2^((laeq − Lc)/q) / 28 800 s over the 1 s ``levels`` points whose ``laeq`` ≥
    ``threshold_db`` (1.0 = 100 %, a dose D % is 100 times it), tags :data:`SERIES_TAGS`.
    ``criterion_db`` Lc (dB(A): 100 % for 8 h at it), ``exchange_db`` q (dB), ``threshold_db``
    (dB(A); 0 counts every level) come from the regulatory profile (the analysis reads them;
    the collector knows no regulation). A point's ``laeq`` is the level over its ``coverage``
    seconds of valid audio, so coverage · 2^((laeq − Lc)/q) is that point's time weighted by
    its allowed time; points without audio (no ``laeq``) add nothing.

    Per-second resolution is the dosimeter's own: the threshold and a 5 dB exchange apply to
    each 1 s level. The minute rollups cannot give this sum: ``levels_1m`` holds the minute's
    summed energy, and neither a threshold (a minute at 79 dB(A) may hold seconds at 95) nor
    an exchange other than 10 lg 2 dB (2^(L/q) of a mean is not the mean of 2^(L/q)) can be
    applied to a sum of energies. So the statement reads ``levels`` (RP ``levels_rp``, the
    default one unless told) and the period must lie within its retention.

    InfluxDB 1.x cannot wrap an aggregate in POW, so the per-point term is a subquery and the
    outer query sums it; both keep the GROUP BY of :data:`SERIES_TAGS` (checked on InfluxDB
    1.6: the tags reach the outer rows). The numbers are written in plain decimals (InfluxQL
    reads no scientific notation)."""
    if not (exchange_db > 0 and criterion_db > 0 and threshold_db >= 0):
        raise ValueError(f"criterion {criterion_db!r} dB and exchange rate {exchange_db!r} dB "
                         f"must be > 0, threshold {threshold_db!r} dB >= 0")
    lc = _plain_number(criterion_db, "criterion level")
    q = _plain_number(exchange_db, "exchange rate")
    threshold = _plain_number(threshold_db, "threshold")
    laeq, cov = quote_ident("laeq"), quote_ident(COVERAGE)
    group = _group_by(SERIES_TAGS)
    when = period.where()
    inner_cond = " AND ".join([*_scope(enterprise, meters), f"{laeq} >= {threshold}", when])
    term = f"{cov} * POW(2, ({laeq} - {lc}) / {q}) / 28800"  # 8 h = 28 800 s
    inner = (f"SELECT {term} AS {quote_ident('d')} FROM {source(LEVELS, levels_rp)} "
             f"WHERE {inner_cond} {group}")
    return (f"SELECT SUM({quote_ident('d')}) AS {quote_ident(DOSE)} FROM ({inner}) "
            f"WHERE {when} {group}")


# ------------------------------------------------------- hearing protection and the pilots
def observations_query(start_ns: int, end_ns: int, enterprises: Iterable[str] | None = None
                       ) -> str:
    """The stored :data:`OBSERVATIONS` in [start_ns, end_ns) (UTC ns), of ``enterprises``
    when given: columns ``time``, ``wearing``, ``correct`` and the tags of
    :data:`OBSERVATION_TAGS`."""
    cond = [*_scope(enterprises, None), Period(start_ns, end_ns).where()]
    return (f"SELECT {quote_ident('wearing')}, {quote_ident('correct')} FROM "
            f"{source(OBSERVATIONS, RP_FOREVER)} WHERE {' AND '.join(cond)} "
            + _group_by(OBSERVATION_TAGS))


def wear_daily_query(start_ns: int, end_ns: int, enterprises: Iterable[str] | None = None
                     ) -> str:
    """The stored :data:`WEAR_DAILY` points in [start_ns, end_ns) (UTC ns), of
    ``enterprises`` when given: columns ``time``, ``worn_s``, ``assessed_s`` (s) and the tags
    of :data:`WEAR_DAILY_TAGS`."""
    cond = [*_scope(enterprises, None), Period(start_ns, end_ns).where()]
    return (f"SELECT {quote_ident('worn_s')}, {quote_ident('assessed_s')} FROM "
            f"{source(WEAR_DAILY, RP_FOREVER)} WHERE {' AND '.join(cond)} "
            + _group_by(WEAR_DAILY_TAGS))


def wear_sums(period: Period, enterprise: str, states: Iterable[str], rp: str | None = None
              ) -> list[str]:
    """InfluxQL statements of the :data:`PROTECTION` sums of ``period`` per (meter, worker)
    of ``enterprise``: first ``worn`` = SUM(worn_s) and ``assessed`` = SUM(assessed_s) (s),
    then for each of ``states`` (edge states such as ``removed``) SUM(assessed_s) of the
    points in that state AS ``assessed``, in that order."""
    src = source(PROTECTION, rp)
    scope = " AND ".join([where_tags([("enterprise", contract.check_id(
        enterprise, "enterprise"))]), period.where()])
    group = _group_by(("meter", "worker"))
    worn, assessed = quote_ident("worn_s"), quote_ident("assessed_s")
    out = [f'SELECT SUM({worn}) AS "worn", SUM({assessed}) AS "assessed" FROM {src} '
           f"WHERE {scope} {group}"]
    for state in states:
        out.append(f'SELECT SUM({assessed}) AS "assessed" FROM {src} WHERE {scope} AND '
                   f'{quote_ident("state")} = {quote_string(state)} {group}')
    return out


_POST_GROUP = _group_by(("meter", "channel"))


def energy_sums_query(measurement: str, level_fields: Iterable[tuple[str, str]], weight: str,
                      period: Period, enterprise: str, extra_cond: str = "") -> str:
    """Per (meter, channel) over ``period``, for each (key, level field): ``e_<key>`` =
    SUM(10^(0.1 L)·w) and ``d_<key>`` = SUM(w) over the points that have L (L in dB, ``w`` the
    ``weight`` field, s): the energy mean 10 lg(e/d) dB. A subquery makes the per-point terms
    (InfluxDB 1.x cannot wrap an aggregate in POW), the outer query sums them."""
    q = quote_ident
    inner_cols, outer_cols = [], []
    for key, f in level_fields:
        inner_cols.append(f"POW(10, {q(f)} / 10) * {q(weight)} AS {q('e_' + key)}")
        inner_cols.append(f"{q(f)} * 0 + {q(weight)} AS {q('d_' + key)}")
        outer_cols += [f"SUM({q('e_' + key)}) AS {q('e_' + key)}",
                       f"SUM({q('d_' + key)}) AS {q('d_' + key)}"]
    cond = " AND ".join(c for c in (where_tags([("enterprise", enterprise)]),
                                    extra_cond, period.where()) if c)
    inner = (f"SELECT {', '.join(inner_cols)} FROM {source(measurement)} WHERE {cond} "
             f"{_POST_GROUP}")
    return f"SELECT {', '.join(outer_cols)} FROM ({inner}) WHERE {period.where()} {_POST_GROUP}"


def band_sums_query(period: Period, enterprise: str, fraction: int,
                    labels: Iterable[str]) -> str:
    """Per (meter, channel) over ``period``, for each band label ``x`` of ``labels`` (nominal
    mid-band frequencies such as ``"1000"``) of the :data:`BANDS` points of ``fraction``
    (1: octaves, 3: 1/3 octaves): ``e_x`` = Σ 10^(0.1 L_x)·duration_s and ``d_x`` = Σ
    duration_s of the points that have the band (s); the band's energy mean is 10 lg(e_x/d_x)
    dB (:func:`energy_sums_query`)."""
    from .lineprotocol import band_field  # lineprotocol imports this module

    if fraction not in (1, 3):
        raise ValueError(f"fraction {fraction!r}: 1 or 3")
    return energy_sums_query(BANDS, [(lbl, band_field(lbl)) for lbl in labels], DURATION,
                             period, enterprise, f"{quote_ident('fraction')} = {fraction}")


def lc_sums_query(period: Period, enterprise: str) -> str:
    """Per (meter, channel) over ``period``, ``e_lc`` = Σ 10^(0.1 LCeq)·coverage and ``d_lc``
    = Σ coverage (s) of the 1 s :data:`LEVELS` points with an ``lceq`` (the rollups hold only
    A-weighted energy)."""
    return energy_sums_query(LEVELS, [("lc", "lceq")], COVERAGE, period, enterprise)


LEX_8H = "lex_8h"
"""Field of an :data:`EXPOSURE` point: LEX,8h, dB(A)."""


def exposure_at(enterprise: str, profile: str, time_ns: int) -> str:
    """Every :data:`EXPOSURE` point of ``enterprise`` under ``profile`` at exactly
    ``time_ns`` (a shift's start, UTC ns), ``GROUP BY *`` (tags in the series)."""
    cond = where_tags([("enterprise", enterprise), ("profile", profile)])
    return (f"SELECT * FROM {source(EXPOSURE, RP_FOREVER)} WHERE {cond} "
            f"AND time = {int(time_ns)} GROUP BY *")


def job_lex_latest(enterprise: str, job: str, profile: str, before_ns: int) -> str:
    """The ``lex_8h`` (dB(A)) of ``job``'s latest :data:`EXPOSURE` point of kind ``job`` under
    ``profile`` before ``before_ns`` (UTC ns): one row or none."""
    cond = where_tags([("enterprise", enterprise), ("kind", "job"), ("job", job),
                       ("profile", profile)])
    return (f"SELECT {quote_ident(LEX_8H)} FROM {source(EXPOSURE, RP_FOREVER)} WHERE "
            f"{cond} AND time < {int(before_ns)} ORDER BY time DESC LIMIT 1")


def job_lex_all(profile: str, enterprise: str | None = None) -> str:
    """Every stored ``lex_8h`` (dB(A)) of kind ``job`` under ``profile`` (of ``enterprise``
    when given), grouped by enterprise and job."""
    cond = [("kind", "job"), ("profile", profile)]
    if enterprise is not None:
        cond.append(("enterprise", enterprise))
    return (f"SELECT {quote_ident(LEX_8H)} FROM {source(EXPOSURE, RP_FOREVER)} WHERE "
            f"{where_tags(cond)} " + _group_by(("enterprise", "job")))


FIT_TEST_RECORD = "record"
"""Field of a :data:`FIT_TESTS` point: the checked record as canonical JSON."""


def fit_test_records(enterprise: str, period: Period) -> str:
    """The ``record`` field of ``enterprise``'s :data:`FIT_TESTS` points in ``period``."""
    return (f"SELECT {quote_ident(FIT_TEST_RECORD)} FROM {source(FIT_TESTS, RP_FOREVER)} "
            f"WHERE {where_tags([('enterprise', enterprise)])} AND {period.where()}")


def fit_tests_query(enterprise: str, period: Period) -> str:
    """Every :data:`FIT_TESTS` point of ``enterprise`` in ``period``, grouped by
    :data:`FIT_TEST_TAGS`."""
    return (f"SELECT * FROM {source(FIT_TESTS, RP_FOREVER)} WHERE "
            f"{where_tags([('enterprise', enterprise)])} AND {period.where()} "
            + _group_by(FIT_TEST_TAGS))


def audiograms_query(*, enterprise: str | None = None, worker: str | None = None) -> str:
    """Every stored :data:`AUDIOGRAMS` point (of ``enterprise`` / ``worker`` when given)."""
    cond = [(k, contract.check_id(v, k)) for k, v in (("enterprise", enterprise),
                                                       ("worker", worker)) if v is not None]
    q = f"SELECT * FROM {source(AUDIOGRAMS, RP_FOREVER)}"
    return q + (" WHERE " + where_tags(cond) if cond else "")


def wearing_rates_query(period: Period) -> str:
    """Every :data:`WEARING_RATE` point whose period starts in ``period``, grouped by
    :data:`WEARING_RATE_TAGS`."""
    return (f"SELECT * FROM {source(WEARING_RATE, RP_FOREVER)} WHERE {period.where()} "
            + _group_by(WEARING_RATE_TAGS))


def pilot_did_query(period: Period) -> str:
    """Every :data:`PILOT_DID` point whose follow-up starts in ``period``, grouped by
    :data:`PILOT_DID_TAGS`."""
    return (f"SELECT * FROM {source(PILOT_DID, RP_FOREVER)} WHERE {period.where()} "
            + _group_by(PILOT_DID_TAGS))


def pilot_counts_queries(period: Period) -> dict[str, str]:
    """The per-enterprise counts of the pilot evaluation over ``period``
    (``analysis/pilot_results.py``), one statement each:

    * ``audiograms``: ``n`` exams per (enterprise, worker) of :data:`AUDIOGRAMS`;
    * ``screening``: every :data:`SCREENING` point per (enterprise, worker);
    * ``fit_tests``: ``passed``, ``cautions`` of every :data:`FIT_TESTS` point per
      (enterprise, worker);
    * ``observations``: ``n`` observations per (enterprise, worker) of :data:`OBSERVATIONS`;
    * ``observations_correct``: ``n`` observations worn correctly per enterprise;
    * ``wear_days``: ``n`` measured worker-days per (enterprise, worker) of
      :data:`WEAR_DAILY` (``COUNT(assessed_s)``: always written)."""
    q = quote_ident
    when = period.where()
    by_worker = _group_by(("enterprise", "worker"))
    obs = source(OBSERVATIONS, RP_FOREVER)
    return {
        "audiograms": (f"SELECT COUNT({q('age')}) AS n FROM {source(AUDIOGRAMS, RP_FOREVER)} "
                       f"WHERE {when} {by_worker}"),
        "screening": f"SELECT * FROM {source(SCREENING, RP_FOREVER)} WHERE {when} {by_worker}",
        "fit_tests": (f"SELECT {q('passed')}, {q('cautions')} FROM "
                      f"{source(FIT_TESTS, RP_FOREVER)} WHERE {when} {by_worker}"),
        "observations": f"SELECT COUNT({q('wearing')}) AS n FROM {obs} WHERE {when} {by_worker}",
        "observations_correct": (f"SELECT COUNT({q('correct')}) AS n FROM {obs} WHERE {when} AND "
                                 f"{q('correct')} = true " + _group_by(("enterprise",))),
        "wear_days": (f"SELECT COUNT({q('assessed_s')}) AS n FROM "
                      f"{source(WEAR_DAILY, RP_FOREVER)} WHERE {when} {by_worker}"),
    }
