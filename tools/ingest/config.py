"""Configuration of the ingest server: defaults as TimeBase WebAdmin, overridden by a JSON file.

All durations are in seconds (floats allowed, so tests can use 1-2 s token lifetimes).
See docs/ingest.md for every key.
"""

import copy
import json
import re

# The seed firmware's stream (weather-data.schema.json), with the sensor fields nullable
# ("FLOAT?"): the board sends null for a sensor that failed, and the other sensor's values
# in the same message must still be stored (the seed's schema has every field non-nullable).
WEATHER_RECORD = {
    "am2320_temp": "FLOAT?",
    "am2320_humidity": "FLOAT?",
    "bmp180_temp": "FLOAT?",
    "bmp180_pressure": "FLOAT?",
    "bmp180_altitude": "FLOAT?",
    "mem_used": "INTEGER",
    "mem_free": "INTEGER",
    # true on a record of a boot that never learned the time: its timestamp is an
    # estimate (docs/firmware.md "Time"); absent (null) on every other record
    "time_estimated": "BOOLEAN?",
}

# The firmware's health records (lib/health.py FIELDS), a second class of the same stream.
# ``firmware`` is nullable: boards from before it was added do not send it.
HEALTH_RECORD = {
    "boot": "INTEGER", "reset_cause": "VARCHAR", "resets": "VARCHAR", "uptime_s": "INTEGER",
    "heap_free": "INTEGER", "heap_used": "INTEGER", "flash_free": "INTEGER",
    "queue_lag": "INTEGER", "rssi": "INTEGER", "wifi_drops": "INTEGER", "samples": "INTEGER",
    "stored": "INTEGER", "missed": "INTEGER", "sensor_failed": "INTEGER",
    "am2320_fails": "INTEGER", "bmp180_fails": "INTEGER", "dropped": "INTEGER",
    "dead": "INTEGER", "sent": "INTEGER", "firmware": "VARCHAR?", "queue": "VARCHAR?",
    "queue_days": "INTEGER?",
}

DEFAULTS = {
    # WebAdmin 0.5.14 application.yaml: user admin/admin with read+write.
    "users": {
        "admin": {"password": "admin", "authorities": ["TB_ALLOW_READ", "TB_ALLOW_WRITE"]},
    },
    # Spring OAuth client: web:secret, grants password + refresh_token, scope trust.
    "clients": {
        "web": {"secret": "secret", "scopes": ["trust"]},
    },
    "access_token_lifetime_s": 300,
    "refresh_token_lifetime_s": 86400,
    # Dashboard (docs/ingest.md "Dashboard"): a sign-in lasts this long; a board not heard
    # from (no record of any class received) for offline_after_s is shown "offline since".
    "session_lifetime_s": 43200,
    "offline_after_s": 900,
    "streams": {
        "weather-data": {"types": {"weather_record": WEATHER_RECORD,
                                   "health_record": HEALTH_RECORD}},
    },
    # Limits (docs/ingest.md "Limits"): what one client can make the server hold or do.
    # Biggest /write body (bytes): 413 (other requests: 64 KiB).
    "max_body_bytes": 2 * 1024 * 1024,
    # Messages in one /write body: more is 413, parsing stops there.
    "max_messages": 10000,
    # Per-message error entries listed in a /write reply; past it, one entry with the count.
    "max_error_entries": 100,
    # An idle keep-alive connection is closed after this many seconds.
    "idle_timeout_s": 30,
    # Whole-request deadline (s): TLS handshake, request line, headers and body must all
    # arrive within it, however slowly the bytes trickle; the reply gets the same again.
    "request_timeout_s": 30,
    # Open connections, in all and from one client address; more are closed at once.
    "max_connections": 64,
    "max_connections_per_client": 8,
    # Failed logins (wrong password or client secret) allowed in a row per client address
    # and per user; each further one locks that address or user out of /oauth/token for
    # 1, 2, 4 ... s, up to login_lockout_max_s (429 with Retry-After).
    "login_failures_per_client": 5,
    "login_failures_per_user": 10,
    "login_lockout_max_s": 300,
    # Rows per select reply when the request does not say (WebAdmin: 1000, hard cap 10000).
    "select_rows_default": 1000,
    "select_rows_max": 10000,
    # /admin/* runtime control (faults, revoke, rotate, restart, shutdown); off unless asked.
    "admin_api": False,
    "faults": {},
}

# Fault knobs (see server.Faults); every one defaults to "off".
FAULT_DEFAULTS = {
    "error_rate": 0.0,          # fraction of /write requests answered error_status (not stored)
    "error_next": 0,            # the next N /write requests answered error_status (not stored)
    "error_status": 503,
    "delay_s": 0.0,             # sleep before answering every API request
    "drop_before_body_next": 0,  # close the next N /write connections before reading the body
    "drop_before_body_rate": 0.0,
    "drop_after_store_next": 0,  # store the next N /write batches, then close without a reply
    "drop_after_store_rate": 0.0,
    "token_clock_offset_s": 0.0,  # added to the clock used to judge token expiry
    "read_only": False,          # /write answers WebAdmin's 403 read-only text
    "seed": None,                # random seed for the *_rate knobs (None: time-seeded)
}

_TYPES = ("FLOAT", "INTEGER", "INT32", "VARCHAR", "BOOLEAN")
_RESERVED = ("id", "symbol", "type", "seq", "timestamp", "capture_ns", "acquisition_ns")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ConfigError(ValueError):
    pass


def _merge(base, over):
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict) and k not in (
                "users", "clients", "streams", "types"):
            _merge(base[k], v)
        else:
            base[k] = v
    return base


def parse_set(item):
    """``KEY=VALUE`` from ``--set`` -> (["key", "sub"...], value): VALUE is JSON, or a bare
    string when it is not JSON (``--set users.admin.password=s3cret``)."""
    key, eq, text = item.partition("=")
    path = key.strip().split(".")
    if not eq or not all(path):
        raise ConfigError("--set %s: use KEY=VALUE, e.g. access_token_lifetime_s=2" % item[:60])
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    return path, value


def apply_set(cfg, path, value):
    """Set one nested key (``users.admin.password``) in ``cfg``, keeping its siblings:
    only that key changes (``users.admin``'s authorities stay)."""
    name = ".".join(path)
    if path[0] not in DEFAULTS:
        raise ConfigError("%s: unknown key (known: %s)" % (name, ", ".join(sorted(DEFAULTS))))
    node = cfg
    for i, k in enumerate(path[:-1]):
        nxt = node.get(k)
        if nxt is None:
            nxt = node[k] = {}
        if not isinstance(nxt, dict):
            raise ConfigError("%s: %s is not an object" % (name, ".".join(path[:i + 1])))
        node = nxt
    node[path[-1]] = value


def load(path=None, overrides=None, sets=()):
    """The effective config: DEFAULTS, then the JSON file at ``path``, then ``overrides``
    (a dict merged like a file), then ``sets`` (``parse_set`` results: one nested key each).

    ``users``, ``clients`` and ``streams`` given in a file replace the defaults whole; a
    ``set`` changes only the key it names.  Raises ConfigError with a one-line message
    naming the key.
    """
    cfg = copy.deepcopy(DEFAULTS)
    if path:
        try:
            with open(path) as f:
                data = json.load(f)
        except OSError as e:
            raise ConfigError("config %s: %s" % (path, e.strerror or e))
        except ValueError as e:
            raise ConfigError("config %s: not JSON: %s" % (path, e))
        if not isinstance(data, dict):
            raise ConfigError("config %s: not a JSON object" % path)
        _merge(cfg, data)
    if overrides:
        _merge(cfg, copy.deepcopy(overrides))
    for keys, value in sets:
        apply_set(cfg, keys, value)
    validate(cfg)
    return cfg


def _positive(cfg, k, integer):
    v = cfg[k]
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
    if ok and integer and not isinstance(v, int):
        ok = False
    if not ok:
        raise ConfigError("%s: %r is not a positive %s" % (
            k, v, "integer" if integer else "number (seconds)"))


def _strings(v):
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def validate(cfg):
    for k in ("users", "clients", "streams", "faults"):
        if not isinstance(cfg[k], dict):
            raise ConfigError("%s: must be an object" % k)
    for name, spec in cfg["streams"].items():
        if not name or "/" in name:
            raise ConfigError("streams: bad stream name %r" % name)
        types = spec.get("types") if isinstance(spec, dict) else None
        if not isinstance(types, dict) or not types:
            raise ConfigError("streams.%s.types: must map class names to field dicts" % name)
        for cls, fields in types.items():
            if not isinstance(fields, dict):
                raise ConfigError("streams.%s.types.%s: must map field names to types"
                                  % (name, cls))
            for fname, ftype in fields.items():
                if not _IDENT.match(fname) or fname in _RESERVED:
                    raise ConfigError("streams.%s.types.%s: bad field name %r" % (
                        name, cls, fname))
                if str(ftype).upper().rstrip("?") not in _TYPES:
                    raise ConfigError("streams.%s.types.%s.%s: type %r not one of %s" % (
                        name, cls, fname, ftype, ", ".join(_TYPES)))
    for name, u in cfg["users"].items():
        if not isinstance(u, dict) or not isinstance(u.get("password"), str):
            raise ConfigError("users.%s.password: missing or not a string" % name)
        if not _strings(u.get("authorities", [])):
            raise ConfigError("users.%s.authorities: must be a list of strings, e.g. "
                              '["TB_ALLOW_READ", "TB_ALLOW_WRITE"]' % name)
    for name, c in cfg["clients"].items():
        if not isinstance(c, dict) or not isinstance(c.get("secret"), str):
            raise ConfigError("clients.%s.secret: missing or not a string" % name)
    for k in ("access_token_lifetime_s", "refresh_token_lifetime_s", "idle_timeout_s",
              "request_timeout_s", "login_lockout_max_s", "session_lifetime_s",
              "offline_after_s"):
        _positive(cfg, k, False)
    for k in ("max_body_bytes", "max_messages", "max_error_entries", "max_connections",
              "max_connections_per_client", "login_failures_per_client",
              "login_failures_per_user", "select_rows_default", "select_rows_max"):
        _positive(cfg, k, True)
    if not isinstance(cfg["admin_api"], bool):
        raise ConfigError("admin_api: must be true or false")
    unknown = set(cfg["faults"]) - set(FAULT_DEFAULTS)
    if unknown:
        raise ConfigError("faults: unknown knobs: %s" % ", ".join(sorted(unknown)))


def stream_fields(spec):
    """All columns of a stream: {field: TYPE} over every class (first declaration wins)."""
    out = {}
    for fields in spec["types"].values():
        for fname, ftype in fields.items():
            out.setdefault(fname, str(ftype).upper().rstrip("?"))
    return out
