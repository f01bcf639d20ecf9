"""OAuth2 tokens for TimeBase WebAdmin (Spring OAuth2 password + refresh grants).

``POST {base}/oauth/token`` with HTTP Basic client credentials (default
``web:secret``) and a percent-encoded form body:

* ``grant_type=password&username=..&password=..&scope=trust`` (first login),
* ``grant_type=refresh_token&refresh_token=..`` (renewal).

The reply's ``access_token``, ``refresh_token`` and ``expires_in`` (s) are
kept; the expiry runs on the wrap-safe ``ticks_ms`` clock and the token is
renewed ``margin_s`` before it.  WebAdmin refresh tokens do not slide (they die
24 h after the password grant), so a rejected refresh (401 ``invalid_token`` or
400 ``invalid_grant``) falls back to the password grant.  With only a refresh
token configured (no password) that works until the refresh token expires and
then raises ``AuthError``: a clear, permanent, reported state for the caller
to show (never a reboot).  Network trouble and 5xx raise ``https`` errors,
which the caller retries later.

Tokens and passwords never appear in logs, exceptions or ``repr``.
"""

import binascii
import json
import time

import https
from micropython import const

_UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
_MAX_LIFETIME_MS = const(86400000)  # cap: ticks_diff is only exact below 2**29 ms


class AuthError(Exception):
    """Credentials were refused for good (bad password, expired refresh token
    without a password, rejected client).  ``reason`` is a short code."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


def form_encode(pairs):
    """``application/x-www-form-urlencoded`` body of (name, value) pairs."""
    out = []
    for k, v in pairs:
        out.append(quote(k) + "=" + quote(v))
    return "&".join(out)


def quote(s):
    """Percent-encode every byte of ``s`` outside RFC 3986's unreserved set."""
    if isinstance(s, str):
        s = s.encode()
    for b in s:
        if b not in _UNRESERVED:
            break
    else:  # a token (base64url) is all unreserved: no copy of its ~1 KB
        return s.decode()
    out = bytearray()
    for b in s:
        if b in _UNRESERVED:
            out.append(b)
        else:
            out.extend(("%%%02X" % b).encode())
    return out.decode()


class OAuth:
    """Keeps a valid access token for ``client`` (an ``https.Client``).

    ``refresh_token``: optional pre-issued refresh token (as in the seed's config).
    ``margin_s``: renew this many seconds before the access token expires.
    """

    def __init__(self, client, username=None, password=None, refresh_token=None,
                 client_id="web", client_secret="secret", scope="trust", margin_s=30,
                 path="/oauth/token", log=print):
        self._client = client
        self._user = username
        self._password = password
        self._refresh = refresh_token or None
        self._scope = scope
        self._path = path
        self._margin_ms = int(margin_s * 1000)
        self._log = log
        cred = ("%s:%s" % (client_id, client_secret)).encode()
        self._basic = "Basic " + binascii.b2a_base64(cred).decode().strip()
        self._access = None
        self._bearer = b""
        self._expires = 0  # ticks_ms at which the access token expires
        self.grants = 0  # successful token requests (a figure)
        self.failed = None  # AuthError of the last permanent failure, else None

    def valid(self):
        """True if an access token is held and not within ``margin_s`` of expiry."""
        return self._access is not None and time.ticks_diff(
            self._expires, time.ticks_ms()) > self._margin_ms

    def invalidate(self):
        """Forget the access token (the server answered 401 with it)."""
        self._access = None

    def authorization(self):
        """The ``Authorization`` header value (bytes, made once per token), getting a
        token first if needed."""
        self.token()
        return self._bearer

    def token(self):
        """A valid access token; refreshes or logs in as needed (may raise)."""
        if self.valid():
            return self._access  # type: ignore
        if self._refresh:
            if self._grant((("grant_type", "refresh_token"), ("refresh_token", self._refresh))):
                return self._access  # type: ignore
            self._refresh = None  # rejected: it expired or the server's key changed
            self._log("oauth: refresh token refused")
        if self._password is None or self._user is None:
            raise self._failure("no_credentials", "refresh token refused, no username/password")
        if self._grant((("grant_type", "password"), ("username", self._user),
                        ("password", self._password), ("scope", self._scope))):
            return self._access  # type: ignore
        raise self._failure("bad_password", "username/password refused")

    def _failure(self, reason, message):
        """``AuthError(reason, message)``, kept in ``failed`` (a permanent failure)."""
        self.failed = AuthError(reason, message)
        return self.failed

    def _grant(self, pairs):
        """One token request; True on success, False if the grant was refused."""
        resp = self._client.request("POST", self._path, (
            ("Authorization", self._basic),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Accept", "application/json")), form_encode(pairs))
        try:
            reply = json.loads(resp.body)
            code = str(reply.get("error", ""))[:40]  # never the description: it may quote
        except (ValueError, AttributeError, TypeError):  # the token. Not a JSON object.
            reply, code = {}, ""
        st = resp.status
        if st == 200:
            try:
                access = reply["access_token"]
                life_ms = min(int(reply.get("expires_in", 300)) * 1000, _MAX_LIFETIME_MS)
            except (KeyError, ValueError, TypeError):
                raise AuthError("bad_reply", "token reply is not the expected JSON")
            self._access = access
            self._bearer = b"Bearer " + access.encode()
            # renew margin_s early, but never sooner than 3/4 of a (test-short) lifetime
            if life_ms // 4 < self._margin_ms:
                life_ms += self._margin_ms - life_ms // 4
            self._expires = time.ticks_add(time.ticks_ms(), life_ms)
            self._refresh = reply.get("refresh_token") or self._refresh
            self.grants += 1
            self.failed = None
            return True
        if st == 401 and resp.headers.get("www-authenticate", "").startswith("Basic"):
            raise self._failure("bad_client", "OAuth client id/secret refused")
        if st in (400, 401) and code in ("invalid_grant", "invalid_token", "unauthorized"):
            self._log("oauth: %s grant refused: %d %s" % (pairs[0][1], st, code))
            return False
        # 5xx or anything unexpected: transient, let the caller retry later
        raise https.HTTPError("status", "token request: HTTP %d %s" % (st, code or resp.reason),
                              st)
