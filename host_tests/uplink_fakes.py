"""In-process stand-ins for the uplink unit tests (both interpreters).

``ListReader``: a TSReader over a Python list (``next()``, ``seqn``, ``commit()``),
with the committed cursor visible.  ``FakeWebAdmin``: an object with the
``https.Client.request`` signature that behaves like TimeBase WebAdmin (token
endpoint, ``/write`` with per-message errors) and records what it stored.
"""

import json

import https
import record


class ListReader:
    def __init__(self, recs, first_seq=1):
        self.recs = list(recs)
        self.first = first_seq
        self.pos = 0  # index of the next record to return
        self.committed = 0  # index after the last committed record
        self.seqn = None

    def add(self, rec):
        self.recs.append(rec)

    def next(self):
        if self.pos >= len(self.recs):
            return None
        rec = self.recs[self.pos]
        self.seqn = self.first + self.pos
        self.pos += 1
        return rec

    def next_record(self):
        rec = self.next()
        return None if rec is None else pack(rec)

    def commit(self):
        self.committed = self.pos

    def rewind(self):
        """Simulate a reboot: continue from the committed cursor."""
        self.pos = self.committed


def pack(rec):
    """A decoded record (any layout) packed again."""
    return record.encode(rec[0], rec[1:-2], rec[-2], rec[-1],
                         version=record.layout_of(rec).version)


def sample(i, t0=1700000000000, flags=record.FLAG_UTC, boot=1):
    """A decoded record (layout v2, the firmware's) for index ``i``: 20.x degC, 50.5 %RH,
    21.2 degC, 101325 + i Pa, mem_used 1000 + i, mem_free 90000 - i."""
    return (t0 + i * 2000, 200 + i % 10, 505, 212, 101325 + i, 1000 + i, 91000, boot,
            flags | 1 << 5)


def resp(status, body=b"", headers=None):
    if isinstance(body, str):
        body = body.encode()
    return https.Response(status, "X", headers or {}, body, False)


class FakeWebAdmin:
    """``script``: list of callables or statuses consumed one per /write call
    (``None`` = normal behaviour).  ``poison``: seqs answered with a 200 error entry.
    ``refuse``: seqs whose presence makes the whole POST a 400.  ``portal``: a
    ``Response`` that a captive portal or proxy in front of the server gives to every
    request while set (the server sees nothing; ``portal_hits`` counts them)."""

    def __init__(self):
        self.stored = {}  # seq -> message dict
        self.order = []  # seqs in arrival order (duplicates included)
        self.script = []
        self.poison = set()
        self.refuse = set()
        self.token_n = 0
        self.valid = set()
        self.refresh_valid = set()
        self.password = "pa&ss word"
        self.writes = 0
        self.token_calls = []
        self.last_headers = None
        self.max_body_seen = 0
        self.portal = None
        self.portal_hits = 0

    def close(self):
        self.closed = True

    def request(self, method, path, headers=None, body=None, length=None):
        h = dict(headers or ())
        self.last_headers = h
        if callable(body):
            data = "".join(c if isinstance(c, str) else c.decode() for c in body())
            assert length == len(data), (length, len(data))
        else:
            data = body.decode() if isinstance(body, bytes) else (body or "")
        self.max_body_seen = max(self.max_body_seen, len(data))
        if self.portal is not None:
            self.portal_hits += 1
            return self.portal
        if path == "/oauth/token":
            return self._token(h, data)
        if "/write" in path:
            return self._write(h, data)
        return resp(404)

    def _token(self, h, data):
        form = {}
        for kv in data.split("&"):
            k, _, v = kv.partition("=")
            form[k] = v
        self.token_calls.append(form.get("grant_type"))
        if h.get("Authorization") != "Basic d2ViOnNlY3JldA==":
            return resp(401, "{}", {"www-authenticate": 'Basic realm="oauth2/client"'})
        if form.get("grant_type") == "password":
            if form.get("password") != "pa%26ss%20word" or form.get("scope") != "trust":
                return resp(400, '{"error":"invalid_grant","error_description":"Bad credentials"}')
        elif form.get("grant_type") == "refresh_token":
            if form.get("refresh_token") not in self.refresh_valid:
                return resp(401, '{"error":"invalid_token","error_description":"x %s"}'
                            % form.get("refresh_token"))
        else:
            return resp(400, '{"error":"invalid_request"}')
        self.token_n += 1
        acc, ref = "acc%d" % self.token_n, "ref%d" % self.token_n
        self.valid.add(acc)
        self.refresh_valid.add(ref)
        return resp(200, json.dumps({"access_token": acc, "token_type": "bearer",
                                     "refresh_token": ref, "expires_in": 299,
                                     "scope": "trust", "jti": "j"}))

    def _write(self, h, data):
        self.writes += 1
        step = self.script.pop(0) if self.script else None
        if isinstance(step, int):
            return resp(step, '{"error":"scripted"}')
        auth = h.get("Authorization", "")
        if isinstance(auth, bytes):  # oauth.authorization() gives bytes (https sends them)
            auth = auth.decode()
        if not auth.startswith("Bearer ") or auth[7:] not in self.valid:
            return resp(401, '{"error":"invalid_token","error_description":"expired"}')
        msgs = json.loads(data)
        assert isinstance(msgs, list)
        if any(m["seq"] in self.refuse for m in msgs):
            return resp(400, "Request is too large, try using paging")
        errors = []
        for m in msgs:
            if m["seq"] in self.poison:
                text = json.dumps(m).replace('"', "'")
                errors.append({"message": "Message is invalid:" + text,
                               "error": "IllegalArgumentException:bad", "stacktrace": "\n"})
                continue
            self.order.append(m["seq"])
            self.stored[m["seq"]] = m
        if callable(step):
            return step()
        return resp(200, json.dumps(errors))
