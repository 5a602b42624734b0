"""A tiny InfluxDB v1 HTTP API client (stdlib only): ``/ping``, ``/write`` and ``/query``.

The v1 pair ``/write`` (line protocol) + ``/query`` (InfluxQL) is served by InfluxDB 1.x and,
as compatibility endpoints, by 2.x and 3.x. Credentials go in an HTTP Basic
``Authorization`` header, never in the URL (which servers log).

Errors are typed so that a caller knows whether to retry:

* :class:`TransientError` — the server cannot take the request now: connection refused or
  reset, timeouts, HTTP 5xx (1.6.7 answers 500 for an unknown retention policy, too),
  429. Retrying later (with back-off) is right.
* :class:`ConfigError` — HTTP 401/403 (credentials, privileges) and 404 (no such
  database): nothing is wrong with the data; an operator must act. Also worth retrying.
* :class:`DataError` — other 4xx, chiefly 400: a parse error, a field-type conflict, a
  point outside the retention policy. The request's data is at fault; ``message`` is
  InfluxDB's own text. Retrying the same data fails again. (On a 400 InfluxDB 1.x still
  stores the points it could parse — a "partial write".)
"""

from __future__ import annotations

import base64
import dataclasses
import http.client
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""No proxies: the database is reached directly (a proxy from the environment must not
intercept loopback traffic)."""


class InfluxError(Exception):
    """A failed request; ``status`` is the HTTP status (None without an answer) and
    ``message`` the server's error text or the network error."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message if status is None else f"HTTP {status}: {message}")
        self.message = message
        self.status = status


class TransientError(InfluxError):
    """The server is unreachable, too slow or failing (5xx): retry later."""


class ConfigError(InfluxError):
    """Authentication, privileges or the database are wrong (401, 403, 404): retry later,
    after an operator fixed it; the data is fine."""


class DataError(InfluxError):
    """The server refused the data (400 and other 4xx); retrying the same data fails."""


@dataclasses.dataclass
class Series:
    """One series of a query answer: measurement ``name``, GROUP BY ``tags`` and ``rows``
    as dicts of column → value."""

    name: str | None
    tags: dict[str, str]
    rows: list[dict]


class InfluxClient:
    """Client of one database.

    Args:
        url: base URL, e.g. ``http://127.0.0.1:8086``.
        db: database name.
        username, password: HTTP Basic credentials (None: no authentication).
        timeout: seconds for connecting and for each answer.
    """

    def __init__(self, url: str, db: str, username: str | None = None,
                 password: str | None = None, timeout: float = 10.0):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"InfluxDB url {url!r} is not http(s)://host:port")
        if parsed.username or parsed.password:
            raise ValueError("put InfluxDB credentials in username/password, not in the url")
        self.url = url.rstrip("/")
        self.db = db
        self.timeout = timeout
        self._auth = None
        if username is not None:
            token = f"{username}:{password or ''}".encode()
            self._auth = "Basic " + base64.b64encode(token).decode("ascii")

    def __repr__(self) -> str:
        return f"InfluxClient({self.url!r}, db={self.db!r})"

    # ------------------------------------------------------------------------------ HTTP
    def _request(self, method: str, path: str, params: dict, body: bytes | None = None,
                 content_type: str | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(f"{self.url}{path}?{urllib.parse.urlencode(params)}",
                                     data=body, method=method)
        if self._auth:
            req.add_header("Authorization", self._auth)
        if content_type:
            req.add_header("Content-Type", content_type)
        try:
            with _OPENER.open(req, timeout=self.timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            try:
                raw = e.read()
            except (OSError, http.client.HTTPException):
                raw = b""
            raise _classify(e.code, raw) from None
        except urllib.error.URLError as e:
            raise TransientError(f"cannot reach InfluxDB at {self.url}: {e.reason}") from None
        except TimeoutError as e:
            raise TransientError(f"InfluxDB at {self.url} did not answer within "
                                 f"{self.timeout:g} s ({e})") from None
        except (OSError, http.client.HTTPException) as e:
            raise TransientError(f"connection to InfluxDB at {self.url} failed: "
                                 f"{type(e).__name__}: {e}") from None

    def ping(self) -> str | None:
        """``GET /ping``; returns the server version header (raises on failure)."""
        req = urllib.request.Request(f"{self.url}/ping", method="GET")
        try:
            with _OPENER.open(req, timeout=self.timeout) as resp:
                return resp.headers.get("X-Influxdb-Version")
        except urllib.error.HTTPError as e:
            raise _classify(e.code, e.read()) from None
        except (OSError, http.client.HTTPException) as e:
            raise TransientError(f"cannot reach InfluxDB at {self.url}: {e}") from None

    # ----------------------------------------------------------------------------- write
    def write(self, lines: Iterable[str] | str, rp: str | None = None) -> None:
        """``POST /write?db=…&precision=ns[&rp=…]`` of line protocol; returns when InfluxDB
        answered 204 (stored), else raises TransientError, ConfigError or DataError."""
        body = (lines if isinstance(lines, str) else "\n".join(lines)).encode("utf-8")
        params = {"db": self.db, "precision": "ns"}
        if rp:
            params["rp"] = rp
        status, raw = self._request("POST", "/write", params, body, "text/plain; charset=utf-8")
        if status != 204:
            raise _classify(status, raw)

    # ----------------------------------------------------------------------------- query
    def query(self, q: str, db: str | None = None, *, epoch: str | None = "ns",
              params: dict | None = None) -> list[Series]:
        """Run InfluxQL; returns the series of all statements in order. SELECT and SHOW go
        by GET, other statements by POST (as 1.x requires). ``epoch="ns"`` gives integer
        times (``None``: RFC 3339 strings). A statement error raises DataError (or
        ConfigError for missing privileges)."""
        form = {"q": q, "db": db or self.db}
        if epoch:
            form["epoch"] = epoch
        if params:
            form["params"] = json.dumps(params)
        if q.lstrip().upper().startswith(("SELECT", "SHOW")) and len(q) < 4000:
            status, raw = self._request("GET", "/query", form)
        else:
            status, raw = self._request("POST", "/query", {},
                                        urllib.parse.urlencode(form).encode("utf-8"),
                                        "application/x-www-form-urlencoded")
        try:
            answer = json.loads(raw or b"{}")
        except ValueError:
            raise TransientError(f"InfluxDB answered HTTP {status} with non-JSON: "
                                 f"{raw[:200]!r}") from None
        if answer.get("error"):
            raise _classify(400 if status == 200 else status, raw)
        out: list[Series] = []
        for result in answer.get("results", []):
            if result.get("error"):
                message = result["error"]
                cls = ConfigError if "authorized" in message else DataError
                raise cls(f"query failed: {message}", status)
            for s in result.get("series", []) or []:
                columns = s.get("columns", [])
                rows = [dict(zip(columns, values, strict=False))
                        for values in s.get("values", []) or []]
                out.append(Series(s.get("name"), dict(s.get("tags") or {}), rows))
        return out

    def query_rows(self, q: str, db: str | None = None, **kwargs) -> list[dict]:
        """:meth:`query` flattened: every row, with its series' tags merged in."""
        return [{**s.tags, **row} for s in self.query(q, db, **kwargs) for row in s.rows]


def finite_number(v) -> float | None:
    """A numeric value of an answer (``/query`` JSON: int, float, or None for a field a point
    lacks) as a finite float; None for a missing, boolean, non-numeric or non-finite value."""
    if v is None or isinstance(v, bool):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _classify(status: int, raw: bytes) -> InfluxError:
    """The typed error for an HTTP answer that is not a success."""
    try:
        message = json.loads(raw).get("error") or raw.decode("utf-8", "replace")
    except (ValueError, AttributeError):
        message = raw.decode("utf-8", "replace")
    message = message.strip()[:2000] or "(no message)"
    if status >= 500 or status in (408, 429):
        return TransientError(message, status)
    if status in (401, 403, 404):
        return ConfigError(message, status)
    return DataError(message, status)
