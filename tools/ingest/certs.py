"""A local CA and a server certificate for localhost/127.0.0.1, created once in the data dir.

Files (in ``<data_dir>/tls/``): ``ca.pem`` and ``ca.der`` (the CA certificate: this is what goes
onto the board), ``ca.key`` (CA private key, mode 0600, used to re-issue the server certificate),
``server.pem`` (server certificate chain) and ``server.key`` (mode 0600).
"""

import os
import ssl

_NAMES = ("localhost", "127.0.0.1")


def _write(path, data, private=False):
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def ensure(data_dir, names=_NAMES):
    """Create (if missing) the CA and server certificate; return a dict of their paths."""
    import trustme  # imported here so `query` works without it

    d = os.path.join(data_dir, "tls")
    os.makedirs(d, exist_ok=True)
    p = {k: os.path.join(d, f) for k, f in (
        ("ca_pem", "ca.pem"), ("ca_der", "ca.der"), ("ca_key", "ca.key"),
        ("cert", "server.pem"), ("key", "server.key"))}
    if os.path.exists(p["ca_pem"]) and os.path.exists(p["ca_key"]):
        with open(p["ca_pem"], "rb") as f, open(p["ca_key"], "rb") as k:
            ca = trustme.CA.from_pem(f.read(), k.read())
    else:
        ca = trustme.CA(organization_name="tools.ingest local CA")
        _write(p["ca_key"], ca.private_key_pem.bytes(), private=True)
        _write(p["ca_pem"], ca.cert_pem.bytes())
    if not os.path.exists(p["ca_der"]):
        _write(p["ca_der"], ssl.PEM_cert_to_DER_cert(ca.cert_pem.bytes().decode()))
    if not (os.path.exists(p["cert"]) and os.path.exists(p["key"])):
        cert = ca.issue_cert(*names)
        _write(p["key"], cert.private_key_pem.bytes(), private=True)
        _write(p["cert"], b"".join(b.bytes() for b in cert.cert_chain_pems))
    return p


def server_context(paths):
    """An ``ssl.SSLContext`` for the server side from ``ensure()``'s paths."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(paths["cert"], paths["key"])
    return ctx
