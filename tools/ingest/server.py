"""The HTTP(S) side: WebAdmin's endpoints on ``http.server`` with one thread per connection.

HTTP/1.1 keep-alive; HTTP/1.0 clients get their answer and a close (the seed's urequests reads
to EOF); replies always carry Content-Length, never chunked; request bodies may be sized or
chunked.  See docs/ingest.md for the wire format and ``IngestServer`` for the Python API.
"""

import base64
import binascii
import http.server
import json
import os
import socket
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse

from . import certs, schema
from . import config as _config
from .faults import Faults, Stats
from .store import Store, parse_time
from .tokens import OAuthError, TokenService

_JSON = "application/json;charset=UTF-8"
_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 413: "Payload Too Large", 500: "Internal Server Error",
            503: "Service Unavailable"}
_WRITE_MODES = ("APPEND", "REWRITE", "TRUNCATE", "INSERT")
_NO_AUTH = ("Full authentication is required to access this resource")
_PARSE_SLOTS = threading.BoundedSemaphore(2)  # /write bodies parsed at once (memory bound)


class _Drop(Exception):
    """Close the connection now, without a reply (fault injection)."""


def _now_iso():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03d+0000" % (t % 1 * 1000)


def _float_text(v):
    return None if v is None else repr(float(v))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tools.ingest"

    def version_string(self):
        return self.server_version

    # -- connection --------------------------------------------------------------------------
    def setup(self):
        srv = self.server.owner
        self.request.settimeout(float(srv.cfg["idle_timeout_s"]))
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if srv.ssl_context is not None:
            self.request = srv.ssl_context.wrap_socket(self.request, server_side=True)
        srv.track(self.request, True)
        srv.stats.add(connections=1)
        http.server.BaseHTTPRequestHandler.setup(self)

    def finish(self):
        try:
            http.server.BaseHTTPRequestHandler.finish(self)
        except OSError:
            pass
        self.server.owner.track(self.request, False)

    def log_message(self, fmt, *args):  # the request line only: never headers or bodies
        self.server.owner.log(2, "%s %s" % (self.address_string(), fmt % args))

    def handle_one_request(self):
        try:
            http.server.BaseHTTPRequestHandler.handle_one_request(self)
        except _Drop:
            self.close_connection = True
            self._cut()
        except (ConnectionError, TimeoutError, ssl.SSLError):
            self.close_connection = True

    def _cut(self):
        """Drop the TCP connection as a network fault would (no TLS close_notify)."""
        try:
            socket.socket.shutdown(self.connection, socket.SHUT_RDWR)
        except OSError:
            pass

    # -- request helpers ---------------------------------------------------------------------
    def _read_body(self):
        """The request body (Content-Length or chunked).  Over max_body_bytes: read and
        discarded (closing with unread data would make TCP reset the 413 reply), _TooLarge."""
        cap = int(self.server.owner.cfg["max_body_bytes"])
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        parts, total = [], 0
        if "chunked" in te:
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise ConnectionError("eof in chunked body")
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += n
                if total > cap:
                    self._discard(n)
                else:
                    parts.append(self._read_exact(n))
                self.rfile.readline(1024)
        else:
            total = int(self.headers.get("Content-Length") or 0)
            if total > cap:
                if total > 64 * cap:  # not worth reading: answer and close
                    self.close_connection = True
                    raise _TooLarge()
                self._discard(total)
            elif total:
                parts.append(self._read_exact(total))
        if total > cap:
            raise _TooLarge()
        self.server.owner.stats.add(bytes_in=total)
        return b"".join(parts)

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
        self._query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        parts = [p for p in url.path.split("/") if p]
        try:
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
            self._drain()
            self._spring_error(404, "No message available")
        except _TooLarge:
            self._spring_error(413, "Request body larger than %s bytes"
                               % srv.cfg["max_body_bytes"])
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

    def _drain(self):
        """Read and discard a body we do not need, so that keep-alive stays in step."""
        if self.headers.get("Content-Length") or self.headers.get("Transfer-Encoding"):
            self._read_body()

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
        body = self._read_body()
        form = self._form(body)
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
                reply = srv.tokens.password_grant(client_id, form)
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
                req = json.loads(self._read_body() or b"{}")
                if not isinstance(req, dict):
                    raise ValueError("not an object")
            except ValueError as e:
                raise _BadRequest("bad select request: %s" % e)
        else:
            self._drain()
            q = self._query
            req = {"symbols": self._list_param("symbols"), "types": self._list_param("types")}
            for k in ("from", "to", "offset", "rows", "reverse"):
                if k in q:
                    req[k] = q[k][0]
        try:
            syms = [symbol] if symbol else (req.get("symbols") or None)
            since = parse_time(req["from"]) if req.get("from") else None
            until = parse_time(req["to"]) + 1 if req.get("to") else None
            offset = int(req.get("offset") or 0)
            rows = int(req.get("rows") or srv.cfg["select_rows_default"])
            rows = max(0, min(rows, int(srv.cfg["select_rows_max"])))
            reverse = str(req.get("reverse", "false")).lower() == "true"
        except (ValueError, TypeError) as e:
            raise _BadRequest("bad select request: %s" % e)
        fields = _config.stream_fields(srv.store.specs[stream])
        it = srv.store.query(stream, symbol=syms, since=since, until=until,
                             types=req.get("types") or None, reverse=reverse)
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
        body = self._read_body()
        if parts == ["faults"] and method == "GET":
            return self._send(200, srv.faults.snapshot())
        if method != "POST":
            return self._spring_error(405, "use POST")
        if parts == ["faults"]:
            try:
                knobs = json.loads(body or b"{}")
                snap = srv.faults.reset() if knobs.pop("reset", False) else None
                snap = srv.apply_faults(knobs) if knobs or snap is None else snap
            except (ValueError, KeyError, AttributeError) as e:
                raise _BadRequest("bad faults: %s" % e)
            return self._send(200, snap)
        if parts == ["revoke"]:
            srv.tokens.revoke_all()
            return self._send(200, {"revoked": True})
        if parts == ["rotate-key"]:
            srv.tokens.rotate_key()
            return self._send(200, {"rotated": True})
        if parts == ["restart"]:
            self.close_connection = True
            self._send(200, {"restarting": True})
            srv.restart(keep=self.request)
            return
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


class _HTTPServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

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
    """

    def __init__(self, data_dir, config=None, host="127.0.0.1", port=0, tls=True, verbose=0,
                 out=None):
        if isinstance(config, str):
            self.cfg = _config.load(config)
        else:
            self.cfg = _config.load(None, config)
        self.data_dir = data_dir
        os.makedirs(data_dir, exist_ok=True)
        self.host = host
        self.verbose = verbose
        self.out = out or sys.stderr
        self.tls_paths = certs.ensure(data_dir) if tls else None
        self.ssl_context = certs.server_context(self.tls_paths) if tls else None
        self.ca_pem = self.tls_paths["ca_pem"] if tls else None
        self.ca_der = self.tls_paths["ca_der"] if tls else None
        self.faults = Faults()
        self.stats = Stats()
        self.faults.update(**(self.cfg.get("faults") or {}))
        self.tokens = TokenService(self.cfg, faults=self.faults)
        self.store = Store(data_dir, self.cfg["streams"], log=lambda t: self.log(0, t))
        self._conns = set()
        self._conns_lock = threading.Lock()
        self._collision_symbols = set()
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
