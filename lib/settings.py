"""Settings: the table of every key (``lib/config.py``), overrides from ``config.json``.

``config.TABLE`` holds each setting once: default, checks and doc (the format is in
``lib/config.py``); this module holds the code and the rules between two keys. ``load()``
returns every key of the table, so code reads ``cfg[key]``; ``complete(overrides)`` builds
such a dict for tests and benchmarks.

``load()`` never raises: a missing ``config.json`` is normal, and a corrupt file, a value
of the wrong type or out of range, or an unknown key is logged and the default is used for
what is bad. ``save()`` replaces the file atomically (temp file, flush, rename), so a power
cut leaves the old or the new file, never half of one.

A board that ran the seed firmware keeps its Wi-Fi: when ``config.json`` has no
``wifi_ssid``, ``load()`` reads the seed's NVS namespace ``WIFI`` (blobs ``SSID`` and
``PASS``) and writes them into ``config.json``, so this happens once.

WebREPL helpers (use them at the ``>>>`` prompt; changes apply after a reboot)::

    show_config()                       # every key, secrets masked
    set_config("sample_interval_s", 5)  # validate + save one key
    set_config("sample_interval_s", None)  # back to the default
    write_wifi("my-ssid", "my-password")   # save Wi-Fi, then machine.reset()

Secrets (``secret`` in the table) are never printed or put in an exception message: print
a settings dict only through ``masked()``.
"""

import json
import os

import config
from fsutil import exists, write_atomic
from micropython import const

PATH = "config.json"  # relative: the board's cwd is "/", the simulator's its flash image
_MAX_FILE = const(8192)  # bytes: a bigger config.json is refused (bounded allocation)
_NVS_BUF = const(96)  # bytes: an SSID is <= 32, a WPA2 passphrase <= 64

# (key, key): must differ (pins) / first <= second (backoff) / a plain http:// host only
# with the insecure opt-out (the password and tokens would cross the network readable)
_DIFFERENT = (("i2c_scl", "i2c_sda"), ("led_pin", "i2c_scl"), ("led_pin", "i2c_sda"))
_ORDERED = (("backoff_min_ms", "backoff_max_ms"),)
_CLEAR_TEXT = (("tb_host", "tb_insecure"), ("mqtt_host", "mqtt_insecure"))


def _same(a, b):
    return a == b and a != -1  # -1: "no LED"


def _greater(a, b):
    return a > b


def _clear_text(host, insecure):
    return isinstance(host, str) and (host.startswith("http://") or host.startswith(
        "mqtt://")) and insecure is not True


_PAIR_RULES = ((_DIFFERENT, _same, "%s and %s must differ"),
               (_ORDERED, _greater, "%s must be <= %s"),
               (_CLEAR_TEXT, _clear_text, "%s is plain http:// or mqtt://, which sends the "
                "password unencrypted: use https:// or mqtts://, or set %s to true (a LAN test "
                "only)"))


def _conflicts(cfg):
    """(key, key, message) for each rule between two keys that ``cfg`` breaks."""
    for pairs, bad, why in _PAIR_RULES:
        for a, b in pairs:
            if a in cfg and b in cfg and bad(cfg[a], cfg[b]):
                yield a, b, why % (a, b)


def _default(entry):
    return entry[0] if type(entry) is tuple else entry


def _flags(entry):
    return entry[3] if type(entry) is tuple and len(entry) > 3 else ""


def secret(key):
    """True if ``key``'s value must never be shown."""
    return "secret" in _flags(config.TABLE.get(key))


def _check(key, value, entry):
    """``value`` if valid for ``key`` (its table ``entry``, None if unknown), else
    ValueError naming the key (never showing a secret)."""
    if entry is None:
        raise ValueError("unknown setting %r" % key)
    want = type(_default(entry))
    flags = _flags(entry)
    if type(value) is not want and not ("fraction" in flags and type(value) is float):
        # exact: a bool is not an int here, a float not an int
        raise ValueError("%s: expected %s, got %s" % (
            key, "number" if "fraction" in flags else want.__name__, type(value).__name__))
    if type(entry) is not tuple:
        return value
    shown = "***" if "secret" in flags else repr(value)
    if want is str:
        _check_str(key, value, entry, flags, shown)
    elif not entry[1] <= value <= entry[2] and not ("zero-ok" in flags and value == 0):
        raise ValueError("%s: must be %s..%s, got %s" % (key, entry[1], entry[2], shown))
    return value


def _check_str(key, text, entry, flags, shown):
    if text == "" and "empty-ok" in flags:
        return
    n = len(text.encode())
    if not entry[1] <= n <= entry[2]:
        got = "" if "secret" in flags else ", got %d" % n  # a secret's length is not shown
        raise ValueError("%s: length must be %d..%d bytes%s" % (key, entry[1], entry[2], got))
    for extra in entry[4:]:
        if type(extra) is str:  # characters it must not contain
            for c in extra:
                if c in text:
                    raise ValueError("%s: must not contain %r, got %s" % (key, c, shown))
        elif "one-of" in flags:
            if text not in extra:
                raise ValueError("%s: must be one of %s, got %s" % (
                    key, "|".join(extra), shown))
        else:  # prefixes
            for p in extra:
                if text.startswith(p) and len(text) > len(p):
                    break
            else:
                raise ValueError("%s: must start with %s, got %s" % (
                    key, " or ".join(extra), shown))


def validate(key, value):
    """Return ``value`` if it is valid for ``key``; ValueError with a message naming the key
    (and never showing a secret) otherwise."""
    return _check(key, value, config.TABLE.get(key))


def complete(overrides=None):
    """Every key: the defaults updated with ``overrides``, each checked as ``set_config``
    does (ValueError naming the key for an unknown key, a bad value or a broken rule between
    two keys). For tests and benchmarks: the dict ``load()`` gives a board with these
    overrides in its config.json."""
    cfg = config.DEFAULTS  # a new dict
    overrides = overrides or {}
    for key in overrides:
        cfg[key] = validate(key, overrides[key])
    for conflict in _conflicts(cfg):
        raise ValueError(conflict[2])
    return cfg


def masked(cfg):
    """A copy of ``cfg`` with secrets replaced by "***" ("" when not set)."""
    out = dict(cfg)
    for k in out:
        if "secret" in _flags(config.TABLE.get(k)):
            out[k] = "***" if out[k] else ""
    return out


# _well_formed() states: what the next token must be
_VALUE = const(0)
_VALUE_OR_END = const(1)  # after "["
_KEY = const(2)  # after "," in an object
_KEY_OR_END = const(3)  # after "{"
_COLON = const(4)  # after a key
_AFTER = const(5)  # after a value: "," or a closing bracket (or the end)
_SCALAR = "-+.0123456789eEtrufalsn"
_ESCAPES = '"\\/bfnrtu'
_HEX = "0123456789abcdefABCDEF"


def _digits(w, i):
    """Index after the run of digits at ``w[i:]``."""
    while i < len(w) and "0" <= w[i] <= "9":
        i += 1
    return i


def _number(w):
    """JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?"""
    i = 1 if w[:1] == "-" else 0
    j = _digits(w, i)
    if j == i or (w[i] == "0" and j > i + 1):
        return False
    if w[j:j + 1] == ".":
        i, j = j + 1, _digits(w, j + 1)
        if j == i:
            return False
    if w[j:j + 1] in ("e", "E"):
        j += 1
        if w[j:j + 1] in ("+", "-"):
            j += 1
        i, j = j, _digits(w, j)
        if j == i:
            return False
    return j == len(w)


def _well_formed(t):
    """True if ``t`` is exactly one JSON value. MicroPython's ``json.loads`` skips missing
    commas and colons and drops a key without a value, so a typo would not be noticed."""
    n = len(t)
    i = 0
    stack = []
    state = _VALUE
    while i < n:
        c = t[i]
        if c in " \t\r\n":
            i += 1
            continue
        if state == _COLON:
            if c != ":":
                return False
            state = _VALUE
        elif state == _AFTER or (c in "}]" and state in (_KEY_OR_END, _VALUE_OR_END)):
            if c == "," and state == _AFTER and stack:
                state = _KEY if stack[-1] == "{" else _VALUE
            elif c in "}]" and stack and stack.pop() == ("{" if c == "}" else "["):
                state = _AFTER
            else:
                return False
        elif c == '"':
            i += 1
            while i < n and t[i] != '"':
                if t[i] < " ":
                    return False
                if t[i] == "\\":
                    i += 1
                    if i >= n or t[i] not in _ESCAPES:
                        return False
                    if t[i] == "u":
                        for _ in range(4):
                            i += 1
                            if i >= n or t[i] not in _HEX:
                                return False
                i += 1
            if i >= n:
                return False
            state = _COLON if state in (_KEY, _KEY_OR_END) else _AFTER
        elif state in (_KEY, _KEY_OR_END):
            return False
        elif c in "{[":
            stack.append(c)
            state = _KEY_OR_END if c == "{" else _VALUE_OR_END
        else:
            j = i
            while j < n and t[j] in _SCALAR:
                j += 1
            word = t[i:j]
            if word not in ("true", "false", "null") and not _number(word):
                return False
            state = _AFTER
            i = j
            continue
        i += 1
    return state == _AFTER and not stack


def _read(path):
    """The JSON object in ``path``: (dict, None), (None, None) if missing, (None, error)."""
    try:
        size = os.stat(path)[6]
    except OSError:
        return None, None
    if size > _MAX_FILE:
        return None, "file too large (%d bytes, at most %d)" % (size, _MAX_FILE)
    try:
        with open(path, "rb") as f:
            data = f.read()
        text = data.decode()
        if not _well_formed(text):
            raise ValueError
        obj = json.loads(text)
    except (OSError, ValueError) as e:  # UnicodeError and JSONDecodeError are ValueErrors
        return None, "not valid JSON (%s)" % (e.__class__.__name__,)
    if type(obj) is not dict:
        return None, "not a JSON object"
    return obj, None


def save(overrides, path=PATH):
    """Write ``overrides`` (a dict) to ``path`` atomically: a temp file is written and
    flushed, then renamed over ``path`` (removing ``path`` first where rename cannot
    replace a file: FAT). One key per line, sorted, so the file is easy to read."""
    lines = []
    for k in sorted(overrides):
        lines.append("  %s: %s" % (json.dumps(k), json.dumps(overrides[k])))
    text = "{\n" + ",\n".join(lines) + "\n}\n" if lines else "{}\n"
    write_atomic(path, text)


def _read_nvs_wifi(log):
    """(ssid, password) from the seed firmware's NVS namespace "WIFI", or None."""
    try:
        import esp32
    except ImportError:
        return None
    buf = bytearray(_NVS_BUF)
    try:
        nvs = esp32.NVS("WIFI")
        n = nvs.get_blob("SSID", buf)
        ssid = bytes(buf[:n]).decode().rstrip("\x00")
        try:
            n = nvs.get_blob("PASS", buf)
            password = bytes(buf[:n]).decode().rstrip("\x00")
        except OSError:
            password = ""  # an open network
    except (OSError, ValueError):  # no such key (ENOENT), blob too long, not UTF-8
        return None
    finally:
        for i in range(len(buf)):  # do not leave the password in a free heap block
            buf[i] = 0
    if not ssid:
        return None
    try:
        validate("wifi_ssid", ssid)
        validate("wifi_password", password)
    except ValueError as e:
        log("settings: seed NVS Wi-Fi credentials not used: %s" % e)
        return None
    return ssid, password


def load(path=PATH, defaults=None, log=print, nvs=True):
    """Settings dict: every key of the table (of ``defaults``, a dict of defaults, when
    given), updated with the valid overrides in ``path``. Never raises; every problem is
    logged (without secrets).

    ``nvs``: migrate the seed's Wi-Fi credentials from NVS when no SSID is configured.
    """
    base = config.TABLE if defaults is None else defaults  # key: entry (or default)
    cfg = config.DEFAULTS if defaults is None else dict(defaults)  # a new dict
    try:
        raw, err = _read(path)
        if raw is None and err is None and exists(path + ".tmp"):
            raw, err = _read(path + ".tmp")  # a cut during save() on FAT: temp is complete
            if raw is not None:
                try:
                    os.rename(path + ".tmp", path)
                    log("settings: %s recovered from %s.tmp" % (path, path))
                except OSError as e:  # read-only filesystem: use it anyway
                    log("settings: %s.tmp used, not renamed (%s)" % (path, e))
        if err is not None:
            log("settings: %s: %s; using the defaults" % (path, err))
        raw = raw or {}
        for key in raw:
            try:
                cfg[key] = _check(key, raw[key], config.TABLE.get(key, base.get(key)))
            except ValueError as e:
                log("settings: %s: %s; using the default" % (path, e))
        for a, b, why in _conflicts(cfg):
            log("settings: %s: %s; using the defaults" % (path, why))
            for k in (a, b):  # undo the overrides that caused the conflict
                if k in raw:
                    if k in base:
                        cfg[k] = _default(base[k])
                    else:
                        cfg.pop(k)
        if nvs and not cfg.get("wifi_ssid") and "wifi_ssid" not in raw:
            creds = _read_nvs_wifi(log)
            if creds is not None:
                cfg["wifi_ssid"], cfg["wifi_password"] = creds
            if creds is not None and err is None:  # a corrupt file is not overwritten
                over = dict(raw)
                over["wifi_ssid"], over["wifi_password"] = creds
                try:
                    save(over, path)
                    log("settings: Wi-Fi %r migrated from the seed's NVS into %s" % (
                        creds[0], path))
                except OSError as e:
                    log("settings: %s: cannot save the migrated Wi-Fi (%s)" % (path, e))
    except Exception as e:  # never let a settings problem stop the boot
        log("settings: %s: unexpected %s; using the defaults" % (path, e.__class__.__name__))
        return config.DEFAULTS if defaults is None else dict(defaults)
    return cfg


# -- WebREPL helpers --------------------------------------------------------------------


def _overrides(path):
    raw, err = _read(path)
    if err is not None:
        print("settings: %s: %s; starting a new one" % (path, err))
    return raw or {}


def set_config(key, value, path=None):
    """Validate and save one override into config.json; ``value`` None removes the
    override (the default applies again). Takes effect after ``machine.reset()``.
    A value that breaks a rule with another key (pins that must differ, backoff order,
    ``tb_host`` http:// without ``tb_insecure``) is refused, naming both keys."""
    path = path or PATH
    if value is None:
        if key not in config.TABLE:
            raise ValueError("unknown setting %r" % key)
        shown = "(default)"
    else:
        value = validate(key, value)
        shown = masked({key: value})[key] if secret(key) else repr(value)
    over = _overrides(path)
    if value is None:
        over.pop(key, None)
    else:
        over[key] = value
    merged = config.DEFAULTS
    merged.update(over)
    for a, b, why in _conflicts(merged):
        if key in (a, b):
            raise ValueError(why)
    save(over, path)
    print("%s = %s saved in %s; machine.reset() to apply" % (key, shown, path))


def show_config(path=None):
    """Print every setting, one per line, secrets masked; "*" marks the keys set in
    config.json."""
    path = path or PATH
    cfg = masked(load(path, nvs=False))
    over = _read(path)[0] or {}
    for k in sorted(cfg):
        print("%s %-20s %r" % ("*" if k in over else " ", k, cfg[k]))
    print("(* = set in %s)" % path)


def write_wifi(ssid, password, path=None, guard=None):
    """Save the station's Wi-Fi credentials in config.json, then reboot (as the seed's
    ``write_wifi``). ``guard``: the running firmware's ``bootguard.BootGuard`` (boot.py
    gives it), whose reset commits the queue first and records the cause."""
    path = path or PATH
    if not ssid:
        raise ValueError("wifi_ssid: must not be empty")
    validate("wifi_ssid", ssid)
    validate("wifi_password", password)
    over = _overrides(path)
    over["wifi_ssid"] = ssid
    over["wifi_password"] = password
    save(over, path)
    print("Wi-Fi %r saved in %s; rebooting" % (ssid, path))
    if guard is not None:
        guard.reset("config", "write_wifi")
    import machine

    machine.reset()
