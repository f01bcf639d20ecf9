"""A local CA and a server certificate, created once in the data dir.

Files (in ``<data_dir>/tls/``): ``ca.pem`` and ``ca.der`` (the CA certificate: this is what goes
onto the board), ``ca.key`` (CA private key, mode 0600, used to re-issue the server certificate),
``server.pem`` (server certificate chain) and ``server.key`` (mode 0600).

The server certificate names ``localhost`` and ``127.0.0.1`` plus whatever the server is
reached by (``names``: DNS names and IP addresses).  When the names change it is issued
again by the same CA, so a board that trusts ``ca.der`` keeps working.
"""

import ipaddress
import os
import socket
import ssl

BASE_NAMES = ("localhost", "127.0.0.1")


def _write(path, data, private=False):
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def normalise(names):
    """Names in order, without repeats; IP addresses in their canonical form."""
    out = []
    for n in names:
        n = n.strip().rstrip(".")
        try:
            n = str(ipaddress.ip_address(n.strip("[]")))
        except ValueError:
            n = n.lower()
        if n and n not in out:
            out.append(n)
    return out


def cert_names(pem_path):
    """The DNS names and IP addresses a certificate holds (its subjectAltName)."""
    from cryptography import x509

    with open(pem_path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(v) for v in san.get_values_for_type(x509.DNSName)] + \
        [str(v) for v in san.get_values_for_type(x509.IPAddress)]


def machine_names():
    """What a board on the LAN may call this machine: its host name, ``<name>.local``
    (mDNS) and its non-loopback addresses (from the resolver and, on Linux, the kernel's
    table of local addresses)."""
    host = socket.gethostname()
    names = [host, host.split(".")[0] + ".local"]
    addrs = []
    try:
        for info in socket.getaddrinfo(host, None):
            addrs.append(info[4][0])
    except OSError:
        pass
    try:  # /proc/net/fib_trie lists each local IPv4 address before "/32 host LOCAL"
        with open("/proc/net/fib_trie") as f:
            last = None
            for line in f:
                parts = line.split()
                if parts[:1] == ["|--"] and len(parts) == 2:
                    last = parts[1]
                elif "/32 host LOCAL" in line and last:
                    addrs.append(last)
    except OSError:
        pass
    for a in addrs:
        try:
            ip = ipaddress.ip_address(a.split("%")[0])
        except ValueError:
            continue
        if not (ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified):
            names.append(str(ip))
    return normalise(names)


def ensure(data_dir, names=BASE_NAMES):
    """Create (if missing) the CA and a server certificate naming ``names`` (re-issued by
    the same CA when the names differ); return a dict of the paths plus ``names`` and
    ``reissued`` (True when the server certificate was made now over an older one)."""
    import trustme  # imported here so `query` works without it

    names = normalise(list(BASE_NAMES) + list(names))
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
        for f in ("cert", "key"):  # a server certificate of another CA is of no use
            if os.path.exists(p[f]):
                os.remove(p[f])
    if not os.path.exists(p["ca_der"]):
        _write(p["ca_der"], ssl.PEM_cert_to_DER_cert(ca.cert_pem.bytes().decode()))
    had = os.path.exists(p["cert"]) and os.path.exists(p["key"])
    if not had or set(normalise(cert_names(p["cert"]))) != set(names):
        cert = ca.issue_cert(*names)
        _write(p["key"], cert.private_key_pem.bytes(), private=True)
        _write(p["cert"], b"".join(b.bytes() for b in cert.cert_chain_pems))
        p["reissued"] = had
    else:
        p["reissued"] = False
    p["names"] = names
    return p


def server_context(paths):
    """An ``ssl.SSLContext`` for the server side from ``ensure()``'s paths."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(paths["cert"], paths["key"])
    return ctx
