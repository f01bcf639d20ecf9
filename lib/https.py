"""A small HTTP/1.1 client for one server: TLS verified, keep-alive, streamed bodies.

Runs unchanged on MicroPython (ESP32 and unix port, mbedTLS) and CPython.

* TLS: the server certificate is checked against the CA file given as
  ``ca_file`` (PEM or DER; PEM is converted to DER here because some mbedTLS
  builds lack the PEM parser), with SNI and host name check (``server_hostname``).
  MicroPython's ``SSLContext`` defaults to CERT_NONE, so ``CERT_REQUIRED`` is set
  explicitly.  ``insecure=True`` is the only way to skip the check and is
  printed loudly on every connection.
* Plain ``http://`` sends the password and tokens readable by anyone on the
  path: it is refused (ValueError) unless ``insecure=True``, and then printed
  loudly when the client is made and on every connection.
* Every socket operation has a timeout (``timeout_s``).
* One connection is kept alive and reused; a reused connection that turns out
  to be dead before any reply byte is replaced once, transparently.
* Request bodies: bytes/str, or a callable returning an iterable of chunks
  (called again if the request has to be re-sent) with ``length`` given, so the
  body is never held whole in RAM.  Without a length the body goes chunked.
* Responses are parsed incrementally into a preallocated buffer; at most
  ``max_body`` bytes of body are kept (``Response.truncated`` tells), the rest
  is read and dropped.
* Failures raise an ``HTTPError`` subclass whose ``category`` says what went
  wrong: "dns", "connect", "tls", "timeout", "reset", "protocol", "status".
  A reply that breaks HTTP (a bad status line, header, Content-Length or chunk
  size) is "protocol"; "tls" is kept for the TLS layer.  A reason phrase or a
  kept header value that is not UTF-8 is allowed (RFC 9110 obs-text): its
  other bytes show as "?".

Example::

    import https
    c = https.Client("https://ingest.local:8443", ca_file="/certs/ca.der")
    r = c.request("GET", "/ping")
    print(r.status, r.body)
"""

import gc
import socket
import sys

from micropython import const

try:
    import ssl
except ImportError:  # pragma: no cover - ports built without TLS
    ssl = None

_MP = sys.implementation.name == "micropython"
_ETIMEDOUT = const(110)
_EAGAIN = const(11)
_LINE_MAX = const(256)  # bytes of a status/header line kept (the rest is skipped)
_LINE_PIECES = const(32)  # a header line longer than 32 * _LINE_MAX is an error
_HEADERS_MAX = const(64)  # most header lines accepted in one response
_CHUNK = const(512)  # socket read size
_KEEP = (b"content-type", b"www-authenticate", b"retry-after")  # response headers kept
_SIZE_DIGITS = const(15)  # most digits of a Content-Length or chunk size


class HTTPError(OSError):
    """Base of all client errors; ``category`` names the kind of failure."""

    category = "http"


class DNSError(HTTPError):
    category = "dns"


class ConnectError(HTTPError):
    category = "connect"


class TLSError(HTTPError):
    category = "tls"


class Timeout(HTTPError):
    category = "timeout"


class ConnectionLost(HTTPError):
    """The peer closed or reset the connection in the middle of an exchange."""

    category = "reset"


class ProtocolError(HTTPError):
    category = "protocol"


class StatusError(HTTPError):
    """Raised by ``Response.raise_for_status`` for a status >= 400."""

    category = "status"

    def __init__(self, status, reason, body=b""):
        super().__init__("HTTP %d %s" % (status, reason))
        self.status = status
        self.body = body


class Response:
    """``status`` (int), ``reason`` (str), ``headers`` (dict of lower-case names
    in ``_KEEP``), ``body`` (bytes, at most ``max_body``), ``truncated`` (bool)."""

    def __init__(self, status, reason, headers, body, truncated):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.truncated = truncated

    def raise_for_status(self):
        if self.status >= 400:
            raise StatusError(self.status, self.reason, self.body)
        return self

    def __repr__(self):
        return "<Response %d %s, %d bytes>" % (self.status, self.reason, len(self.body))


def parse_url(url):
    """``(scheme, host, port, base_path)`` of ``http[s]://host[:port][/path]``."""
    if url.startswith("https://"):
        scheme, rest, port = "https", url[8:], 443
    elif url.startswith("http://"):
        scheme, rest, port = "http", url[7:], 80
    else:
        raise ValueError("URL must start with https:// or http://")
    i = rest.find("/")
    hostport, path = (rest, "") if i < 0 else (rest[:i], rest[i:].rstrip("/"))
    if hostport.startswith("["):  # [ipv6]:port
        j = hostport.find("]")
        host, tail = hostport[1:j], hostport[j + 1:]
        if tail.startswith(":"):
            port = int(tail[1:])
    elif ":" in hostport:
        host, p = hostport.rsplit(":", 1)
        port = int(p)
    else:
        host = hostport
    if not host:
        raise ValueError("URL has no host")
    return scheme, host, port, path


def pem_to_der(data):
    """The DER certificates in PEM text (bytes or str), as a list of bytes."""
    import binascii

    if isinstance(data, str):
        data = data.encode()
    out = []
    start = 0
    while True:
        b = data.find(b"-----BEGIN CERTIFICATE-----", start)
        if b < 0:
            break
        b = data.find(b"\n", b) + 1
        e = data.find(b"-----END CERTIFICATE-----", b)
        if b <= 0 or e < 0:
            raise ValueError("truncated PEM certificate")
        out.append(binascii.a2b_base64(data[b:e].replace(b"\r", b"").replace(b"\n", b"")))
        start = e + 25
    return out


def load_ca(path):
    """The CA certificates in a PEM or DER file, as a list of DER bytes."""
    with open(path, "rb") as f:
        data = f.read()
    if b"-----BEGIN" in data:
        certs = pem_to_der(data)
        if not certs:
            raise ValueError("no certificate in %s" % path)
        return certs
    return [data]


def _size(text, base, what):
    """The non-negative integer written in ``text`` (bytes: digits of ``base`` 10 or 16
    only, no sign); ProtocolError naming ``what`` otherwise."""
    t = text.strip()
    ok = 0 < len(t) <= _SIZE_DIGITS
    for c in t:  # ints: int() alone would take "-1", "+5", "1_0" and " 0x1"
        if not (48 <= c <= 57 or (base == 16 and 97 <= c | 32 <= 102)):
            ok = False
    if not ok:
        raise ProtocolError("bad %s" % what)
    return int(t, base)


def _text(data):
    """``data`` (bytes) as str: UTF-8, else printable ASCII with "?" for the rest."""
    try:
        return data.decode()
    except UnicodeError:
        return "".join(chr(c) if 32 <= c < 127 else "?" for c in data)


def _is_timeout(e):
    if type(e).__name__ in ("timeout", "TimeoutError", "SSLWantReadError"):
        return True
    return isinstance(e, OSError) and bool(e.args) and e.args[0] in (_ETIMEDOUT, _EAGAIN)


def _is_tls(e):
    if isinstance(e, ValueError):  # MicroPython: certificate verification failed
        return True
    if ssl is not None and isinstance(e, getattr(ssl, "SSLError", ())):
        return True
    # MicroPython: mbedTLS error codes are large negative numbers
    code = e.args[0] if isinstance(e, OSError) and e.args else 0
    return isinstance(code, int) and code < -255


class Client:
    """HTTP/1.1 client bound to one base URL, keeping one connection alive.

    ``timeout_s``: per socket operation; ``max_body``: bytes of response body
    kept; ``resolve(host, port)`` -> sockaddr can replace DNS (tests, static IPs).
    """

    def __init__(self, base_url, ca_file=None, insecure=False, timeout_s=10, max_body=4096,
                 resolve=None, log=print):
        self.scheme, self.host, self.port, self.base_path = parse_url(base_url)
        self.timeout_s = timeout_s
        self.max_body = max_body
        self._resolve = resolve
        self._log = log
        self._sock = None
        self._in = None  # object with readline(limit) and read(n) (exact, short only at EOF)
        self._wr = _closed
        self._ctx = None
        self._got_reply = False
        self._dropped = False
        self.connects = 0  # connections opened (a figure for benchmarks)
        if self.scheme == "http":
            if not insecure:
                raise ValueError("plain http:// would send the password and tokens "
                                 "unencrypted: use https:// (or insecure=True, for a test)")
            self._log("https: WARNING: plain http:// to %s: the password and tokens cross "
                      "the network unencrypted" % self.host)
        else:
            if ssl is None:
                raise TLSError("this port has no ssl module")
            self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            if insecure:
                if hasattr(self._ctx, "check_hostname"):  # CPython refuses CERT_NONE otherwise
                    self._ctx.check_hostname = False  # type: ignore
                self._ctx.verify_mode = ssl.CERT_NONE
                self._log("https: WARNING: TLS certificate verification is OFF for %s" % self.host)
            else:
                if not ca_file:
                    raise ValueError("https needs ca_file (or insecure=True)")
                for der in load_ca(ca_file):
                    self._ctx.load_verify_locations(cadata=der)
                self._ctx.verify_mode = ssl.CERT_REQUIRED
        self.insecure = bool(insecure)

    def __repr__(self):
        return "<https.Client %s://%s:%d>" % (self.scheme, self.host, self.port)

    # -- connection -------------------------------------------------------
    def close(self):
        """Close the kept-alive connection (the next request opens a new one)."""
        s, self._sock = self._sock, None
        self._in = None
        if s is not None:
            try:
                s.close()
            except OSError:
                pass

    def _addr(self):
        if self._resolve is not None:
            try:
                return self._resolve(self.host, self.port)
            except OSError as e:
                raise DNSError("cannot resolve %s: %r" % (self.host, e))
        try:
            ai = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)
        except OSError as e:
            raise DNSError("cannot resolve %s: %r" % (self.host, e))
        if not ai:
            raise DNSError("no address for %s" % self.host)
        return ai[0][-1]

    def _connect(self):
        addr = self._addr()
        s = socket.socket()
        try:
            s.settimeout(self.timeout_s)
            try:  # TCP_NODELAY (6, 1 on Linux and lwIP): headers and body go in separate writes
                s.setsockopt(6, 1, 1)
            except (OSError, AttributeError):
                pass
            try:
                s.connect(addr)
            except OSError as e:
                if _is_timeout(e):
                    raise Timeout("connect to %s:%d timed out" % (self.host, self.port))
                raise ConnectError("connect to %s:%d failed: %r" % (self.host, self.port, e))
            if self.insecure:
                self._log("https: WARNING: %s to %s" % (
                    "unverified TLS" if self._ctx is not None else "unencrypted HTTP",
                    self.host))
            if self._ctx is not None:
                gc.collect()  # the handshake needs its largest blocks: defragment first
                try:
                    s = self._ctx.wrap_socket(s, server_hostname=self.host)
                except (OSError, ValueError) as e:
                    if _is_timeout(e):
                        raise Timeout("TLS handshake with %s timed out" % self.host)
                    raise TLSError("TLS handshake with %s failed: %s" % (
                        self.host, str(e).strip() or repr(e)))
        except BaseException:
            s.close()
            raise
        self._sock = s
        # MicroPython's (TLS) socket is a stream whose read(n) returns n bytes (fewer only at
        # EOF) and readline(limit) stops at LF; CPython's makefile("rb") behaves the same.
        self._in = s if _MP else s.makefile("rb")  # type: ignore
        self._wr = s.write if _MP else s.sendall  # type: ignore
        self.connects += 1

    # -- low-level I/O ----------------------------------------------------
    def _io_error(self, e, what):
        self.close()
        if isinstance(e, HTTPError):
            return e
        if _is_timeout(e):
            return Timeout("%s timed out" % what)
        if _is_tls(e):
            return TLSError("%s: TLS error %r" % (what, e))
        return ConnectionLost("%s failed: %r" % (what, e))

    def _send(self, data):
        if isinstance(data, str):
            data = data.encode()
        mv = memoryview(data)
        while len(mv):
            n = self._wr(mv)
            if n is None:
                if not _MP:  # CPython sendall returns None when everything went
                    return
                raise Timeout("send timed out")
            mv = mv[n:]

    def _readline(self):
        """One line as bytes, without CR LF; only its first _LINE_MAX bytes are kept
        (a WWW-Authenticate header may quote a whole token)."""
        line = None
        for _ in range(_LINE_PIECES):
            piece = self._in.readline(_LINE_MAX)  # type: ignore
            if piece is None:
                raise Timeout("receive timed out")
            if not piece:
                raise ConnectionLost("connection closed in headers")
            if line is None:
                line = piece
            if piece.endswith(b"\n"):
                return line.rstrip(b"\r\n")
        raise ProtocolError("header line too long")

    def _read_into(self, out, n, keep):
        """Read exactly ``n`` body bytes (``n`` < 0: until close), appending up to
        ``keep`` of them to ``out``; returns how many more may be kept."""
        while n != 0:
            want = _CHUNK if n < 0 or n > _CHUNK else n
            data = self._in.read(want)  # type: ignore
            if data is None:
                raise Timeout("receive timed out")
            if len(data) < want and n > 0:
                raise ConnectionLost("connection closed in body")
            k = len(data) if len(data) < keep else keep
            if k > 0:
                out.extend(data if k == len(data) else data[:k])
                keep -= k
            if k < len(data):
                self._dropped = True
            if n > 0:
                n -= len(data)
            elif len(data) < want:
                break  # EOF ends a close-delimited body
        return keep

    # -- requests ---------------------------------------------------------
    def request(self, method, path, headers=None, body=None, length=None):
        """Send one request and return its ``Response`` (any status).

        ``path`` is appended to the base URL's path.  ``headers``: dict or list
        of pairs.  ``body``: None, bytes/str, or a callable returning an iterable
        of bytes/str chunks; give ``length`` for a callable (else chunked).
        """
        reused = self._sock is not None
        for attempt in (0, 1):
            if self._sock is None:
                self._connect()
            try:
                self._write_request(method, path, headers, body, length)
                return self._read_response(method)
            except _Stale:
                self.close()
                if not reused or attempt:
                    raise ConnectionLost("connection closed before the reply")
                reused = False  # the server dropped an idle connection: open a new one
            except HTTPError:
                self.close()
                raise
            except (OSError, ValueError) as e:
                if reused and not attempt and not _is_timeout(e) and not self._got_reply:
                    self.close()
                    reused = False
                    continue
                raise self._io_error(e, "%s %s" % (method, path))
            except BaseException:  # e.g. MemoryError in the body generator: the stream is
                self.close()  # half-written, never reuse it
                raise
        raise ConnectionLost("unreachable")

    def _write_request(self, method, path, headers, body, length):
        self._got_reply = False
        if body is not None and not callable(body):
            if isinstance(body, str):
                body = body.encode()
            length = len(body)
        hdr = "%s %s%s HTTP/1.1\r\nHost: %s\r\n" % (method, self.base_path, path, self._host_hdr())
        items = headers.items() if isinstance(headers, dict) else (headers or ())
        for k, v in items:
            hdr += "%s: %s\r\n" % (k, v)
        if body is not None:
            if length is None:
                hdr += "Transfer-Encoding: chunked\r\n"
            else:
                hdr += "Content-Length: %d\r\n" % length
        self._send(hdr + "\r\n")
        hdr = None
        if body is None:
            return
        if not callable(body):
            self._send(body)
            return
        sent = 0
        for chunk in body():  # type: ignore
            if not chunk:
                continue
            if isinstance(chunk, str):
                chunk = chunk.encode()
            if length is None:
                self._send("%x\r\n" % len(chunk))
                self._send(chunk)
                self._send(b"\r\n")
            else:
                self._send(chunk)
            sent += len(chunk)
        if length is None:
            self._send(b"0\r\n\r\n")
        elif sent != length:
            self.close()
            raise ProtocolError("body was %d bytes, Content-Length said %d" % (sent, length))

    def _host_hdr(self):
        default = 443 if self.scheme == "https" else 80
        h = "[%s]" % self.host if ":" in self.host else self.host
        return h if self.port == default else "%s:%d" % (h, self.port)

    def _read_response(self, method):
        try:
            line = self._readline()
        except ConnectionLost:
            raise _Stale()
        self._got_reply = True
        while not line:  # tolerate stray CRLF before the status line
            line = self._readline()
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ProtocolError("bad status line")
        status = _size(parts[1], 10, "status code")
        reason = _text(parts[2]) if len(parts) > 2 else ""
        keep_alive = parts[0] == b"HTTP/1.1"
        hdrs = {}
        length = -1
        chunked = False
        for _ in range(_HEADERS_MAX):
            line = self._readline()
            if not line:
                break
            i = line.find(b":")
            if i <= 0:
                raise ProtocolError("bad header line")
            name = line[:i].strip().lower()  # bytes: a non-ASCII name is just not ours
            value = line[i + 1:].strip()
            if name == b"content-length":
                length = _size(value, 10, "Content-Length")
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                v = value.lower()
                if b"close" in v:
                    keep_alive = False
                elif b"keep-alive" in v:
                    keep_alive = True
            elif name in _KEEP:
                hdrs[name.decode()] = _text(value)
        else:
            raise ProtocolError("too many headers")
        body = bytearray()
        keep = self.max_body
        self._dropped = False
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            length = 0
        if chunked:
            while True:
                size_line = self._readline()
                size = _size(size_line.split(b";")[0], 16, "chunk size")
                if size == 0:
                    while self._readline():  # trailers
                        pass
                    break
                keep = self._read_into(body, size, keep)
                self._readline()
        elif length >= 0:
            keep = self._read_into(body, length, keep)
        else:
            keep_alive = False
            keep = self._read_into(body, -1, keep)
        if not keep_alive:
            self.close()
        return Response(status, reason, hdrs, bytes(body), self._dropped)


def _closed(_data):
    raise OSError(9)  # EBADF: no connection


class _Stale(Exception):
    """Internal: no reply byte arrived on the connection."""
