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
* Failures raise ``HTTPError`` (an ``OSError``; one class, so one class object
  in the heap) whose ``category`` says what went wrong: "dns", "connect", "tls",
  "timeout", "reset" (the peer closed or reset the connection in the middle of an
  exchange), "protocol", "status" (raised by callers for a refused status, with
  ``status`` set).  A reply that breaks HTTP (a bad status line, header, Content-Length or chunk
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
_LINE_MAX = const(256)  # bytes of a status/header line kept (the rest is skipped)
_LINE_PIECES = const(32)  # a header line longer than 32 * _LINE_MAX is an error
_HEADERS_MAX = const(64)  # most header lines accepted in one response
_CHUNK = const(512)  # socket read size
_HEAD = const(1024)  # bytes of a request head sent at once (a longer one goes in parts)
_KEEP = (b"content-type", b"www-authenticate", b"retry-after")  # response headers kept
_SIZE_DIGITS = const(15)  # most digits of a Content-Length or chunk size


class HTTPError(OSError):
    """Every client error. ``category`` names the kind of failure (module docstring);
    ``status`` is the HTTP status of a "status" error, else None."""

    def __init__(self, category, message, status=None):
        super().__init__(message)
        self.category = category
        self.status = status


class Response:
    """``status`` (int), ``reason`` (str), ``headers`` (dict of lower-case names
    in ``_KEEP``), ``body`` (a bytearray of at most ``max_body`` bytes, read in place:
    one block of the reply's size, no copies), ``truncated`` (bool)."""

    def __init__(self, status, reason, headers, body, truncated):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.truncated = truncated


def parse_url(url):
    """``(scheme, host, port, base_path)`` of ``http[s]://host[:port][/path]``."""
    scheme, _, rest = url.partition("://")
    if scheme not in ("https", "http"):
        raise ValueError("URL must be https://... or http://...")
    i = rest.find("/")
    if i < 0:
        i = len(rest)
    host, path = rest[:i], rest[i:].rstrip("/")
    port = 443 if scheme == "https" else 80
    j = host.rfind(":")
    if j > host.rfind("]"):  # a port (an IPv6 address has colons inside its brackets)
        host, port = host[:j], int(host[j + 1:])
    if host.startswith("["):
        host = host[1:-1]
    if not host:
        raise ValueError("URL has no host")
    return scheme, host, port, path


def load_ca(path):
    """The CA certificates in a PEM or DER file, as a list of DER bytes (PEM: every
    certificate of a bundle; some mbedTLS builds lack the PEM parser)."""
    with open(path, "rb") as f:
        data = f.read()
    if b"-----BEGIN" not in data:
        return [data]
    import binascii

    out = []
    for part in data.split(b"-----BEGIN CERTIFICATE-----")[1:]:
        end = part.find(b"-----END")
        if end < 0:
            raise ValueError("truncated PEM certificate")
        out.append(binascii.a2b_base64(part[:end]))  # skips the line breaks
    if not out:
        raise ValueError("no certificate in " + path)
    return out


def _size(text, base, what):
    """The non-negative integer written in ``text`` (bytes: digits of ``base`` 10 or 16
    only, no sign); a "protocol" HTTPError naming ``what`` otherwise."""
    t = text.strip()
    ok = 0 < len(t) <= _SIZE_DIGITS
    for c in t:  # ints: int() alone would take "-1", "+5", "1_0" and " 0x1"
        if not (48 <= c <= 57 or (base == 16 and 97 <= c | 32 <= 102)):
            ok = False
    if not ok:
        raise HTTPError("protocol", "bad " + what)
    return int(t, base)


def _text(data):
    """``data`` (bytes) as str: UTF-8, else printable ASCII with "?" for the rest."""
    try:
        return data.decode()
    except UnicodeError:
        data = bytearray(data)
        for i in range(len(data)):
            if not 32 <= data[i] < 127:
                data[i] = 63  # "?"
        return data.decode()


def _error(e, what, category=None):
    """The HTTPError for exception ``e`` of socket or TLS operation ``what``: category
    "timeout", else ``category``, else "tls" or "reset"."""
    if isinstance(e, HTTPError):
        return e
    code = e.args[0] if isinstance(e, OSError) and e.args else 0
    if code in (110, 11) or type(e).__name__ in ("timeout", "TimeoutError", "SSLWantReadError"):
        category = "timeout"  # ETIMEDOUT, EAGAIN
    elif category is None:
        # MicroPython: a failed certificate check is a ValueError, mbedTLS errors are
        # large negative codes
        tls = (isinstance(e, ValueError) or (isinstance(code, int) and code < -255)
               or (ssl is not None and isinstance(e, getattr(ssl, "SSLError", ()))))
        category = "tls" if tls else "reset"
    return HTTPError(category, "%s failed: %s" % (what, str(e).strip() or repr(e)))


class Client:
    """HTTP/1.1 client bound to one base URL, keeping one connection alive.

    ``timeout_s``: per socket operation; ``max_body``: bytes of response body
    kept; ``resolve(host, port)`` -> sockaddr can replace DNS (tests, static IPs).
    """

    def __init__(self, base_url, ca_file=None, insecure=False, timeout_s=10, max_body=4096,
                 resolve=None, log=print):
        scheme, self.host, self.port, self.base_path = parse_url(base_url)
        self._host = base_url.split("/")[2]  # the Host header: the URL's authority
        self.timeout_s = timeout_s
        self.max_body = max_body
        self._resolve = resolve
        self._log = log
        self._sock = None
        self._in = None  # object with readline(limit) and read(n) (exact, short only at EOF)
        self._wr = None  # the connection's write (set with _in)
        self._ctx = None
        self._got_reply = False
        self.connects = 0  # connections opened (a figure for benchmarks)
        self._head = bytearray(_HEAD)  # a request's head (allocated once, early)
        self._hn = 0
        self.insecure = bool(insecure)
        if scheme == "http":
            if not insecure:
                raise ValueError("http:// sends the password unencrypted: use https:// "
                                 "(or insecure=True)")
            self._warn()
            return
        if ssl is None:
            raise HTTPError("tls", "no ssl module")
        self._ctx = ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if insecure:
            if hasattr(ctx, "check_hostname"):  # CPython refuses CERT_NONE otherwise
                ctx.check_hostname = False  # type: ignore
            ctx.verify_mode = ssl.CERT_NONE
            self._warn()
            return
        if not ca_file:
            raise ValueError("https needs ca_file (or insecure=True)")
        for der in load_ca(ca_file):
            ctx.load_verify_locations(cadata=der)
        ctx.verify_mode = ssl.CERT_REQUIRED

    def _warn(self):
        self._log("https: WARNING: %s to %s" % (
            "unverified TLS" if self._ctx else "unencrypted http://", self.host))

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

    def _connect(self):
        try:
            if self._resolve is not None:
                addr = self._resolve(self.host, self.port)
            else:
                addr = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)[0][-1]
        except (OSError, IndexError) as e:  # IndexError: no address
            raise HTTPError("dns", "cannot resolve %s: %r" % (self.host, e))
        s = socket.socket()
        what, category = "connect to %s:%d" % (self.host, self.port), "connect"
        try:
            s.settimeout(self.timeout_s)
            try:  # TCP_NODELAY (6, 1 on Linux and lwIP): headers and body go in separate writes
                s.setsockopt(6, 1, 1)
            except (OSError, AttributeError):
                pass
            s.connect(addr)
            if self.insecure:
                self._warn()
            if self._ctx is not None:
                gc.collect()  # the handshake needs its largest blocks: defragment first
                what, category = "TLS handshake with " + self.host, "tls"
                s = self._ctx.wrap_socket(s, server_hostname=self.host)
        except BaseException as e:
            s.close()
            if isinstance(e, (OSError, ValueError)):
                raise _error(e, what, category)
            raise
        self._sock = s
        # MicroPython's (TLS) socket is a stream whose read(n) returns n bytes (fewer only at
        # EOF) and readline(limit) stops at LF; CPython's makefile("rb") behaves the same.
        self._in = s if _MP else s.makefile("rb")  # type: ignore
        self._wr = s.write if _MP else s.sendall  # type: ignore
        self.connects += 1

    # -- low-level I/O ----------------------------------------------------
    def _put(self, piece):
        """Append ``piece`` (str, bytes) to the request head, sending the head so far when
        it would not fit (``_HEAD`` bytes)."""
        if isinstance(piece, str):
            piece = piece.encode()
        head = self._head
        n = self._hn
        m = n + len(piece)
        if m > len(head):
            self._send(memoryview(head)[:n])
            n, m = 0, len(piece)
            if m > len(head):
                self._send(piece)
                m = 0
                piece = b""
        head[n:m] = piece
        self._hn = m

    def _send(self, data):
        if isinstance(data, str):
            data = data.encode()
        mv = memoryview(data)
        while len(mv):
            n = self._wr(mv)  # type: ignore
            if n is None:
                if not _MP:  # CPython sendall returns None when everything went
                    return
                raise HTTPError("timeout", "send timed out")
            mv = mv[n:]

    def _readline(self):
        """One line as bytes, without CR LF; only its first _LINE_MAX bytes are kept
        (a WWW-Authenticate header may quote a whole token)."""
        line = None
        for _ in range(_LINE_PIECES):
            piece = self._in.readline(_LINE_MAX)  # type: ignore
            if piece is None:
                raise HTTPError("timeout", "receive timed out")
            if not piece:
                raise HTTPError("reset", "connection closed")
            if line is None:
                line = piece
            if piece.endswith(b"\n"):
                return line.rstrip(b"\r\n")
        raise HTTPError("protocol", "header line too long")

    def _read_into(self, out, n, keep):
        """Read exactly ``n`` body bytes (``n`` < 0: until close), appending the first
        ``keep`` of them to ``out``; returns ``keep`` less the bytes read (< 0: some
        were dropped)."""
        while n != 0:
            want = _CHUNK if n < 0 or n > _CHUNK else n
            data = self._in.read(want)  # type: ignore
            if data is None:
                raise HTTPError("timeout", "receive timed out")
            got = len(data)
            if got < want and n > 0:
                raise HTTPError("reset", "connection closed")
            if keep > 0:
                out.extend(data if got <= keep else data[:keep])
            keep -= got
            if n > 0:
                n -= got
            elif got < want:
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
        while True:
            if self._sock is None:
                self._connect()
            try:
                self._write_request(method, path, headers, body, length)
                return self._read_response(method)
            except BaseException as e:  # e.g. MemoryError in the body generator too: the
                self.close()  # stream is half-written or half-read, never reuse it
                if not isinstance(e, (OSError, ValueError)):
                    raise
                e = _error(e, method + " " + path)
                # no reply byte on a reused connection: the server had dropped it when idle
                if not reused or self._got_reply or e.category not in ("reset", "tls"):
                    raise e
                reused = False  # open a new one, once

    def _write_request(self, method, path, headers, body, length):
        self._got_reply = False
        if body is not None and not callable(body):
            if isinstance(body, str):
                body = body.encode()
            length = len(body)
            body = (body,)
        # The head goes through one buffer kept by the client: no string the size of the
        # head (a bearer token is ~1 KB) is made per request, a fragmented heap's worst case.
        self._hn = 0
        put = self._put
        for piece in (method, " ", self.base_path, path, " HTTP/1.1\r\nHost: ", self._host,
                      "\r\n"):
            put(piece)
        items = headers.items() if isinstance(headers, dict) else (headers or ())
        for k, v in items:
            put(k)
            put(": ")
            put(v)
            put("\r\n")
        if body is not None:
            put("Transfer-Encoding: chunked\r\n" if length is None else
                "Content-Length: %d\r\n" % length)
        put("\r\n")
        self._send(memoryview(self._head)[:self._hn])
        if body is None:
            return
        sent = 0
        for chunk in body() if callable(body) else body:  # type: ignore
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
            raise HTTPError("protocol", "body was %d bytes, Content-Length %d" % (sent, length))

    def _read_response(self, method):
        line = self._readline()
        self._got_reply = True
        while not line:  # tolerate stray CRLF before the status line
            line = self._readline()
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise HTTPError("protocol", "bad status line")
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
                raise HTTPError("protocol", "bad header line")
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
            raise HTTPError("protocol", "too many headers")
        body = bytearray()
        keep = self.max_body
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            length = 0
        if chunked:
            while True:
                size = _size(self._readline().split(b";")[0], 16, "chunk size")
                if size == 0:
                    while self._readline():  # trailers
                        pass
                    break
                keep = self._read_into(body, size, keep)
                self._readline()
        elif length >= 0:  # the usual reply: one buffer of its size, read into in place
            body = bytearray(length if length < keep else keep)
            got = 0
            mv = memoryview(body)
            while got < len(body):
                k = self._in.readinto(mv[got:])  # type: ignore
                if not k:
                    raise HTTPError("timeout" if k is None else "reset",
                                    "receive timed out" if k is None else "connection closed")
                got += k
            mv = None
            if length > got:  # beyond max_body: read and dropped (keep < 0)
                keep = self._read_into(body, length - got, 0)
        else:
            keep_alive = False
            keep = self._read_into(body, -1, keep)
        if not keep_alive:
            self.close()
        return Response(status, reason, hdrs, body, keep < 0)
