"""A tiny HTTPS test server (CPython only) for host_tests/test_https.py.

Usage: python https_testserver.py DIR
Creates a trustme CA in DIR (ca.pem, ca.der, and wrong.der from another CA),
serves HTTP/1.1 with keep-alive on 127.0.0.1 over TLS (port written to DIR/port)
and the same paths over plain HTTP (port in DIR/port_http), and exits on
``GET /quit`` or after 120 s without a TLS connection.

Paths: ``/echo`` (reply: method, path, headers count, body length and sha256
prefix), ``/chunked`` (chunked reply), ``/big?n=N`` (N-byte body),
``/close`` (HTTP/1.0 style: no length, closes), ``/slow`` (waits 5 s),
``/drop`` (closes without a reply), ``/conns`` (connections accepted so far).
Replies that break HTTP, each followed by a close: ``/bad/chunk`` (chunk size
``zz``), ``/bad/negchunk`` (chunk size ``-1``), ``/bad/length`` (Content-Length
``abc``), ``/bad/neglength`` (Content-Length ``-1``), ``/bad/status`` (status
``2x0``).  Odd but valid: ``/latin1`` (a reason phrase and a Content-Type value
in Latin-1, a header name with a byte >= 0x80).
"""

import hashlib
import os
import socket
import ssl
import sys
import threading
import time

import trustme

conns = [0]
BAD = {
    "/bad/chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "/bad/negchunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nhello",
    "/bad/length": b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nhello",
    "/bad/neglength": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nhello",
    "/bad/status": b"HTTP/1.1 2x0 OK\r\nContent-Length: 5\r\n\r\nhello",
}
LATIN1 = (b"HTTP/1.1 200 D\xe9j\xe0 vu\r\nContent-Type: text/plain; charset=\xe9\r\n"
          b"X-\xff: 1\r\nContent-Length: 2\r\n\r\nok")


def write_certs(d):
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ca.cert_pem.write_to_path(os.path.join(d, "ca.pem"))
    with open(os.path.join(d, "ca.der"), "wb") as f:
        f.write(ssl.PEM_cert_to_DER_cert(ca.cert_pem.bytes().decode()))
    with open(os.path.join(d, "wrong.der"), "wb") as f:
        f.write(ssl.PEM_cert_to_DER_cert(trustme.CA().cert_pem.bytes().decode()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(ctx)
    return ctx


def read_request(f):
    line = f.readline()
    if not line:
        return None
    method, path, _ = line.decode().split(" ", 2)
    headers = {}
    while True:
        h = f.readline().decode().strip()
        if not h:
            break
        k, _, v = h.partition(":")
        headers[k.strip().lower()] = v.strip()
    body = b""
    if "content-length" in headers:
        body = f.read(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        while True:
            n = int(f.readline().strip(), 16)
            if n == 0:
                f.readline()
                break
            body += f.read(n)
            f.readline()
    return method, path, headers, body


def handle(sock):
    try:
        f = sock.makefile("rb")
        while True:
            req = read_request(f)
            if req is None:
                return
            method, path, headers, body = req
            if path == "/quit":
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbye")
                os._exit(0)
            if path == "/drop":
                return
            if path in BAD:
                sock.sendall(BAD[path])
                return
            if path == "/latin1":
                sock.sendall(LATIN1)
                continue
            if path == "/slow":
                time.sleep(5)
            if path == "/close":
                sock.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close")
                return
            if path == "/chunked":
                sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n")
                continue
            if path.startswith("/big"):
                n = int(path.split("=")[1])
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n)
                sock.sendall(b"x" * n)
                continue
            if path == "/conns":
                out = str(conns[0]).encode()
            else:
                out = ("%s %s %d %d %s %s" % (
                    method, path, len(headers), len(body), hashlib.sha256(body).hexdigest()[:16],
                    headers.get("authorization", "-"))).encode()
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(out), out))
    except (OSError, ValueError):
        pass
    finally:
        try:
            sock.close()
        except OSError:
            pass


def serve_plain(ls):
    while True:
        c, _ = ls.accept()
        c.settimeout(10)
        threading.Thread(target=handle, args=(c,), daemon=True).start()


def main():
    d = sys.argv[1]
    ctx = write_certs(d)
    plain = socket.socket()
    plain.bind(("127.0.0.1", 0))
    plain.listen(16)
    with open(os.path.join(d, "port_http"), "w") as f:  # written before "port" appears
        f.write(str(plain.getsockname()[1]))
    threading.Thread(target=serve_plain, args=(plain,), daemon=True).start()
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    ls.settimeout(120)
    with open(os.path.join(d, "port.tmp"), "w") as f:
        f.write(str(ls.getsockname()[1]))
    os.rename(os.path.join(d, "port.tmp"), os.path.join(d, "port"))
    while True:
        try:
            c, _ = ls.accept()
        except socket.timeout:
            os._exit(0)
        conns[0] += 1
        c.settimeout(10)
        try:
            s = ctx.wrap_socket(c, server_side=True)
        except (OSError, ssl.SSLError):
            c.close()
            continue
        threading.Thread(target=handle, args=(s,), daemon=True).start()


if __name__ == "__main__":
    main()
