"""lib/oauth.py against an in-process fake WebAdmin token endpoint."""

import time

import oauth
import support
from uplink_fakes import FakeWebAdmin, resp


def test_form_encoding():
    assert oauth.quote("a b&c=d+e%/é") == "a%20b%26c%3Dd%2Be%25%2F%C3%A9"
    assert oauth.form_encode((("grant_type", "password"), ("x", "-._~"))) == \
        "grant_type=password&x=-._~"


def test_password_grant_then_cached():
    s = FakeWebAdmin()
    a = oauth.OAuth(s, "admin", "pa&ss word", log=lambda m: None)
    assert a.authorization() == b"Bearer acc1"
    assert a.token() == "acc1" and s.token_calls == ["password"]


def test_refresh_before_expiry_and_invalidate():
    s = FakeWebAdmin()
    a = oauth.OAuth(s, "admin", "pa&ss word", margin_s=30, log=lambda m: None)
    a.token()
    a._expires = time.ticks_add(time.ticks_ms(), 10000)  # 10 s left < 30 s margin
    assert a.token() == "acc2" and s.token_calls == ["password", "refresh_token"]
    a.invalidate()
    assert a.token() == "acc3" and s.token_calls[-1] == "refresh_token"


def test_rejected_refresh_falls_back_to_password():
    s = FakeWebAdmin()
    a = oauth.OAuth(s, "admin", "pa&ss word", refresh_token="stale", log=lambda m: None)
    assert a.token() == "acc1"
    assert s.token_calls == ["refresh_token", "password"]


def test_refresh_only_config_works_then_clear_error():
    s = FakeWebAdmin()
    s.refresh_valid.add("cfg")
    lines = []
    a = oauth.OAuth(s, refresh_token="cfg", log=lines.append)
    assert a.token() == "acc1"
    s.refresh_valid.clear()  # the refresh token expired (24 h, not sliding)
    a.invalidate()
    e = support.raises(oauth.AuthError, a.token)
    assert e.reason == "no_credentials" and a.failed is e
    assert "cfg" not in str(e) and "ref1" not in str(e) and "ref1" not in repr(a)
    assert not any("ref1" in x or "cfg" in x for x in lines)


def test_bad_password_and_bad_client():
    s = FakeWebAdmin()
    a = oauth.OAuth(s, "admin", "wrong", log=lambda m: None)
    e = support.raises(oauth.AuthError, a.token)
    assert e.reason == "bad_password" and "wrong" not in str(e) and "wrong" not in repr(a)
    a = oauth.OAuth(s, "admin", "pa&ss word", client_secret="nope", log=lambda m: None)
    assert support.raises(oauth.AuthError, a.token).reason == "bad_client"


def test_server_error_is_transient():
    import https

    class Down:
        def request(self, *a, **k):
            return resp(503, "busy")

    a = oauth.OAuth(Down(), "admin", "pw", log=lambda m: None)
    e = support.raises(https.HTTPError, a.token)
    assert e.category == "status" and e.status == 503 and a.failed is None


def test_expiry_survives_ticks_wrap():
    s = FakeWebAdmin()
    a = oauth.OAuth(s, "admin", "pa&ss word", log=lambda m: None)
    a.token()
    # an expiry stored just past the 2**30 wrap still compares as "in the future"
    a._expires = time.ticks_add(time.ticks_ms(), 200000)
    assert a.valid()
    a._expires = time.ticks_add(time.ticks_ms(), -1000)
    assert not a.valid()
