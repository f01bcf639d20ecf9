"""OAuth2 tokens as TimeBase WebAdmin issues them (Spring Security OAuth2 + JwtTokenStore).

Tokens are JWTs signed with HS256 under a key generated at start-up and never stored, so every
token is invalid after a restart (as WebAdmin does when it has no configured key pair).  Like
WebAdmin's JwtTokenStore the service is stateless: a refresh token can be redeemed any number of
times until its own ``exp`` (it does not slide).  Extra over WebAdmin, for fault injection:
``revoke_all()`` (tokens issued before now are refused) and ``rotate_key()``.

Error texts follow the reference contract; tokens quoted in them are shortened to their first
10 characters (the constant JWT header) so that no secret is echoed into a client's log.
"""

import base64
import hashlib
import hmac
import json
import os
import time


class OAuthError(Exception):
    """An OAuth2 error reply: HTTP ``status``, ``code`` (e.g. invalid_grant), ``description``."""

    def __init__(self, status, code, description, extra=None):
        Exception.__init__(self, code)
        self.status = status
        self.code = code
        self.description = description
        self.extra = extra or {}

    def body(self):
        d = {"error": self.code, "error_description": self.description}
        d.update(self.extra)
        return d


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def redact(token):
    return (token[:10] + "...") if len(token) > 10 else "..."


_HEADER = _b64(b'{"alg":"HS256","typ":"JWT"}')


class TokenService:
    """Issues and checks tokens.  ``clock()`` returns seconds (float) since the epoch."""

    def __init__(self, cfg, clock=time.time, faults=None):
        self.cfg = cfg
        self._clock = clock
        self._faults = faults  # knob token_clock_offset_s moves this clock forward
        self._key = os.urandom(32)
        self._not_before_ms = 0
        self.grants = 0
        self.refreshes = 0

    def now_ms(self):
        off = float(self._faults.get("token_clock_offset_s") or 0) if self._faults else 0.0
        return int((self._clock() + off) * 1000)

    # -- fault injection -------------------------------------------------------------------
    def rotate_key(self):
        """New signing key: every token issued so far fails with 'Cannot convert ...'."""
        self._key = os.urandom(32)

    def revoke_all(self):
        """Refuse every token issued up to now (401 invalid_token)."""
        self._not_before_ms = self.now_ms() + 1

    # -- encoding ---------------------------------------------------------------------------
    def _encode(self, claims):
        body = _HEADER + "." + _b64(json.dumps(claims, separators=(",", ":")).encode())
        sig = hmac.new(self._key, body.encode(), hashlib.sha256).digest()
        return body + "." + _b64(sig)

    def _decode(self, token):
        try:
            head, payload, sig = token.split(".")
            want = hmac.new(self._key, (head + "." + payload).encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(want, _unb64(sig)):
                raise ValueError("signature")
            claims = json.loads(_unb64(payload))
            if not isinstance(claims, dict):
                raise ValueError("claims")
            return claims
        except (ValueError, TypeError, UnicodeError):
            raise OAuthError(401, "invalid_token", "Cannot convert access token to JSON")

    def _issue(self, client_id, user, scope, authorities, refresh_claims=None):
        now = self.now_ms()
        a_life = float(self.cfg["access_token_lifetime_s"])
        r_life = float(self.cfg["refresh_token_lifetime_s"])
        jti = _b64(os.urandom(20))
        exp_ms = now + int(a_life * 1000)
        access = {"user_name": user, "scope": scope, "exp": -(-exp_ms // 1000), "expm": exp_ms,
                  "iat": now, "authorities": authorities, "jti": jti, "client_id": client_id}
        if refresh_claims is None:
            r_exp = now + int(r_life * 1000)
            refresh_claims = {"user_name": user, "scope": scope, "exp": -(-r_exp // 1000),
                              "expm": r_exp, "iat": now, "authorities": authorities,
                              "jti": _b64(os.urandom(20)), "client_id": client_id}
        refresh_claims = dict(refresh_claims, ati=jti)
        return {
            "access_token": self._encode(access),
            "token_type": "bearer",
            "refresh_token": self._encode(refresh_claims),
            # Spring: whole seconds left at serialisation, so 299 for a 300 s lifetime
            # (kept >= 1 for test lifetimes of 1-2 s, where Spring would say 0)
            "expires_in": max(1 if a_life >= 1 else 0, (exp_ms - self.now_ms() - 1) // 1000),
            "scope": " ".join(scope),
            "jti": jti,
        }

    # -- grants -----------------------------------------------------------------------------
    def verify_user(self, name, password):
        """The user's config entry if ``password`` is right, else OAuthError."""
        user = self.cfg["users"].get(name)
        if user is None or not hmac.compare_digest(
                str(user["password"]).encode(), (password or "").encode()):
            raise OAuthError(400, "invalid_grant", "Bad credentials")
        if user.get("disabled"):
            raise OAuthError(400, "invalid_grant", "User is disabled")
        return user

    def password_grant(self, client_id, form):
        scope = self._scope(client_id, form.get("scope"))  # Spring checks scope first
        name = form.get("username", "")
        user = self.verify_user(name, form.get("password", ""))
        self.grants += 1
        return self._issue(client_id, name, scope, list(user.get("authorities", [])))

    # -- dashboard sign-in ------------------------------------------------------------------
    def issue_session(self, name, authorities):
        """A dashboard session token (the cookie's value) for a signed-in user: a JWT
        under the same key, marked ``sess`` so that it is never taken as an access token
        (nor an access token as a session)."""
        now = self.now_ms()
        exp = now + int(float(self.cfg["session_lifetime_s"]) * 1000)
        return self._encode({"user_name": name, "authorities": list(authorities),
                             "sess": 1, "iat": now, "exp": -(-exp // 1000), "expm": exp,
                             "jti": _b64(os.urandom(20))})

    def check_session(self, token):
        """The claims of a valid session token, else OAuthError (401)."""
        claims = self._decode(token)
        if not claims.get("sess"):
            raise OAuthError(401, "invalid_token", "Not a session")
        if claims.get("expm", 0) <= self.now_ms() or claims.get("iat", 0) < self._not_before_ms:
            raise OAuthError(401, "invalid_token", "Session expired")
        user = self.cfg["users"].get(claims.get("user_name"))
        if user is None or user.get("disabled"):
            raise OAuthError(401, "invalid_token", "Session expired")
        return claims

    def refresh_grant(self, client_id, form):
        token = form.get("refresh_token", "")
        if not token:
            raise OAuthError(400, "invalid_request", "refresh_token parameter not provided")
        claims = self._decode(token)
        if "ati" not in claims or claims.get("sess"):
            raise OAuthError(401, "invalid_token", "Encoded token is not a refresh token")
        if claims.get("client_id") != client_id:
            raise OAuthError(400, "invalid_grant",
                             "Wrong client for this refresh token: " + redact(token))
        if claims.get("expm", 0) <= self.now_ms():
            raise OAuthError(401, "invalid_token",
                             "Invalid refresh token (expired): " + redact(token))
        if claims.get("iat", 0) < self._not_before_ms:
            raise OAuthError(401, "invalid_token", "Invalid refresh token: " + redact(token))
        if claims.get("user_name") not in self.cfg["users"]:
            raise OAuthError(401, "invalid_token", "Invalid refresh token: " + redact(token))
        scope = claims.get("scope") or []
        if form.get("scope"):
            asked = form["scope"].split()
            if not set(asked) <= set(scope):
                raise OAuthError(400, "invalid_scope", "Unable to narrow the scope of the "
                                 "client authentication to " + str(asked) + ".")
        self.refreshes += 1
        claims = dict(claims)
        claims.pop("ati", None)
        return self._issue(client_id, claims.get("user_name"), scope,
                           claims.get("authorities", []), refresh_claims=claims)

    def _scope(self, client_id, asked):
        allowed = list(self.cfg["clients"][client_id].get("scopes", ["trust"]))
        if not asked:
            return allowed
        want = asked.split()
        bad = [s for s in want if s not in allowed]
        if bad:
            raise OAuthError(400, "invalid_scope", "Invalid scope: " + " ".join(bad),
                             {"scope": " ".join(allowed)})
        return want

    def check_client(self, client_id, secret):
        c = self.cfg["clients"].get(client_id)
        return c is not None and hmac.compare_digest(str(c["secret"]).encode(),
                                                     (secret or "").encode())

    # -- resource server --------------------------------------------------------------------
    def check_access(self, token):
        """The claims of a valid access token, else ``OAuthError`` (401 invalid_token)."""
        claims = self._decode(token)
        if "ati" in claims:
            raise OAuthError(401, "invalid_token", "Encoded token is a refresh token")
        if claims.get("sess"):
            raise OAuthError(401, "invalid_token", "Cannot convert access token to JSON")
        if claims.get("expm", 0) <= self.now_ms():
            raise OAuthError(401, "invalid_token", "Access token expired: " + redact(token))
        if claims.get("iat", 0) < self._not_before_ms:
            raise OAuthError(401, "invalid_token", "Invalid access token: " + redact(token))
        return claims
