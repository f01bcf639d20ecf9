"""lib/https.py against a real TLS server (host_tests/https_testserver.py, a CPython
process started by this module), under both interpreters: verification, SNI/host
name check, keep-alive, streamed and chunked bodies, size cap, timeouts, categories."""

import os
import time

import https
import support

_srv = {}


def server():
    """Start the test server once per module run; returns (base_url, cert dir)."""
    if not _srv:
        import binascii

        # unique: under xdist two runs of this file may share HOST_TEST_TMP
        d = support.tmpdir("https-" + binascii.hexlify(os.urandom(4)).decode())
        root = os.getenv("HOST_TEST_ROOT") or "."
        os.system("%s %s/host_tests/https_testserver.py %s >%s/log 2>&1 &"
                  % (support.host_python(), root, d, d))
        for _ in range(200):
            try:
                with open(d + "/port") as f:
                    _srv["port"] = int(f.read())
                with open(d + "/port_http") as f:
                    _srv["port_http"] = int(f.read())
                break
            except (OSError, ValueError):
                time.sleep(0.05)
        _srv["dir"] = d
    return "https://localhost:%d" % _srv["port"], _srv["dir"]


def client(**kw):
    url, d = server()
    kw.setdefault("ca_file", d + "/ca.der")
    return https.Client(url, resolve=lambda h, p: _addr(p), **kw)


def _addr(port):
    import socket

    return socket.getaddrinfo("127.0.0.1", port)[0][-1]


def test_get_with_der_and_pem_ca():
    c = client()
    r = c.request("GET", "/echo")
    assert r.status == 200 and r.body.startswith(b"GET /echo"), r.body
    c.close()
    _, d = server()
    c = client(ca_file=d + "/ca.pem")
    assert c.request("GET", "/echo").status == 200
    c.close()


def test_keep_alive_reuses_one_connection():
    c = client()
    before = int(c.request("GET", "/conns").body)
    for _ in range(5):
        assert c.request("POST", "/echo", body=b"abc").status == 200
    after = int(c.request("GET", "/conns").body)
    assert after == before and c.connects == 1
    c.close()


def test_streamed_body_with_length_and_chunked():
    c = client()
    chunks = [b"x" * 1000 for _ in range(50)]
    r = c.request("POST", "/echo", body=lambda: iter(chunks), length=50000)
    parts = r.body.split()
    assert parts[3] == b"50000", r.body
    r2 = c.request("POST", "/echo", body=lambda: iter(chunks))  # no length: chunked
    assert r2.body.split()[3:5] == parts[3:5]
    c.close()


def test_wrong_length_is_refused():
    c = client()
    e = support.raises(https.HTTPError, c.request, "POST", "/echo",
                       body=lambda: iter([b"abc"]), length=10)
    assert e.category == "protocol"


def test_chunked_and_close_delimited_replies():
    c = client()
    assert c.request("GET", "/chunked").body == b"hello world"
    r = c.request("GET", "/close")
    assert r.body == b"until close"
    assert c.request("GET", "/echo").status == 200  # reconnects after the close
    c.close()


def test_body_cap_keeps_connection_usable():
    c = client(max_body=100)
    r = c.request("GET", "/big?n=20000")
    assert len(r.body) == 100 and r.truncated
    r = c.request("GET", "/echo")
    assert r.status == 200 and not r.truncated
    c.close()


def test_wrong_ca_refused_as_tls_error():
    _, d = server()
    c = client(ca_file=d + "/wrong.der")
    e = support.raises(https.HTTPError, c.request, "GET", "/echo")
    assert e.category == "tls"


def test_wrong_host_name_refused():
    url, d = server()
    c = https.Client(url.replace("localhost", "otherhost"), ca_file=d + "/ca.der",
                     resolve=lambda h, p: _addr(p))
    assert support.raises(https.HTTPError, c.request, "GET", "/echo").category == "tls"


def test_insecure_opt_out_is_logged():
    lines = []
    c = client(ca_file=None, insecure=True, log=lines.append)
    assert c.request("GET", "/echo").status == 200
    assert any("WARNING" in x for x in lines)
    c.close()


def test_no_ca_is_an_error():
    url, _ = server()
    support.raises(ValueError, https.Client, url)


def test_timeout_category():
    c = client(timeout_s=1)
    e = support.raises(https.HTTPError, c.request, "GET", "/slow")
    assert e.category == "timeout"


def test_dropped_connection_is_reset_category():
    c = client()
    e = support.raises(https.HTTPError, c.request, "GET", "/drop")
    assert e.category == "reset"
    assert c.request("GET", "/echo").status == 200


def test_dns_and_connect_categories():
    def no_dns(host, port):
        raise OSError(-2)

    url, d = server()
    c = https.Client(url, ca_file=d + "/ca.der", resolve=no_dns)
    assert support.raises(https.HTTPError, c.request, "GET", "/").category == "dns"
    c = https.Client("https://localhost:1", ca_file=d + "/ca.der", resolve=lambda h, p: _addr(1))
    assert support.raises(https.HTTPError, c.request, "GET", "/").category == "connect"


def test_parse_url_and_pem():
    assert https.parse_url("https://h:8443/base/") == ("https", "h", 8443, "/base")
    assert https.parse_url("http://h") == ("http", "h", 80, "")
    assert https.parse_url("https://[::1]:9/") == ("https", "::1", 9, "")
    assert https.parse_url("https://[fe80::1]/a/b") == ("https", "fe80::1", 443, "/a/b")
    support.raises(ValueError, https.parse_url, "https://:8443/")
    support.raises(ValueError, https.parse_url, "ftp://h")
    _, d = server()
    with open(d + "/ca.der", "rb") as f:
        der = f.read()
    assert https.load_ca(d + "/ca.pem") == [der]
    with open(d + "/ca.pem", "rb") as f:
        pem = f.read()
    with open(d + "/bundle.pem", "wb") as f:  # a bundle, CRLF line ends, text around
        f.write(b"a bundle\r\n" + pem.replace(b"\n", b"\r\n") + b"\r\n" + pem)
    assert https.load_ca(d + "/bundle.pem") == [der, der]


def test_replies_that_break_http_are_protocol_errors():
    # int() and bytes.decode() raise ValueError, which was reported as a TLS error.
    c = client()
    for path in ("/bad/chunk", "/bad/negchunk", "/bad/length", "/bad/neglength",
                 "/bad/status"):
        e = support.raises(https.HTTPError, c.request, "GET", path)
        assert e.category == "protocol", (path, e)
        assert c.request("GET", "/echo").status == 200  # the next request reconnects
    c.close()


def test_non_utf8_reason_and_header_are_tolerated():
    c = client()
    r = c.request("GET", "/latin1")
    assert r.status == 200 and r.body == b"ok" and r.reason == "D?j? vu"
    assert r.headers["content-type"] == "text/plain; charset=?"
    assert c.request("GET", "/echo").status == 200 and c.connects == 1  # kept alive
    c.close()


def test_plain_http_needs_the_opt_out_and_is_logged():
    server()
    url = "http://localhost:%d" % _srv["port_http"]
    e = support.raises(ValueError, https.Client, url, resolve=lambda h, p: _addr(p))
    assert "http://" in str(e) and "insecure" in str(e)
    lines = []
    c = https.Client(url, insecure=True, resolve=lambda h, p: _addr(p), log=lines.append)
    r = c.request("GET", "/echo", headers={"Authorization": "Bearer s3cret-token"})
    assert r.status == 200 and r.body.endswith(b"Bearer s3cret-token")  # readable on the wire
    loud = [x for x in lines if "WARNING" in x and "unencrypted" in x]
    assert len(loud) == 2, lines  # when made, and on the connection
    assert not [x for x in lines if "s3cret" in x]
    c.close()


def test_zz_stop_server():
    c = client()
    try:
        c.request("GET", "/quit")
    except https.HTTPError:
        pass
