"""The dashboard: pages, JSON data and the CSV download, on the server's own HTTPS port.

Routes (every one behind the server's framing, size, deadline and connection limits, as
the API; docs/ingest.md "Dashboard"):

=====================  ======================================================================
``GET /``              the dashboard page (signed in) or a redirect to ``/login``
``GET|POST /login``    sign-in form: the server's own users, checked and throttled as
                       ``/oauth/token`` is; only a user with ``TB_ALLOW_READ`` gets a session
``POST /logout``       ends the session (the cookie is cleared)
``GET /static/NAME``   the page's script and style, and the vendored uPlot
``GET /dash/boards``   the streams, the plots and per board its summary and latest health
``GET /dash/series``   min/max/mean per bucket for one board or several (``Store.series``)
``GET /dash/export``   the same CSV as ``query --format csv`` for one board and range
=====================  ======================================================================

A session is a cookie holding a token signed with the server's key (``tokens.py``,
``session_lifetime_s``), ``HttpOnly``, ``SameSite=Strict`` and, over TLS, ``Secure``; like
every token it dies with a restart.  The data routes also take an OAuth access token
(``Authorization: Bearer``) of a user with ``TB_ALLOW_READ``.  Nothing but the sign-in
form is served without one.
"""

import html
import os
import time

from . import export
from .schema import format_timestamp
from .store import parse_time
from .tokens import OAuthError

COOKIE = "ingest_session"
READ = "TB_ALLOW_READ"
_SMALL_BODY = 64 * 1024
_CHUNK = 64 * 1024
_STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
_UPLOT = "vendor/uplot-1.6.32/"
STATIC = {  # URL name -> (file under static/, content type): nothing else is served
    "dashboard.js": ("dashboard.js", "text/javascript;charset=UTF-8"),
    "dashboard.css": ("dashboard.css", "text/css;charset=UTF-8"),
    "uPlot.iife.min.js": (_UPLOT + "uPlot.iife.min.js", "text/javascript;charset=UTF-8"),
    "uPlot.min.css": (_UPLOT + "uPlot.min.css", "text/css;charset=UTF-8"),
}
_PAGE_HEADERS = (
    ("Content-Security-Policy", "default-src 'none'; script-src 'self'; connect-src 'self'; "
     "style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
     "frame-ancestors 'none'; base-uri 'none'"),
    ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"))
_HTML = "text/html;charset=UTF-8"
# What the page plots: (title, unit, [(field, label)], scale applied to the stored value).
PLOTS = (("Temperature", "\u00b0C", (("am2320_temp", "AM2320"), ("bmp180_temp", "BMP180")), 1),
         ("Humidity", "%RH", (("am2320_humidity", "AM2320"),), 1),
         ("Pressure", "hPa", (("bmp180_pressure", "BMP180"),), 0.01))
_NUMERIC = ("FLOAT", "INTEGER", "INT32")


def routes(parts):
    """True if the path (split on "/") is one of the dashboard's."""
    return parts in ([], ["login"], ["logout"]) or (parts[:1] == ["static"] and len(parts) == 2) \
        or (parts[:1] == ["dash"] and len(parts) == 2)


def handle(h, method, parts):
    """Serve a dashboard route on the request handler ``h`` (server.Handler)."""
    if parts == ["login"]:
        return _login(h, method)
    if parts == ["logout"]:
        h._drain()
        if method != "POST":
            return _page(h, 405, "<p>Use the Sign out button.</p>")
        return h._send(303, b"", headers=(("Location", "/login"), _clear_cookie(h)))
    h._drain()
    claims, why = _who(h)
    if method != "GET":
        return h._spring_error(405, "Request method '%s' not supported" % method)
    if parts == []:
        if claims is None:
            return h._send(303, b"", headers=(("Location", "/login"),) + why)
        return _file(h, "dashboard.html", _HTML)
    if claims is None:
        return h._send(401, {"error": "unauthorized", "error_description":
                             "sign in at /login (a user with %s)" % READ}, headers=why)
    if parts[0] == "static":
        spec = STATIC.get(parts[1])
        if spec is None:
            return h._spring_error(404, "No message available")
        return _file(h, *spec)
    try:
        if parts[1] == "boards":
            return h._send(200, boards(h.server.owner, _param(h, "stream", None), claims))
        if parts[1] == "series":
            return h._send(200, series(h.server.owner, h._query), headers=_PAGE_HEADERS[1:])
        if parts[1] == "export":
            return _export(h)
    except ValueError as e:
        return h._spring_error(400, str(e)[:300])
    return h._spring_error(404, "No message available")


# -- sign-in ----------------------------------------------------------------------------------
def _cookie(h, value, max_age):
    secure = "; Secure" if h.server.owner.ssl_context is not None else ""
    return ("Set-Cookie", "%s=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%d%s" % (
        COOKIE, value, max_age, secure))


def _clear_cookie(h):
    return _cookie(h, "", 0)


def _session_token(h):
    for header in h.headers.get_all("Cookie") or []:
        for part in header.split(";"):
            k, _, v = part.strip().partition("=")
            if k == COOKIE and v:
                return v
    return None


def _who(h):
    """(claims, extra headers): the signed-in user with read permission, else None (and a
    header clearing a stale cookie)."""
    srv = h.server.owner
    token = _session_token(h)
    try:
        if token:
            claims = srv.tokens.check_session(token)
        else:
            bearer = h.headers.get("Authorization") or ""
            if bearer[:7].lower() != "bearer ":
                return None, ()
            claims = srv.tokens.check_access(bearer[7:].strip())
    except OAuthError:
        srv.stats.add(auth_failures=1)
        return None, ((_clear_cookie(h),) if token else ())
    if READ not in (claims.get("authorities") or []):
        srv.stats.add(auth_failures=1)
        return None, ()
    return claims, ()


def _login(h, method):
    srv = h.server.owner
    if method == "GET":
        h._drain()
        return _page(h, 200, _login_form())
    if method != "POST":
        h._drain()
        return _page(h, 405, _login_form("Use the form."))
    from .server import client_key
    form = h._form(h._body(_SMALL_BODY))
    who = client_key(h.client_address[0])
    name = form.get("username", "")
    user = name if name in srv.cfg["users"] else None
    wait = max(srv.logins_by_client.wait(who), srv.logins_by_user.wait(user) if user else 0.0)
    if wait > 0:
        srv.stats.add(logins_throttled=1)
        secs = str(int(wait) + 1)
        return _page(h, 429, _login_form("Too many failed sign-ins: try again in %s s." % secs,
                                         name), (("Retry-After", secs),))
    try:
        spec = srv.tokens.verify_user(name, form.get("password", ""))
    except OAuthError:
        srv.login_failed(who, user, "dashboard user %r" % name[:40])
        return _page(h, 401, _login_form("Wrong user name or password.", name))
    srv.logins_by_client.succeeded(who)
    if user:
        srv.logins_by_user.succeeded(user)
    auth = list(spec.get("authorities") or [])
    if READ not in auth:
        return _page(h, 403, _login_form("User %s may not read the data (it needs %s)."
                                         % (name, READ), name))
    token = srv.tokens.issue_session(name, auth)
    life = int(float(srv.cfg["session_lifetime_s"]))
    return h._send(303, b"", headers=(("Location", "/"), _cookie(h, token, life)))


def _login_form(error="", name=""):
    err = '<p class="error" role="alert">%s</p>' % html.escape(error) if error else ""
    return ("<h1>Roof weather</h1><form method=\"post\" action=\"/login\">%s"
            "<label>User <input name=\"username\" autocomplete=\"username\" value=\"%s\" "
            "required autofocus></label><label>Password <input name=\"password\" "
            "type=\"password\" autocomplete=\"current-password\" required></label>"
            "<button type=\"submit\">Sign in</button></form>"
            "<p class=\"hint\">The users of this server (its config, or "
            "<code>credentials.json</code> in its data dir); reading needs %s.</p>"
            % (err, html.escape(name), READ))


def _page(h, status, body, headers=()):
    text = ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta "
            "name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<title>Roof weather: sign in</title><link rel=\"icon\" href=\"data:,\">"
            "<style>body{font:16px system-ui,sans-serif;"
            "max-width:22em;margin:4em auto;padding:0 1em}label{display:block;margin:.8em 0}"
            "input{display:block;width:100%%;padding:.4em;box-sizing:border-box}"
            "button{padding:.5em 1.5em}.error{color:#b00020}.hint{color:#555;font-size:.9em}"
            "</style></head><body>%s</body></html>" % body)
    return h._send(status, text, _HTML, headers=_PAGE_HEADERS + tuple(headers))


def _file(h, name, ctype):
    with open(os.path.join(_STATIC_DIR, name), "rb") as f:
        data = f.read()
    headers = _PAGE_HEADERS if ctype == _HTML else _PAGE_HEADERS[1:3] + (
        ("Cache-Control", "no-cache"),)
    return h._send(200, data, ctype, headers=headers)


# -- data -------------------------------------------------------------------------------------
def _param(h_or_query, name, default):
    q = h_or_query._query if hasattr(h_or_query, "_query") else h_or_query
    v = q.get(name)
    if not v:
        return default
    if len(v[0]) > 300:
        raise ValueError("%s: too long" % name)
    return v[0]


def classes(spec):
    """(weather class, health class) of a stream spec: the classes whose names end with
    ``weather_record`` / ``health_record`` (TimeBase may prefix them), else None."""
    out = []
    for suffix in ("weather_record", "health_record"):
        out.append(next((c for c in spec["types"] if c.endswith(suffix)), None))
    return tuple(out)


def _stream(srv, name):
    specs = srv.store.specs
    if name is None:
        present = srv.store.streams_present()
        name = "weather-data" if "weather-data" in specs else (present or sorted(specs))[0]
    if name not in specs:
        raise ValueError("unknown stream %r" % name[:60])
    return name, specs[name]


def _plots(spec, weather):
    fields = spec["types"].get(weather, {}) if weather else {}
    out = []
    for title, unit, series, scale in PLOTS:
        have = [(f, label) for f, label in series if f in fields]
        if have:
            out.append({"title": title, "unit": unit, "scale": scale,
                        "fields": [{"name": f, "label": label} for f, label in have]})
    return out


def boards(srv, stream, claims):
    """What the page needs to lay itself out: streams, plots, boards with their panel."""
    stream, spec = _stream(srv, stream)
    weather, health = classes(spec)
    now = srv.store.clock_ns()
    offline_ns = int(float(srv.cfg["offline_after_s"]) * 1e9)
    summary = srv.store.summary(stream)
    latest = srv.store.latest(stream, health) if health else {}
    out = []
    for sym in sorted(summary):
        types = summary[sym]
        seen = max(d["last_acquisition_ns"] for d in types.values())
        w = types.get(weather) if weather else None
        b = {"symbol": sym, "last_seen": seen / 1e9,
             "offline": now - seen > offline_ns,
             "last_sample": w["last_ns"] / 1e9 if w else None,
             "samples": w["count"] if w else 0, "health": None}
        hr = latest.get(sym)
        if hr is not None:
            b["health"] = {k: v for k, v in hr.items() if k in spec["types"][health]}
            b["health"]["time"] = hr["capture_ns"] / 1e9
            b["health"]["received"] = hr["acquisition_ns"] / 1e9
        out.append(b)
    return {"user": claims.get("user_name"), "now": now / 1e9, "stream": stream,
            "streams": sorted(srv.store.specs), "weather_type": weather, "health_type": health,
            "offline_after_s": float(srv.cfg["offline_after_s"]),
            "plots": _plots(spec, weather), "boards": out}


def _range(q):
    since = _param(q, "from", None)
    until = _param(q, "to", None)
    if since is None or until is None:
        raise ValueError("from and to are required (ISO 8601 or ns)")
    since, until = parse_time(since), parse_time(until)
    if until <= since:
        raise ValueError("to must be after from")
    return since, until


def series(srv, q):
    """``Store.series`` for one board (``symbol``), or for several (``symbols``, comma
    separated: ``{"series": {symbol: ...}}``, computed one after the other: the page asks
    for every board at once, which a small server answers faster than many requests
    competing for its cores); checked: the class's numeric fields only (default: its
    FLOAT fields)."""
    stream, spec = _stream(srv, _param(q, "stream", None))
    symbol = _param(q, "symbol", None)
    many = [x for x in (q.get("symbols") or [""])[0].split(",") if x]
    if len(many) > 100:
        raise ValueError("at most 100 symbols")
    if symbol is None and not many:
        raise ValueError("symbol (or symbols) is required")
    tname = _param(q, "type", None) or classes(spec)[0]
    kinds = spec["types"].get(tname)
    if kinds is None:
        raise ValueError("stream %s has no class %r" % (stream, str(tname)[:60]))
    numeric = [f for f, k in kinds.items() if str(k).upper().rstrip("?") in _NUMERIC]
    floats = [f for f in numeric if str(kinds[f]).upper().rstrip("?") == "FLOAT"]
    fields = [f for f in (_param(q, "fields", "") or "").split(",") if f] or floats
    bad = [f for f in fields if f not in numeric]
    if bad:
        raise ValueError("not a numeric field of %s: %s" % (tname, ", ".join(bad)[:200]))
    since, until = _range(q)
    try:
        n = int(_param(q, "buckets", "1000"))
    except ValueError:
        raise ValueError("buckets must be an integer")
    def one(sym):
        out = srv.store.series(stream, sym, tname, fields, since, until, n)
        out.update({"stream": stream, "symbol": sym, "type": tname,
                    "from": format_timestamp(since), "to": format_timestamp(until)})
        return out

    if many:
        return {"series": {sym: one(sym) for sym in many}}
    return one(symbol)


class _Chunked:
    """A text stream that sends what is written as HTTP/1.1 chunks of about 64 KiB, each
    with its own write deadline (a download as long as it keeps moving)."""

    def __init__(self, h):
        self.h = h
        self.buf = []
        self.size = 0

    def write(self, text):
        self.buf.append(text)
        self.size += len(text)
        if self.size >= _CHUNK:
            self.flush()

    def flush(self):
        if not self.buf:
            return
        data = "".join(self.buf).encode()
        self.buf, self.size = [], 0
        h = self.h
        h._conn.deadline = time.monotonic() + float(h.server.owner.cfg["request_timeout_s"])
        h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def close(self):
        self.flush()
        self.h.wfile.write(b"0\r\n\r\n")


def _export(h):
    """The CSV of one board over a range: ``query --stream S --symbol X --type T --since
    FROM --until TO --format csv``, streamed in chunks (memory bounded)."""
    srv = h.server.owner
    q = h._query
    stream, spec = _stream(srv, _param(q, "stream", None))
    symbol = _param(q, "symbol", None)
    if symbol is None:
        raise ValueError("symbol is required")
    tname = _param(q, "type", None) or classes(spec)[0]
    if tname not in spec["types"]:
        raise ValueError("stream %s has no class %r" % (stream, str(tname)[:60]))
    since, until = _range(q)
    fields = export.columns(spec, [tname])
    name = "%s-%s-%s.csv" % ("".join(c if c.isalnum() or c in "-_" else "_"
                                     for c in symbol)[:60] or "board",
                             time.strftime("%Y%m%dT%H%MZ", time.gmtime(since // 10**9)),
                             time.strftime("%Y%m%dT%H%MZ", time.gmtime(until // 10**9)))
    rows = srv.store.query(stream, symbol=symbol, types=[tname], since=since, until=until)
    h.send_response(200)
    for k, v in _PAGE_HEADERS[1:]:
        h.send_header(k, v)
    h.send_header("Content-Type", "text/csv;charset=UTF-8")
    h.send_header("Content-Disposition", "attachment; filename=\"%s\"" % name)
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    out = _Chunked(h)
    try:
        export.write(rows, out, "csv", fields)
        out.close()
    finally:
        rows.close()
