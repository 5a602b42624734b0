"""The live page as a Starlette application (``tingbao serve`` runs it under uvicorn).

Routes (Chinese by default, ``?lang=en`` switches and is remembered in the ``lang`` cookie):

=====================================  ==================================================
``GET /``                              redirect to the first enterprise's floor view
``GET /floor/{e}[?site=]``             floor view: one tile per meter channel, by workshop
``GET /api/floor/{e}``                 the floor snapshot as JSON (:meth:`FloorData.snapshot`)
``GET /api/floor/{e}/history``         minute LAeq of one post (``meter``, ``channel``,
                                       ``minutes``)
``GET /events/floor/{e}``              SSE, ``event: floor`` with the snapshot every second
``GET /alerts``                        alerts, filters ``enterprise state rule meter``
``GET /events/alerts``                 SSE, ``event: alerts`` with the list every second
``POST /alerts/{id}/ack|resolve``      inspector only, CSRF token, field ``note``
``GET|POST /login``, ``POST /logout``  sign in / out
``GET /exposure/{e}?from=&to=``        LEX,8h ± U per post and job, grades, spectra
``GET /reports/{e}[/{file}]``          the inspector's reports of ``--reports DIR``
``GET /pilot?from=&to=``               pilot evaluation: wearing rates with intervals and
                                       milestone verdicts, DiD, screening, fit tests
``GET /api/pilot?from=&to=``           the same as JSON (:mod:`.pilot_data`)
=====================================  ==================================================

Snapshots and alert lists are computed once per key and second for every client
(:class:`~.data.SharedCache`). Blocking InfluxDB reads run in the thread pool.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import secrets
from collections.abc import Callable
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from tingbao.analysis import pilot_results as pr
from tingbao.analysis.alert_store import (
    STATES,
    AlertStore,
    InvalidTransition,
    NotPublished,
    UnknownAlert,
)
from tingbao.collector.registry.site import Registry

from . import auth
from .data import FloorData, SharedCache
from .pilot_data import PilotData, to_json
from .texts import PILOT_TEXT, STATE_TEXT, T

STATIC = Path(__file__).parent / "static"
LANGS = ("zh", "en")
_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def create_app(reg: Registry, store: AlertStore, data: FloorData, *,
               users: dict[str, auth.User] | None = None, reports_dir: str | Path | None = None,
               session_minutes: float = 60.0, secret: str | None = None,
               sse_period_s: float = 1.0) -> Starlette:
    """The application over a registry, an alert store (its writer stores changes; its
    publisher, if any, publishes them) and the floor reads."""
    users = users or {}
    max_age_s = session_minutes * 60.0
    cache = SharedCache(ttl_s=sse_period_s)
    env = Environment(loader=PackageLoader("tingbao.dashboards.live", "templates"),
                      autoescape=select_autoescape(["html"]))
    enterprises = [e.id for e in reg.enterprises]
    floor_enterprises = [e for e in reg.enterprises if reg.meters_of(e.id)]
    """The navigation's floors: enterprises with meters (survey-only ones have no floor)."""

    def lang_of(request: Request) -> str:
        lang = request.query_params.get("lang") or request.cookies.get("lang")
        return lang if lang in LANGS else "zh"

    def render(request: Request, name: str, status: int = 200, **ctx) -> HTMLResponse:
        lang = lang_of(request)
        user = auth.current_user(request.session, users, max_age_s)

        def t(key: str, **kw) -> str:
            zh, en = T[key]
            return (en if lang == "en" else zh).format(**kw)

        def name_of(obj) -> str:
            return (obj.name_en or obj.name_zh) if lang == "en" else obj.name_zh

        other = "zh" if lang == "en" else "en"
        switch = str(request.url.include_query_params(lang=other))
        html = env.get_template(name).render(
            t=t, lang=lang, user=user, switch_url=switch, reg=reg, name_of=name_of,
            enterprises=reg.enterprises, floor_enterprises=floor_enterprises,
            csrf=request.session.get("csrf", "") if user else "",
            path=request.url.path, **ctx)
        resp = HTMLResponse(html, status_code=status)
        if request.query_params.get("lang") in LANGS:
            resp.set_cookie("lang", lang, max_age=365 * 86400, samesite="strict")
        return resp

    def not_found(request: Request, what: str) -> Response:
        if request.url.path.startswith(("/api/", "/events/")):
            zh, en = T["not_found"]
            return JSONResponse({"error": f"{zh.format(what=what)} / {en.format(what=what)}"},
                                status_code=404)
        return render(request, "error.html", status=404, what=what)

    def enterprise_or_none(e: str) -> str | None:
        return e if e in enterprises else None

    # ---------------------------------------------------------------------- floor
    async def index(request: Request) -> Response:
        if not enterprises:
            return not_found(request, "enterprise")
        return RedirectResponse(f"/floor/{(floor_enterprises or reg.enterprises)[0].id}",
                                status_code=307)

    async def floor(request: Request) -> Response:
        e = enterprise_or_none(request.path_params["enterprise"])
        if e is None:
            return not_found(request, request.path_params["enterprise"])
        site = request.query_params.get("site")
        sites = [s for s in reg.sites if s.enterprise == e and (not site or s.id == site)]
        if site and not sites:
            return not_found(request, site)
        snap = await run_in_threadpool(cache.get, ("floor", e), lambda: data.snapshot(e))
        by_key = {(m["meter"], m["channel"]): m for m in snap["meters"]}
        groups = []
        for s in sites:
            tiles = []
            for m in reg.meters_of(e):
                if m.site != s.id:
                    continue
                for ch in range(m.channels):
                    tiles.append((m, ch, by_key.get((m.id, ch), {})))
            groups.append((s, tiles))
        return render(request, "floor.html", enterprise=reg.enterprise(e), groups=groups,
                      snapshot=snap)

    async def api_floor(request: Request) -> Response:
        e = enterprise_or_none(request.path_params["enterprise"])
        if e is None:
            return not_found(request, request.path_params["enterprise"])
        snap = await run_in_threadpool(cache.get, ("floor", e), lambda: data.snapshot(e))
        return JSONResponse(snap)

    async def api_history(request: Request) -> Response:
        e = enterprise_or_none(request.path_params["enterprise"])
        if e is None:
            return not_found(request, request.path_params["enterprise"])
        meter = request.query_params.get("meter", "")
        try:
            m = reg.meter(meter)
            channel = int(request.query_params.get("channel", "0"))
            minutes = min(max(int(request.query_params.get("minutes", "60")), 1), 1440)
        except (KeyError, ValueError):
            return not_found(request, meter or "meter")
        if m.enterprise != e or not 0 <= channel < m.channels:
            return not_found(request, f"{meter}:{channel}")
        return JSONResponse(await run_in_threadpool(data.history, e, meter, channel, minutes))

    async def sse(request: Request, event: str, key, compute: Callable[[], object]
                  ) -> StreamingResponse:
        async def stream():
            yield "retry: 2000\n\n"
            while True:
                value = await run_in_threadpool(cache.get, key, compute)
                yield f"event: {event}\ndata: {json.dumps(value, ensure_ascii=False)}\n\n"
                await asyncio.sleep(sse_period_s)
                if await request.is_disconnected():
                    break

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    async def events_floor(request: Request) -> Response:
        e = enterprise_or_none(request.path_params["enterprise"])
        if e is None:
            return not_found(request, request.path_params["enterprise"])
        return await sse(request, "floor", ("floor", e), lambda: data.snapshot(e))

    # ---------------------------------------------------------------------- alerts
    def alert_filters(request: Request) -> dict:
        f = {}
        for k in ("enterprise", "state", "rule", "meter"):
            v = request.query_params.get(k)
            if v:
                f[k] = v
        return f

    def alert_rows(f: dict) -> list[dict]:
        try:
            got = store.list(limit=200, **f)
        except ValueError:
            return []
        return [{"id": a.id, "state": a.state, "enterprise": a.enterprise, "rule": a.rule,
                 "meter": a.meter, "channel": a.channel, "job": a.job,
                 "shift_date": a.shift_date, "severity": a.severity, "text_zh": a.text_zh,
                 "text_en": a.text_en, "opened_ns": a.opened_ns, "who": a.last.who,
                 "note": a.last.note} for a in got]

    async def alerts(request: Request) -> Response:
        f = alert_filters(request)
        if "enterprise" in f and f["enterprise"] not in enterprises:
            return not_found(request, f["enterprise"])
        if "state" in f and f["state"] not in STATES:
            f.pop("state")
        rows = await run_in_threadpool(cache.get, ("alerts", tuple(sorted(f.items()))),
                                       lambda: alert_rows(f))
        return render(request, "alerts.html", rows=rows, filters=f, states=STATES,
                      state_text=STATE_TEXT,
                      query=str(request.url.query or ""))

    async def events_alerts(request: Request) -> Response:
        f = alert_filters(request)
        return await sse(request, "alerts", ("alerts", tuple(sorted(f.items()))),
                         lambda: alert_rows(f))

    async def change(request: Request) -> Response:
        if request.path_params["action"] not in ("ack", "resolve"):
            return not_found(request, request.path_params["action"])
        user = auth.current_user(request.session, users, max_age_s)
        if user is None:
            return JSONResponse({"error": "请先登录 / sign in first"}, status_code=401)
        ctype = request.headers.get("content-type", "")
        body = await request.json() if ctype.startswith("application/json") else \
            dict(await request.form())
        token = request.headers.get("x-csrf-token") or body.get("csrf")
        if not auth.csrf_ok(request.session, token):
            return JSONResponse({"error": "CSRF 令牌无效 / invalid CSRF token"}, status_code=403)
        note = body.get("note")
        note = note.strip() if isinstance(note, str) else ""
        if not note:
            return JSONResponse({"error": "请填写备注 / a note is required"}, status_code=400)
        action = {"ack": store.acknowledge, "resolve": store.resolve}[request.path_params["action"]]
        try:
            state = await run_in_threadpool(action, request.path_params["id"], user.name, note)
        except UnknownAlert as e:
            return JSONResponse({"error": f"未知告警 / unknown alert: {e}"}, status_code=404)
        except InvalidTransition as e:
            return JSONResponse({"error": str(e)}, status_code=409)
        except NotPublished as e:
            state = e.state
        except ValueError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        cache.clear()
        if "application/json" in request.headers.get("accept", "") or \
                ctype.startswith("application/json"):
            return JSONResponse({"id": state.id, "state": state.state})
        return RedirectResponse("/alerts", status_code=303)

    # ---------------------------------------------------------------------- sign-in
    async def login(request: Request) -> Response:
        if request.method == "GET":
            return render(request, "login.html", error=False)
        form = await request.form()
        user = await run_in_threadpool(auth.verify, users, str(form.get("user", "")),
                                       str(form.get("password", "")))
        if user is None:
            return render(request, "login.html", status=401, error=True)
        auth.start_session(request.session, user)
        return RedirectResponse("/alerts", status_code=303)

    async def logout(request: Request) -> Response:
        request.session.clear()
        return RedirectResponse("/alerts", status_code=303)

    # ---------------------------------------------------------------------- exposure
    async def exposure(request: Request) -> Response:
        e = enterprise_or_none(request.path_params["enterprise"])
        if e is None:
            return not_found(request, request.path_params["enterprise"])
        today = dt.date.today()
        try:
            last = dt.date.fromisoformat(request.query_params.get("to") or today.isoformat())
            first = dt.date.fromisoformat(request.query_params.get("from")
                                          or (last - dt.timedelta(days=6)).isoformat())
        except ValueError:
            return render(request, "error.html", status=400, what="from/to")
        if last < first or (last - first).days > 92:
            return render(request, "error.html", status=400, what="from/to")
        rows = await run_in_threadpool(data.exposure, e, first, last)
        spectra = await run_in_threadpool(data.spectra, e)
        return render(request, "exposure.html", enterprise=reg.enterprise(e), rows=rows,
                      first=first, last=last, limit=reg.profile.lex_limit_db,
                      chart={"rows": rows, "limit": reg.profile.lex_limit_db,
                             "spectra": spectra})

    # ---------------------------------------------------------------------- reports
    def report_files(e: str) -> list[Path]:
        if reports_dir is None or not Path(reports_dir).is_dir():
            return []
        pat = re.compile(rf"\Areport-{re.escape(e)}-[A-Za-z0-9_.-]+\.(html|pdf)\Z")
        return sorted((p for p in Path(reports_dir).iterdir()
                       if p.is_file() and pat.match(p.name)), reverse=True)

    async def reports(request: Request) -> Response:
        e = enterprise_or_none(request.path_params["enterprise"])
        if e is None:
            return not_found(request, request.path_params["enterprise"])
        return render(request, "reports.html", enterprise=reg.enterprise(e),
                      files=[p.name for p in report_files(e)],
                      config=reg.path or "SITE", out=str(reports_dir or "DIR"))

    async def report_file(request: Request) -> Response:
        e = enterprise_or_none(request.path_params["enterprise"])
        name = request.path_params["file"]
        if e is None:
            return not_found(request, request.path_params["enterprise"])
        for p in report_files(e):
            if p.name == name:
                return FileResponse(p)
        return not_found(request, name)

    # ---------------------------------------------------------------------- pilot
    pilot_data = PilotData(reg, data.reader)

    def pilot_range(request: Request) -> tuple | None:
        first, last = pilot_data.default_range()
        try:
            if request.query_params.get("from"):
                first = dt.date.fromisoformat(request.query_params["from"])
            if request.query_params.get("to"):
                last = dt.date.fromisoformat(request.query_params["to"])
        except ValueError:
            return None
        return (first, last) if first <= last else None

    async def pilot_snapshot(request: Request, first: dt.date, last: dt.date) -> dict:
        # the store's reads are cached per range, for both languages; the labels are applied
        # to the cached results per request (to_json: no I/O)
        res = await run_in_threadpool(cache.get, ("pilot", first, last),
                                      lambda: pilot_data.results(first, last))
        return to_json(res, reg, first, last, lang_of(request))

    async def pilot(request: Request) -> Response:
        rng = pilot_range(request)
        if rng is None:
            return render(request, "error.html", status=400, what="from/to")
        snap = await pilot_snapshot(request, *rng)
        en = lang_of(request) == "en"
        return render(request, "pilot.html", snap=snap,
                      pick=lambda pair: pair[1] if en else pair[0],
                      source_text=pr.SOURCE_TEXT, method_text=pr.METHOD_TEXT,
                      verdict_text=pr.VERDICT_TEXT, group_text=pr.GROUP_TEXT,
                      short_verdict=PILOT_TEXT["verdict"])

    async def api_pilot(request: Request) -> Response:
        rng = pilot_range(request)
        if rng is None:
            zh, en = T["bad_request"]
            return JSONResponse({"error": f"{zh.format(what='from/to')} / "
                                          f"{en.format(what='from/to')}"}, status_code=400)
        return JSONResponse(await pilot_snapshot(request, *rng))

    routes = [
        Route("/", index),
        Route("/floor/{enterprise}", floor),
        Route("/api/floor/{enterprise}", api_floor),
        Route("/api/floor/{enterprise}/history", api_history),
        Route("/events/floor/{enterprise}", events_floor),
        Route("/alerts", alerts),
        Route("/events/alerts", events_alerts),
        Route("/alerts/{id}/{action:str}", change, methods=["POST"]),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/exposure/{enterprise}", exposure),
        Route("/reports/{enterprise}", reports),
        Route("/reports/{enterprise}/{file}", report_file),
        Route("/pilot", pilot),
        Route("/api/pilot", api_pilot),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]

    async def unknown_action(request: Request, exc) -> Response:
        return not_found(request, request.url.path)

    app = Starlette(
        routes=routes,
        middleware=[Middleware(SessionMiddleware, secret_key=secret or secrets.token_hex(32),
                               session_cookie="tingbao_session", max_age=int(max_age_s),
                               same_site="strict", https_only=False)],
        exception_handlers={404: unknown_action})
    app.state.cache = cache
    return app
