"""The HTTP(S) side: WebAdmin's endpoints on ``http.server`` with one thread per connection.

HTTP/1.1 keep-alive; HTTP/1.0 clients get their answer and a close (the seed's urequests reads
to EOF); replies always carry Content-Length, never chunked; request bodies may be sized or
chunked.  See docs/ingest.md for the wire format and ``IngestServer`` for the Python API.

Built for an open LAN (docs/ingest.md "Limits"): framing is parsed strictly (a bad
Content-Length or chunk size is 400 and a close, never a read to EOF); bodies are capped
before they are read; every request has a whole-request deadline (``_Conn``), however slowly
its bytes arrive; connections are capped in all and per client address; the accept loop backs
off when file handles run out; failed logins are throttled (``throttle.py``); the built-in
admin/admin is never served beyond loopback.
"""

import base64
import binascii
import errno
import http.client
import http.server
import io
import ipaddress
import json
import os
import re
import secrets
import socket
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse

from . import certs, dashboard, schema
from . import config as _config
from .faults import Faults, Stats
from .store import Store, parse_time
from .throttle import LoginThrottle
from .tokens import OAuthError, TokenService

_JSON = "application/json;charset=UTF-8"
_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 413: "Payload Too Large", 429: "Too Many Requests",
            500: "Internal Server Error", 503: "Service Unavailable"}
_WRITE_MODES = ("APPEND", "REWRITE", "TRUNCATE", "INSERT")
_NO_AUTH = ("Full authentication is required to access this resource")
_SMALL_BODY = 64 * 1024  # /oauth/token, select, /admin: their bodies are a few hundred bytes
_HEAD_MAX = 32 * 1024  # header lines of one request, all together (the request line: 64 KiB)
_DISCARD_MAX = 1024 * 1024  # a body this far over its cap is read and dropped (keep-alive)
_CHUNK_LINE = re.compile(rb"^([0-9A-Fa-f]{1,16})[ \t]*(;[^\r\n]*)?\r?\n$")
_LENGTH = re.compile(r"^[0-9]{1,18}$")
_TRAILERS_MAX = 32
_PARSE_SLOTS = threading.BoundedSemaphore(2)  # /write bodies parsed at once (memory bound)
_OUT_OF_HANDLES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_DEFAULT_PASSWORDS = ("admin", "")


class _Drop(Exception):
    """Close the connection now, without a reply (fault injection)."""


class _Conn(io.RawIOBase):
    """The connection's socket, read and written against a deadline for a whole phase (the
    request, then its reply) instead of a timeout per read: each recv/send gets only the
    time left, so a client sending a byte a second gains nothing by it."""

    def __init__(self, sock, deadline):
        io.RawIOBase.__init__(self)
        self.sock = sock
        self.deadline = deadline
        self.timed_out = False

    def readable(self):
        return True

    def writable(self):
        return True

    def _arm(self):
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.timed_out = True
            raise TimeoutError("request deadline passed")
        self.sock.settimeout(left)

    def readinto(self, b):
        self._arm()
        try:
            return self.sock.recv_into(b)
        except TimeoutError:
            self.timed_out = True
            raise

    def write(self, b):
        with memoryview(b) as view:
            sent = 0
            while sent < len(view):
                self._arm()
                try:
                    sent += self.sock.send(view[sent:])
                except TimeoutError:
                    self.timed_out = True
                    raise
        return sent


class _Head:
    """``rfile`` while http.server parses the header lines: at most ``_HEAD_MAX`` bytes."""

    def __init__(self, f):
        self.f = f
        self.left = _HEAD_MAX

    def readline(self, size=-1):
        line = self.f.readline(min(size, self.left + 1) if size >= 0 else self.left + 1)
        self.left -= len(line)
        if self.left < 0:
            raise http.client.HTTPException("request headers larger than %d bytes" % _HEAD_MAX)
        return line

    def __getattr__(self, name):
        return getattr(self.f, name)


def client_key(addr):
    """What a client is, for caps and throttles: its IPv4 address, or its IPv6 /64 (one
    host gets a whole /64 and picks addresses in it at will)."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return addr
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network((ip, 64), strict=False))
    return str(ip)


def is_loopback(host):
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name, or "" (every interface)


def _now_iso():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03d+0000" % (t % 1 * 1000)


def _float_text(v):
    return None if v is None else repr(float(v))


def _names(v, what):
    """A select request's list of symbols or types: None, or up to 1000 strings."""
    if not v:
        return None
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or len(v) > 1000 or not all(isinstance(x, str) for x in v):
        raise ValueError("%s must be a list of at most 1000 strings" % what)
    return v


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tools.ingest"

    def version_string(self):
        return self.server_version

    # -- connection --------------------------------------------------------------------------
    def setup(self):
        """TLS handshake and the first request share one deadline from the accept."""
        srv = self.server.owner
        limit = float(srv.cfg["request_timeout_s"])
        deadline = time.monotonic() + limit
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        srv.stats.add(connections=1)
        if srv.ssl_context is not None:
            sock.settimeout(limit)
            sock = srv.ssl_context.wrap_socket(sock, server_side=True,
                                               do_handshake_on_connect=False)
            self.request = sock  # the TCP socket is detached now: this one must be closed
            try:
                sock.do_handshake()  # one deadline for the whole handshake (CPython's _ssl)
            except BaseException as e:
                if isinstance(e, TimeoutError):
                    srv.stats.add(request_timeouts=1)
                sock.close()
                raise
        srv.track(sock, True)
        self.connection = sock
        self._conn = _Conn(sock, deadline)
        self._served = 0
        self.rfile = io.BufferedReader(self._conn)
        self.wfile = self._conn

    def finish(self):
        try:
            http.server.BaseHTTPRequestHandler.finish(self)
        except OSError:
            pass
        self.server.owner.track(self.request, False)
        self.request.close()  # (a TLS socket: the server only closes the detached TCP one)

    def log_message(self, fmt, *args):  # the request line only: never headers or bodies
        self.server.owner.log(2, "%s %s" % (self.address_string(), fmt % args))

    def log_request(self, code="-", size="-"):
        """The request line without its query string (a client may put a password or an
        access_token there)."""
        line = self.requestline.split(" ")
        if len(line) == 3:
            line[1] = line[1].split("?", 1)[0] + ("?..." if "?" in line[1] else "")
        self.log_message('"%s" %s %s', " ".join(line), code, size)

    def handle_one_request(self):
        srv = self.server.owner
        conn = self._conn
        if self._served:  # keep-alive: wait idle_timeout_s for the next request's first byte;
            conn.deadline = time.monotonic() + float(srv.cfg["idle_timeout_s"])
            try:  # from there the request has request_timeout_s
                first = self.rfile.peek(1)
            except (OSError, ValueError):
                first = b""
            if not first:
                conn.timed_out = False  # an idle connection closed: not a slow request
                self.close_connection = True
                return
            conn.deadline = time.monotonic() + float(srv.cfg["request_timeout_s"])
        try:
            self._served += 1
            self._body_left = None
            http.server.BaseHTTPRequestHandler.handle_one_request(self)
            if not self.close_connection and self._body_left is not None:
                self._finish_body()  # a body the route did not need: keep-alive in step
        except _Drop:
            self.close_connection = True
            self._cut()
        except (ConnectionError, TimeoutError, ssl.SSLError, _Framing):
            self.close_connection = True
        if conn.timed_out:
            conn.timed_out = False
            srv.stats.add(request_timeouts=1)
            srv.log(1, "%s: request not complete within %s s: closed" % (
                self.client_address[0], srv.cfg["request_timeout_s"]))

    def parse_request(self):
        self.rfile = _Head(self.rfile)  # the header lines get _HEAD_MAX bytes in all
        try:
            ok = http.server.BaseHTTPRequestHandler.parse_request(self)
        finally:
            self.rfile = self.rfile.f
        if ok:
            self._body_left = "unread"
        return ok

    def flush_headers(self):
        """A reply (ours or http.server's own errors) gets its own deadline to be written."""
        self._conn.deadline = time.monotonic() + float(
            self.server.owner.cfg["request_timeout_s"])
        http.server.BaseHTTPRequestHandler.flush_headers(self)

    def _cut(self):
        """Drop the TCP connection as a network fault would (no TLS close_notify)."""
        try:
            socket.socket.shutdown(self.connection, socket.SHUT_RDWR)
        except OSError:
            pass

    # -- request bodies ----------------------------------------------------------------------
    def _framing(self):
        """The body's length, or None for chunked; _Framing (400, close) when malformed."""
        te = self.headers.get_all("Transfer-Encoding") or []
        cl = self.headers.get_all("Content-Length") or []
        if te:
            if cl:  # RFC 9112 6.3: a request smuggling vector; refuse and close
                raise _Framing(400, "both Transfer-Encoding and Content-Length")
            codings = [c.strip().lower() for v in te for c in v.split(",")]
            if codings != ["chunked"]:  # (RFC 9112 suggests 501; a client's fault is 4xx here)
                raise _Framing(400, "Transfer-Encoding %r not supported (only chunked)"
                               % ",".join(te)[:60])
            return None
        if not cl:
            return 0
        if len(set(v.strip() for v in cl)) != 1 or not _LENGTH.match(cl[0].strip()):
            raise _Framing(400, "bad Content-Length %r" % ",".join(cl)[:60])
        return int(cl[0])

    def _body(self, cap, keep=True):
        """The request body, at most ``cap`` bytes (else _TooLarge: 413); ``keep=False``
        reads and drops it.  A sized body up to _DISCARD_MAX over the cap is read and
        dropped so that keep-alive stays in step (closing with unread data would make TCP
        reset the 413); a bigger or chunked one gets its 413 and a close."""
        if self._body_left is None:
            return b""
        n = self._framing()
        self._body_left = None
        parts, total = [], 0
        if n is None:
            while True:
                line = self.rfile.readline(80)
                if not line:
                    raise ConnectionError("eof in chunked body")
                m = _CHUNK_LINE.match(line)
                if not m:
                    raise _Framing(400, "bad chunk size line %r" % line[:40])
                size = int(m.group(1), 16)
                if size == 0:
                    self._trailers()
                    break
                total += size
                if total > cap:
                    self.close_connection = True
                    raise _TooLarge(cap)
                data = self._read_exact(size)
                if keep:
                    parts.append(data)
                end = self.rfile.read(1)  # byte by byte: "XY" must not wait for a third
                if end == b"\r":
                    end += self.rfile.read(1)
                if end not in (b"\r\n", b"\n"):
                    raise _Framing(400, "chunk data not followed by CRLF")
        elif n > cap:
            if n - cap > _DISCARD_MAX:
                self.close_connection = True
            else:
                self._discard(n)
            raise _TooLarge(cap)
        elif n:
            total = n
            if keep:
                parts.append(self._read_exact(n))
            else:
                self._discard(n)
        self.server.owner.stats.add(bytes_in=total)
        return b"".join(parts)

    def _read_body(self):
        """The body of a /write (up to max_body_bytes)."""
        return self._body(int(self.server.owner.cfg["max_body_bytes"]))

    def _drain(self):
        """Read and drop a body we do not need, so that keep-alive stays in step."""
        self._body(int(self.server.owner.cfg["max_body_bytes"]), keep=False)

    def _finish_body(self):
        try:
            self._drain()
        except _TooLarge:
            self.close_connection = True

    def _trailers(self):
        for _ in range(_TRAILERS_MAX):
            line = self.rfile.readline(8193)
            if line in (b"\r\n", b"\n"):
                return
            if not line.endswith(b"\n"):
                raise _Framing(400, "bad chunked trailer")
        raise _Framing(400, "more than %d trailer lines" % _TRAILERS_MAX)

    def _read_exact(self, n):
        data = self.rfile.read(n)
        if len(data) != n:
            raise ConnectionError("eof in body")
        return data

    def _discard(self, n):
        while n > 0:
            got = self.rfile.read(min(n, 65536))
            if not got:
                raise ConnectionError("eof in body")
            n -= len(got)

    def _send(self, status, body=b"", ctype=_JSON, headers=()):
        if isinstance(body, (dict, list)):
            body = json.dumps(body, separators=(",", ":")).encode()
        elif isinstance(body, str):
            body = body.encode()
        if self.request_version == "HTTP/1.0" and \
                (self.headers.get("Connection") or "").lower() != "keep-alive":
            self.close_connection = True
        srv = self.server.owner
        if status >= 500:
            srv.stats.add(server_errors=1)
        elif status >= 400:
            srv.stats.add(client_errors=1)
        self.send_response(status, _REASONS.get(status))
        for k, v in headers:
            self.send_header(k, v)
        if body or status != 204:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        # Head and body in one write: one TLS record, no Nagle/delayed-ACK stall.
        self._headers_buffer.append(b"\r\n")
        if body and self.command != "HEAD":
            self._headers_buffer.append(body)
        self.flush_headers()

    def _spring_error(self, status, message):
        """Spring Boot's default error JSON."""
        self._send(status, {"timestamp": _now_iso(), "status": status,
                            "error": _REASONS.get(status, ""), "message": message,
                            "path": self._path})

    def _oauth_error(self, e, realm=None):
        headers = ()
        if e.status == 401:
            pre = 'Bearer realm="%s", ' % realm if realm else "Bearer "
            headers = (("WWW-Authenticate", '%serror="%s", error_description="%s"' % (
                pre, e.code, e.description)),)
        self._send(e.status, e.body(), headers=headers)

    # -- dispatch ----------------------------------------------------------------------------
    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _dispatch(self, method):
        srv = self.server.owner
        srv.stats.add(requests=1)
        url = urllib.parse.urlsplit(self.path)
        self._path = url.path
        parts = [p for p in url.path.split("/") if p]
        try:
            self._framing()  # malformed framing is refused on every route, first
            try:
                self._query = urllib.parse.parse_qs(url.query, keep_blank_values=True,
                                                    max_num_fields=100)
            except ValueError as e:
                raise _BadRequest("bad query string: %s" % e)
            if parts == ["oauth", "token"]:
                return self._token(method)
            if parts in (["ping"], ["stats"]) and method == "GET":
                if parts == ["ping"]:
                    return self._send(200, "pong", "text/plain;charset=UTF-8")
                return self._send(200, srv.stats_snapshot())
            if parts and parts[0] == "admin":
                if not srv.cfg["admin_api"]:
                    self._drain()
                    return self._spring_error(404, "Not Found")
                return self._admin(method, parts[1:])
            if parts[:2] == ["api", "v0"]:
                return self._api(method, [urllib.parse.unquote(p) for p in parts[2:]])
            if dashboard.routes(parts):
                return dashboard.handle(self, method, parts)
            self._drain()
            self._spring_error(404, "No message available")
        except _TooLarge as e:
            self._spring_error(413, "Request body larger than %s bytes"
                               % (e.args[0] if e.args else srv.cfg["max_body_bytes"]))
        except _Framing as e:
            self.close_connection = True
            srv.log(1, "%s: %s: %s" % (self.client_address[0], e.status, e))
            self._spring_error(e.status, str(e))
        except _BadRequest as e:
            self._spring_error(400, str(e))
        except _Unavailable:
            self._spring_error(503, "server is restarting")
        except (_Drop, OSError):  # connection trouble and injected cuts: no reply
            raise
        except Exception as e:  # a bug or a broken file: answer 500, keep serving
            self.close_connection = True
            srv.log(0, "%s %s failed: %r" % (self.command, self._path, e))
            self._spring_error(500, "internal error")

    # -- /oauth/token ------------------------------------------------------------------------
    def _form(self, body):
        """Form fields from the query and the body; tolerant of unencoded values (the seed)."""
        out = {}
        for src in (urllib.parse.urlsplit(self.path).query, body.decode("utf-8", "replace")):
            for pair in src.split("&"):
                if pair:
                    k, _, v = pair.partition("=")
                    out.setdefault(urllib.parse.unquote_plus(k), urllib.parse.unquote_plus(v))
        return out

    def _token(self, method):
        srv = self.server.owner
        srv.stats.add(token_requests=1)
        form = self._form(self._body(_SMALL_BODY))
        who = client_key(self.client_address[0])
        user = form.get("username") if form.get("grant_type") == "password" else None
        if user not in srv.cfg["users"]:
            user = None  # throttled per configured user only: bounded, and nothing to guess
        wait = max(srv.logins_by_client.wait(who),
                   srv.logins_by_user.wait(user) if user else 0.0)
        if wait > 0:
            srv.stats.add(token_errors=1, logins_throttled=1)
            secs = str(int(wait) + 1)
            return self._send(429, {"error": "temporarily_unavailable",
                                    "error_description": "too many failed logins: try again "
                                    "in %s s" % secs}, headers=(("Retry-After", secs),))
        client_id, secret = None, None
        auth = self.headers.get("Authorization") or ""
        if auth[:6].lower() == "basic ":
            try:
                client_id, _, secret = base64.b64decode(auth[6:].strip()).decode().partition(":")
            except (ValueError, binascii.Error, UnicodeError):
                client_id = None
        elif "client_id" in form:
            client_id, secret = form["client_id"], form.get("client_secret", "")
        if client_id is None or not srv.tokens.check_client(client_id, secret):
            srv.stats.add(token_errors=1)
            if auth or client_id is not None:  # a wrong secret, not a missing one
                srv.login_failed(who, None, "client %r" % (client_id or "")[:40])
            return self._send(401, {"timestamp": _now_iso(), "status": 401,
                                    "error": "Unauthorized", "message": "Unauthorized",
                                    "path": "/oauth/token"},
                              headers=(("WWW-Authenticate", 'Basic realm="oauth2/client"'),))
        if method != "POST":
            srv.stats.add(token_errors=1)
            return self._send(405, {"error": "method_not_allowed",
                                    "error_description": "Request method '%s' not supported"
                                    % method})
        grant = form.get("grant_type")
        try:
            if not grant:
                raise OAuthError(400, "invalid_request", "Missing grant type")
            if grant == "password":
                try:
                    reply = srv.tokens.password_grant(client_id, form)
                except OAuthError as e:
                    if e.code == "invalid_grant":
                        srv.login_failed(who, user, "user %r" % form.get("username", "")[:40])
                    raise
                srv.logins_by_client.succeeded(who)
                if user:
                    srv.logins_by_user.succeeded(user)
            elif grant == "refresh_token":
                reply = srv.tokens.refresh_grant(client_id, form)
            else:
                raise OAuthError(400, "unsupported_grant_type",
                                 "Unsupported grant type: " + grant[:40])
        except OAuthError as e:
            srv.stats.add(token_errors=1)
            return self._oauth_error(e)
        self._send(200, reply, headers=(("Cache-Control", "no-store"), ("Pragma", "no-cache")))

    # -- /api/v0 -----------------------------------------------------------------------------
    def _bearer(self):
        auth = self.headers.get("Authorization") or ""
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip()
        tok = self._query.get("access_token")
        return tok[0] if tok else None

    def _authorize(self, need):
        """Claims of the caller, or None after answering 401/403 (body drained)."""
        srv = self.server.owner
        token = self._bearer()
        try:
            if not token:
                raise OAuthError(401, "unauthorized", _NO_AUTH)
            claims = srv.tokens.check_access(token)
        except OAuthError as e:
            srv.stats.add(auth_failures=1)
            self._drain()
            self._oauth_error(e, realm="oauth2-resource")
            return None
        have = claims.get("authorities") or []
        if not any(a in have for a in need):
            srv.stats.add(auth_failures=1)
            self._drain()
            self._send(403, {"error": "access_denied", "error_description": "Access is denied"})
            return None
        return claims

    def _api(self, method, parts):
        srv = self.server.owner
        write = len(parts) == 2 and parts[1] == "write"
        need = ("TB_ALLOW_WRITE",) if write else ("TB_ALLOW_READ", "TB_ALLOW_WRITE")
        if self._authorize(need) is None:
            return
        delay = float(srv.faults.get("delay_s") or 0)
        if delay > 0:
            time.sleep(delay)
        if parts == ["streams"] and method == "GET":
            return self._send(200, [{"key": s, "name": s, "symbols": len(srv.store.symbols(s))}
                                    for s in sorted(srv.store.specs)])
        if parts == ["v"] and method == "GET":
            return self._send(200, {"version": "tools.ingest"})
        if len(parts) < 2 or len(parts) > 3:
            self._drain()
            return self._spring_error(404, "No message available")
        stream = parts[0]
        if not srv.store.has_stream(stream):
            self._drain()
            return self._spring_error(400, "Unknown stream %s." % stream)
        if write and method == "POST":
            return self._write(stream)
        if parts[1] == "symbols" and method == "GET" and len(parts) == 2:
            return self._send(200, srv.store.symbols(stream))
        if parts[1] == "range" and method == "GET" and len(parts) == 2:
            syms = self._list_param("symbols")
            r = srv.store.time_range(stream, syms or None)
            if r is None:
                return self._send(200, {})
            return self._send(200, {"start": schema.format_timestamp(r[0]),
                                    "end": schema.format_timestamp(r[1])})
        if parts[-1] == "select" and method in ("GET", "POST"):
            return self._select(stream, parts[1] if len(parts) == 3 else None, method)
        self._drain()
        self._spring_error(405 if parts[-1] in ("write", "select", "symbols", "range")
                           else 404, "Request method '%s' not supported" % method)

    def _list_param(self, name):
        out = []
        for v in self._query.get(name, []):
            out += [s for s in v.split(",") if s]
        if len(out) > 1000:
            raise _BadRequest("more than 1000 %s" % name)
        return out

    def _write(self, stream):
        srv = self.server.owner
        mode = (self._query.get("writeMode") or ["APPEND"])[0]
        if mode not in _WRITE_MODES:
            self._drain()
            return self._spring_error(400, "Failed to convert value of type 'java.lang.String'"
                                      " to required type 'LoadingOptions$WriteMode'")
        if srv.faults.take("drop_before_body"):
            srv.stats.add(dropped_before_body=1)
            raise _Drop()
        body = self._read_body()
        if srv.faults.get("read_only"):
            return self._send(403, '{"message": "Timebase connection is read-only", '
                                   '"error"="Write failed."} ')
        if srv.faults.take("error"):
            srv.stats.add(injected_errors=1)
            status = int(srv.faults.get("error_status"))
            return self._spring_error(status, "injected fault")
        with _PARSE_SLOTS:  # the parsed batch is the big allocation: two at a time
            try:
                msgs = schema.parse_batch(body, int(srv.cfg["max_messages"]))
            except schema.BatchError as e:
                return self._spring_error(e.status, str(e))
            del body
            errors, rejects, written = self._store_batch(stream, msgs)
        if srv.faults.take("drop_after_store"):
            srv.stats.add(dropped_after_store=1)
            raise _Drop()
        if rejects > len(errors):  # the reply lists max_error_entries, then the count
            errors.append({"message": "Message is invalid: %d more (not listed)"
                           % (rejects - len(errors)),
                           "error": "java.lang.IllegalArgumentException:%d messages rejected "
                           "in all, the first %d listed" % (rejects, len(errors)),
                           "stacktrace": "", "rejected": rejects})
        self._send(200, errors)

    def _store_batch(self, stream, msgs):
        """Validate and store; -> (error entries, rejected count, written count)."""
        srv = self.server.owner
        types = srv.store.specs[stream]["types"]
        cap = int(srv.cfg["max_error_entries"])
        rows, where, errors, rejects = [], [], [], 0
        for i, m in enumerate(msgs):
            try:
                rows.append(schema.validate(m, types))
                where.append(i)
            except schema.MessageError as e:
                rejects += 1
                if len(errors) < cap:
                    errors.append(schema.error_entry(i, m, e))
                if str(e).startswith("Unknown type: "):
                    srv.unknown_class(stream, str(e)[14:])
        try:
            res = srv.store.write(stream, rows) if rows else None
        except RuntimeError:  # store closed: shutting down or restarting
            raise _Unavailable()
        written = dups = collisions = 0
        if res is not None:
            written, dups, collisions = res.written, res.duplicates, res.collisions
            for j, text in res.rejected:  # SQLite refused it: a per-message error too
                rejects += 1
                if len(errors) < cap:
                    i = where[j]
                    errors.append(schema.error_entry(i, msgs[i], schema.MessageError(text)))
            if res.rejected:
                errors.sort(key=lambda e: e["index"])
            if collisions:
                srv.collided(stream, [rows[j] for j in res.collided])
        srv.stats.batch(len(msgs), written, dups, rejects, collisions)
        if rejects:
            srv.log(1, "%s: %d of %d messages rejected, first: %s" % (
                stream, rejects, len(msgs), errors[0]["error"][:200]))
        return errors, rejects, written

    def _select(self, stream, symbol, method):
        srv = self.server.owner
        if method == "POST":
            try:
                req = json.loads(self._body(_SMALL_BODY) or b"{}")
                if not isinstance(req, dict):
                    raise ValueError("not an object")
            except (ValueError, RecursionError) as e:
                raise _BadRequest("bad select request: %s" % e)
        else:
            self._drain()
            q = self._query
            req = {"symbols": self._list_param("symbols"), "types": self._list_param("types")}
            for k in ("from", "to", "offset", "rows", "reverse"):
                if k in q:
                    req[k] = q[k][0]
        try:
            syms = [symbol] if symbol else _names(req.get("symbols"), "symbols")
            types = _names(req.get("types"), "types")
            since = parse_time(req["from"]) if req.get("from") else None
            until = parse_time(req["to"]) + 1 if req.get("to") else None
            offset = int(req.get("offset") or 0)
            rows = int(req.get("rows") or srv.cfg["select_rows_default"])
            rows = max(0, min(rows, int(srv.cfg["select_rows_max"])))
            reverse = str(req.get("reverse", "false")).lower() == "true"
        except (ValueError, TypeError) as e:
            raise _BadRequest("bad select request: %s" % e)
        fields = _config.stream_fields(srv.store.specs[stream])
        it = srv.store.query(stream, symbol=syms, since=since, until=until, types=types,
                             reverse=reverse)
        out = []
        for i, r in enumerate(it):
            if i < offset:
                continue
            if len(out) >= rows:
                break
            m = {"$type": r["type"], "symbol": r["symbol"], "timestamp": r["timestamp"]}
            for f, kind in fields.items():
                v = r.get(f)
                if v is not None:  # WebAdmin prints FLOAT as strings and skips nulls
                    m[f] = _float_text(v) if kind == "FLOAT" else (
                        bool(v) if kind == "BOOLEAN" else v)
            out.append(m)
        self._send(200, out)

    # -- /admin ------------------------------------------------------------------------------
    def _admin(self, method, parts):
        srv = self.server.owner
        body = self._body(_SMALL_BODY)
        if parts == ["faults"] and method == "GET":
            return self._send(200, srv.faults.snapshot())
        if method != "POST":
            return self._spring_error(405, "use POST")
        if parts == ["faults"]:
            try:
                knobs = json.loads(body or b"{}")
                snap = srv.faults.reset() if knobs.pop("reset", False) else None
                snap = srv.apply_faults(knobs) if knobs or snap is None else snap
            except (ValueError, KeyError, AttributeError, TypeError, RecursionError) as e:
                raise _BadRequest("bad faults: %s" % e)
            return self._send(200, snap)
        if parts == ["revoke"]:
            srv.tokens.revoke_all()
            return self._send(200, {"revoked": True})
        if parts == ["rotate-key"]:
            srv.tokens.rotate_key()
            return self._send(200, {"rotated": True})
        if parts == ["restart"]:
            # Reply once the store is open again: a client that reconnects on the reply
            # must not meet the 503 a write gets while the store is closed.
            self.close_connection = True
            srv.restart(keep=self.request)
            return self._send(200, {"restarting": True})
        if parts == ["shutdown"]:
            self.close_connection = True
            self._send(200, {"stopping": True})
            threading.Thread(target=srv.stop, daemon=True).start()
            return
        if parts == ["stats", "reset"]:
            srv.stats.reset()
            return self._send(200, srv.stats_snapshot())
        self._spring_error(404, "No message available")


class _TooLarge(Exception):
    pass


class _BadRequest(Exception):
    pass


class _Unavailable(Exception):
    pass


class _Framing(Exception):
    """Malformed or unsupported request framing: answered ``status``, then the connection
    is closed (where the next request would start is unknown)."""

    def __init__(self, status, text):
        Exception.__init__(self, text)
        self.status = status


class _HTTPServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64
    _backoff = 0.0

    def get_request(self):
        """accept(); when file handles (or buffers) run out, sleep 50 ms doubling to 1 s
        before the next try instead of spinning on a listening socket that stays readable."""
        try:
            pair = self.socket.accept()
        except OSError as e:
            if e.errno in _OUT_OF_HANDLES:
                self._backoff = min(1.0, self._backoff * 2 or 0.05)
                self.owner.accept_failed(e, self._backoff)
                time.sleep(self._backoff)
            raise
        self._backoff = 0.0
        return pair

    def verify_request(self, request, client_address):
        return self.owner.admit(client_address)  # False: closed at once

    def process_request(self, request, client_address):
        try:
            socketserver.ThreadingMixIn.process_request(self, request, client_address)
        except BaseException:
            self.owner.release(client_address)  # no thread: it would never release it
            raise

    def process_request_thread(self, request, client_address):
        try:
            socketserver.ThreadingMixIn.process_request_thread(self, request, client_address)
        finally:
            self.owner.release(client_address)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, ssl.SSLError):
            self.owner.stats.add(tls_failures=1)
            self.owner.log(1, "TLS handshake failed from %s: %s" % (
                client_address[0], getattr(exc, "reason", None) or exc))
        elif isinstance(exc, (ConnectionError, TimeoutError)):
            pass
        else:
            self.owner.log(0, "error on a connection from %s: %r" % (client_address[0], exc))


class IngestServer:
    """A WebAdmin-compatible ingest server; see the package docstring for examples.

    ``config``: a dict of overrides, a path to a JSON file, or None (defaults).
    ``tls``: True (local CA in ``data_dir/tls``), or False for plain HTTP (debugging only).
    ``port=0`` picks a free port; ``.port``, ``.url``, ``.ca_pem``, ``.ca_der`` tell the result.
    ``verbose``: 0 errors only, 1 adds rejects and TLS failures, 2 adds every request line.
    ``names``: DNS names and IP addresses the certificate must hold besides localhost and
    127.0.0.1 (bound to every interface, the machine's own are added: ``certs``);
    ``.cert_names`` tells the result.
    """

    def __init__(self, data_dir, config=None, host="127.0.0.1", port=0, tls=True, verbose=0,
                 out=None, names=()):
        if isinstance(config, str):
            self.cfg = _config.load(config)
        else:
            self.cfg = _config.load(None, config)
        self.data_dir = data_dir
        os.makedirs(data_dir, exist_ok=True)
        self.host = host
        self.verbose = verbose
        self.out = out or sys.stderr
        self.notes = self._guard_exposure()  # may raise ConfigError: nothing opened yet
        names = list(names)
        if host in ("", "0.0.0.0", "::"):
            names += certs.machine_names()
        elif not is_loopback(host):
            names.append(host)
        self.tls_paths = certs.ensure(data_dir, names) if tls else None
        self.cert_names = self.tls_paths["names"] if tls else []
        if tls and self.tls_paths["reissued"]:
            self.notes.append("certificate: issued again for the new names (same CA: boards "
                              "that trust it keep working)")
        self.ssl_context = certs.server_context(self.tls_paths) if tls else None
        self.ca_pem = self.tls_paths["ca_pem"] if tls else None
        self.ca_der = self.tls_paths["ca_der"] if tls else None
        self.faults = Faults()
        self.stats = Stats()
        self.faults.update(**(self.cfg.get("faults") or {}))
        self.tokens = TokenService(self.cfg, faults=self.faults)
        self.store = Store(data_dir, self.cfg["streams"], log=lambda t: self.log(0, t))
        self.store.prepare()
        self.logins_by_client = LoginThrottle(self.cfg["login_failures_per_client"],
                                              self.cfg["login_lockout_max_s"])
        self.logins_by_user = LoginThrottle(self.cfg["login_failures_per_user"],
                                            self.cfg["login_lockout_max_s"])
        self._conns = set()
        self._conns_lock = threading.Lock()
        self._per_client = {}
        self._open = 0
        self._collision_symbols = set()
        self._unknown_classes = set()
        self._thread = None
        self._serving = False
        self._stopping = False
        self._done = threading.Event()
        self.httpd = _HTTPServer((host, port), Handler)
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        self.url = "%s://%s:%d" % ("https" if tls else "http", host, self.port)

    def log(self, level, text):
        if level <= self.verbose:
            print("ingest: " + text, file=self.out, flush=True)

    # -- exposure ----------------------------------------------------------------------------
    def _guard_exposure(self):
        """Refuse what must not reach a LAN; -> lines that say what is served, for the start.

        Users left at the built-in admin/admin are replaced, beyond loopback, by a password
        generated at first start into ``<data_dir>/credentials.json`` (mode 0600; later
        starts reuse it, on loopback too).  A configured user with the password "admin" (or
        none) is refused beyond loopback, and so is the admin API (it has no authentication).
        """
        local = is_loopback(self.host)
        where = "on loopback only" if local else "beyond loopback (%s)" % (self.host or "all")
        if self.cfg["admin_api"] and not local:
            raise _config.ConfigError("the admin API has no authentication: it is served on "
                                      "loopback only (drop --admin or use --host 127.0.0.1)")
        notes = []
        path = os.path.join(self.data_dir, "credentials.json")
        if self.cfg["users"] == _config.DEFAULTS["users"]:
            if os.path.exists(path) or not local:
                made = self._credentials(path)
                self.cfg["users"] = made[0]
                notes.append("users: %s, password%s in %s%s" % (
                    ", ".join(sorted(made[0])), "s" if len(made[0]) > 1 else "", path,
                    " (generated now, mode 0600)" if made[1] else ""))
            else:
                notes.append("users: admin/admin (the built-in default: served on loopback "
                             "only; beyond it a password is generated at first start)")
        else:
            weak = sorted(n for n, u in self.cfg["users"].items()
                          if str(u.get("password", "")) in _DEFAULT_PASSWORDS)
            if weak and not local:
                raise _config.ConfigError(
                    "user %s has a default or empty password: not served %s; set a password "
                    "in the config file" % (", ".join(weak), where))
            notes.append("users: %s (from the config)" % ", ".join(sorted(self.cfg["users"])))
        c = self.cfg
        notes.append("limits: /write body %d bytes and %d messages, %d error entries listed; "
                     "request deadline %s s, idle %s s; %d connections (%d per client); "
                     "logins locked out after %d failures per client, %d per user" % (
                         c["max_body_bytes"], c["max_messages"], c["max_error_entries"],
                         c["request_timeout_s"], c["idle_timeout_s"], c["max_connections"],
                         c["max_connections_per_client"], c["login_failures_per_client"],
                         c["login_failures_per_user"]))
        try:
            import resource
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        except (ImportError, OSError, ValueError):
            soft = -1
        if 0 <= soft < c["max_connections"] + 64:
            notes.append("WARNING: the open-files limit (%d) is below max_connections + 64: "
                         "raise it (ulimit -n) or lower max_connections" % soft)
        return notes

    def _credentials(self, path):
        """({user: spec}, created now) from credentials.json, made at first use."""
        if os.path.exists(path):
            try:
                with open(path) as f:
                    users = json.load(f)["users"]
                for u in users.values():
                    u["password"]  # noqa: B018 - each needs one
                return users, False
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
                raise _config.ConfigError("%s: %s (delete it to generate a new one)" % (path, e))
        users = {"admin": {"password": secrets.token_urlsafe(12),
                           "authorities": ["TB_ALLOW_READ", "TB_ALLOW_WRITE"]}}
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"users": users}, f, indent=1)
        os.replace(tmp, path)
        return users, True

    # -- connections and logins --------------------------------------------------------------
    def admit(self, client_address):
        """Count a new connection in, or refuse it (False) past the caps."""
        who = client_key(client_address[0])
        with self._conns_lock:
            mine = self._per_client.get(who, 0)
            if self._open < int(self.cfg["max_connections"]) and \
                    mine < int(self.cfg["max_connections_per_client"]):
                self._open += 1
                self._per_client[who] = mine + 1
                return True
        self.stats.add(connections_refused=1)
        self.log(1, "connection from %s refused: %s" % (
            client_address[0], "per-client cap" if mine else "connection cap"))
        return False

    def release(self, client_address):
        who = client_key(client_address[0])
        with self._conns_lock:
            self._open -= 1
            left = self._per_client.get(who, 1) - 1
            if left > 0:
                self._per_client[who] = left
            else:
                self._per_client.pop(who, None)

    def accept_failed(self, err, backoff):
        first = not self.stats.snapshot()["accept_failures"]
        self.stats.add(accept_failures=1)
        self.log(0 if first else 2, "accept failed (%s): next try in %.2f s" % (
            os.strerror(err.errno), backoff))

    def login_failed(self, who, user, what):
        self.stats.add(login_failures=1)
        self.logins_by_client.failed(who)
        if user:
            self.logins_by_user.failed(user)
        self.log(1, "failed login from %s (%s)" % (who, what))

    def collided(self, stream, rows):
        """Log collisions: the first one of each symbol always, the others at -v."""
        new = []
        with self._conns_lock:
            for r in rows:
                if r["symbol"] not in self._collision_symbols and \
                        len(self._collision_symbols) < 1000:
                    self._collision_symbols.add(r["symbol"])
                    new.append(r)
        for r in new:
            self.log(0, "%s: symbol %r sends records under keys already taken by different "
                     "records (e.g. %s): stored, flagged collision=1 (two boards with one "
                     "symbol, or a queue that restarted?)" % (
                         stream, r["symbol"][:60],
                         "seq %d" % r["seq"] if r["seq"] is not None else
                         "timestamp " + schema.format_timestamp(r["capture_ns"])))
        self.log(1, "%s: %d records stored as collisions" % (stream, len(rows)))

    def unknown_class(self, stream, tname):
        """Log once per stream and class name that messages of a class the stream lacks are
        refused (e.g. health records sent to a stream made with the weather class only)."""
        with self._conns_lock:
            key = (stream, tname)
            if key in self._unknown_classes or len(self._unknown_classes) >= 100:
                return
            self._unknown_classes.add(key)
        self.log(0, "%s: messages of class %r refused: the stream has no such class (%s); "
                 "add it to the stream's types (docs/ingest.md \"Health records on a stream "
                 "without the class\"); logged once" % (
                     stream, tname[:60], ", ".join(sorted(self.store.specs[stream]["types"]))))

    def apply_faults(self, knobs):
        """``faults.update(**knobs)`` from a dict (kept for callers that pass one)."""
        return self.faults.update(**dict(knobs))

    def stats_snapshot(self):
        d = self.stats.snapshot()
        d["tokens_issued"] = self.tokens.grants
        d["tokens_refreshed"] = self.tokens.refreshes
        return d

    def track(self, sock, add):
        with self._conns_lock:
            if add:
                self._conns.add(sock)
            else:
                self._conns.discard(sock)

    def close_connections(self, keep=None):
        with self._conns_lock:
            socks = [s for s in self._conns if s is not keep]
        for s in socks:
            try:
                socket.socket.shutdown(s, socket.SHUT_RDWR)
            except OSError:
                pass

    # -- life cycle --------------------------------------------------------------------------
    def start(self):
        """Serve in a background thread; returns self (``with IngestServer(...).start()``)."""
        self._serving = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="ingest",
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self):
        """Serve in this thread until stop() is called from another one (or a signal)."""
        self._serving = True
        self.httpd.serve_forever(poll_interval=0.2)

    def restart(self, keep=None):
        """What a WebAdmin restart does to clients: new signing key (every token invalid),
        open connections cut, store closed and reopened.  Data and port stay."""
        self.tokens = TokenService(self.cfg, faults=self.faults)
        self.close_connections(keep)
        self.store.close()  # waits for the transaction in flight; writes meanwhile get 503
        self.store = Store(self.data_dir, self.cfg["streams"], log=lambda t: self.log(0, t))
        self.store.prepare()

    def stop(self):
        """Stop accepting, cut connections, let the current transaction finish, close the
        store.  Returns the final figures (also logged at verbosity 0)."""
        if self._stopping:
            self._done.wait()
            return self.stats_snapshot()
        self._stopping = True
        if self._serving:
            self.httpd.shutdown()
        self.httpd.server_close()
        self.close_connections()
        self.store.close()
        figs = self.stats_snapshot()
        self.log(0, "figures: " + json.dumps(figs, sort_keys=True))
        self._done.set()
        return figs

    def wait(self, timeout=None):
        """Block until stop() has finished (e.g. after POST /admin/shutdown)."""
        return self._done.wait(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
