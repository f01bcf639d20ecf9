"""A tiny HTTPS test server (CPython only) for host_tests/test_https.py.

Usage: python https_testserver.py DIR
Creates a trustme CA in DIR (ca.pem, ca.der, and wrong.der from another CA),
serves HTTP/1.1 with keep-alive on 127.0.0.1 (port written to DIR/port), and
exits on ``GET /quit`` or after 120 s without a connection.

Paths: ``/echo`` (reply: method, path, headers count, body length and sha256
prefix), ``/chunked`` (chunked reply), ``/big?n=N`` (N-byte body),
``/close`` (HTTP/1.0 style: no length, closes), ``/slow`` (waits 5 s),
``/drop`` (closes without a reply), ``/conns`` (connections accepted so far).
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


def main():
    d = sys.argv[1]
    ctx = write_certs(d)
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
