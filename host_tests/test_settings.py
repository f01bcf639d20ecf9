"""lib/settings.py over lib/config.py's table: defaults, validated overrides, atomic save,
NVS migration, WebREPL helpers (both interpreters)."""

import json
import os
import random

import config  # lib/config.py: the table
import esp32  # the fake: NVS blobs kept in a module-level store
import fsutil
import machine
import settings
import support

SECRETS = [k for k in config.TABLE if settings.secret(k)]


class Log:
    def __init__(self):
        self.lines = []

    def __call__(self, *args):
        self.lines.append(" ".join(str(a) for a in args))

    def text(self):
        return "\n".join(self.lines)


class Out(Log):
    """Stands in for ``print`` inside the settings module (WebREPL helpers print)."""


def _path(name="config.json"):
    return support.tmpdir("settings") + "/" + name


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _read_json(path):
    with open(path) as f:
        return json.loads(f.read())


def _nvs_set(ssid=None, password=None):
    nvs = esp32.NVS("WIFI")
    for key, value in (("SSID", ssid), ("PASS", password)):
        try:
            nvs.erase_key(key)
        except OSError:
            pass
        if value is not None:
            nvs.set_blob(key, value.encode())
    nvs.commit()


def _fresh():
    """No seed credentials in NVS (the store is shared by every test)."""
    _nvs_set()


def _capture_print():
    out = Out()
    settings.print = out  # module global shadows the builtin in both interpreters
    return out


def _restore_print():
    import builtins

    settings.print = builtins.print


def test_table_is_well_formed_and_defaults_valid():
    _fresh()
    defaults = config.DEFAULTS
    assert sorted(defaults) == sorted(config.TABLE) and config.DEFAULTS is not defaults
    flags = ("secret", "empty-ok", "zero-ok", "fraction", "one-of")
    for key, entry in config.TABLE.items():
        assert settings.validate(key, defaults[key]) == defaults[key], key
        if type(entry) is not tuple:
            assert type(entry) is bool, key  # a bare value: only its type is checked
            continue
        assert 3 <= len(entry) and type(entry[1]) is int and type(entry[2]) is int, key
        assert entry[1] <= entry[2], key
        words = entry[3].split() if len(entry) > 3 else []
        assert all(w in flags for w in words), (key, words)
        for extra in entry[4:]:
            assert type(entry[0]) is str and type(extra) in (str, tuple), key
    assert sorted(SECRETS) == ["ap_password", "mqtt_pass", "tb_client_secret", "tb_pass",
                               "tb_refresh_token", "webrepl_password", "wifi_password"], SECRETS


def test_complete_fills_every_key_and_checks_the_overrides():
    _fresh()
    cfg = settings.complete({"sample_interval_s": 5, "tb_host": "https://h"})
    assert sorted(cfg) == sorted(config.DEFAULTS) and cfg["sample_interval_s"] == 5
    assert cfg["tb_host"] == "https://h" and cfg["send_interval_s"] == 10
    assert settings.complete() == config.DEFAULTS
    assert settings.complete() is not settings.complete()
    e = support.raises(ValueError, settings.complete, {"sample_intervall_s": 5})
    assert "sample_intervall_s" in str(e)  # a typo is not silently ignored
    e = support.raises(ValueError, settings.complete, {"tb_pass": 7})
    assert "tb_pass" in str(e) and "7" not in str(e)
    e = support.raises(ValueError, settings.complete, {"i2c_scl": 21})
    assert "i2c_scl" in str(e) and "i2c_sda" in str(e)


def test_missing_file_gives_defaults_without_errors():
    _fresh()
    log = Log()
    before = dict(config.DEFAULTS)
    cfg = settings.load(_path(), log=log)
    assert cfg == config.DEFAULTS and cfg is not config.DEFAULTS
    assert log.lines == []
    cfg["sample_interval_s"] = 99
    assert config.DEFAULTS == before  # load returns a copy


def test_valid_overrides_applied():
    _fresh()
    p = _path()
    _write(p, json.dumps({"sample_interval_s": 5, "tb_host": "https://tb.example:8443",
                          "tb_insecure": True, "wifi_ssid": "roof", "write_mode": ""}))
    log = Log()
    cfg = settings.load(p, log=log)
    assert log.lines == [], log.lines
    assert cfg["sample_interval_s"] == 5 and cfg["tb_insecure"] is True
    assert cfg["tb_host"] == "https://tb.example:8443" and cfg["write_mode"] == ""
    assert cfg["wifi_ssid"] == "roof" and cfg["send_interval_s"] == 10


def test_corrupt_files_fall_back_to_defaults():
    _fresh()
    bad = ["{\"sample_interval_s\": 5,", "", "[1, 2]", "null", "\"text\"",
           # MicroPython's json.loads accepts these typos; settings must not
           "{\"a\": }", "{\"send_interval_s\": 5,}", "{\"send_interval_s\" 5}",
           "{\"symbol\": \"a\" \"send_interval_s\": 5}", "{,}", "{\"send_interval_s\": 05}",
           "{\"symbol\": \"a\\qb\"}", "{\"symbol\": \"\\u12\"}"]
    for text in bad:
        p = _path()
        _write(p, text)
        log = Log()
        cfg = settings.load(p, log=log)
        assert cfg == config.DEFAULTS, text
        assert len(log.lines) == 1 and p in log.lines[0], (text, log.lines)
    p = _path()
    with open(p, "wb") as f:
        f.write(b"{\"wifi_ssid\": \"\xff\xfe\"}")  # not UTF-8
    log = Log()
    assert settings.load(p, log=log) == config.DEFAULTS and len(log.lines) == 1
    p = _path()
    _write(p, "{\"symbol\": \"%s\"}" % ("x" * 9000))  # larger than any sane config
    log = Log()
    assert settings.load(p, log=log) == config.DEFAULTS
    assert "too large" in log.text()


def test_bad_values_use_defaults_per_key():
    _fresh()
    p = _path()
    _write(p, json.dumps({
        "sample_interval_s": "5",  # wrong type
        "i2c_freq": 10000000,  # out of range
        "tb_insecure": 1,  # an int is not a bool
        "commit_delta": True,  # a bool is not an int
        "no_such_key": 3,  # unknown
        "write_mode": "append",  # not a choice
        "tb_host": "tb.example",  # no scheme
        "tb_stream": "a/b",  # would break the URL
        "send_interval_s": 20,  # the one good value
    }))
    log = Log()
    cfg = settings.load(p, log=log)
    assert cfg["send_interval_s"] == 20
    for key in ("sample_interval_s", "i2c_freq", "tb_insecure", "commit_delta", "write_mode",
                "tb_host", "tb_stream"):
        assert cfg[key] == config.DEFAULTS[key], key
        assert key in log.text(), key
    assert "no_such_key" not in cfg and "unknown setting 'no_such_key'" in log.text()
    assert len(log.lines) == 8, log.lines


def test_validate_messages_and_rules():
    _fresh()
    e = support.raises(ValueError, settings.validate, "sample_interval_s", 0)
    assert "sample_interval_s" in str(e) and "1..3600" in str(e)
    e = support.raises(ValueError, settings.validate, "tb_insecure", 0)
    assert "tb_insecure" in str(e) and "bool" in str(e)
    support.raises(ValueError, settings.validate, "i2c_sda", 34)  # input-only GPIO
    support.raises(ValueError, settings.validate, "wifi_ssid", "s" * 33)
    support.raises(ValueError, settings.validate, "ap_password", "")  # never an open AP
    support.raises(ValueError, settings.validate, "ap_password", "1234567")
    support.raises(ValueError, settings.validate, "webrepl_password", "1234567890")
    support.raises(ValueError, settings.validate, "sd_mount", "sd")
    support.raises(ValueError, settings.validate, "nope", 1)
    assert settings.validate("webrepl_password", "") == ""
    assert settings.validate("webrepl_password", "abcd") == "abcd"
    assert settings.validate("ap_password", "12345678") == "12345678"
    assert settings.validate("led_pin", -1) == -1
    assert settings.validate("sample_interval_s", 1.5) == 1.5  # intervals may be fractional
    support.raises(ValueError, settings.validate, "sample_interval_s", 0.5)
    support.raises(ValueError, settings.validate, "commit_delta", 4.0)  # counts may not
    assert settings.validate("wdt_timeout_ms", 0) == 0  # watchdog off
    support.raises(ValueError, settings.validate, "wdt_timeout_ms", 100)
    assert settings.validate("sd_mount", "/sd") == "/sd"
    assert settings.validate("tb_host", "http://10.0.0.2:8099") == "http://10.0.0.2:8099"
    ssid = "Dachterrasse-\u00e4\u00f6"
    assert settings.validate("wifi_ssid", ssid) == ssid


def test_secrets_never_in_messages_or_logs():
    _fresh()
    secret = "hunter2-Secret"
    for key in SECRETS:
        for value in (secret * 400, 12345, secret[:3]):
            try:
                settings.validate(key, value)
            except ValueError as e:
                assert "hunter" not in str(e) and "12345" not in str(e), (key, str(e))
                assert "hun" not in str(e), str(e)
    p = _path()
    _write(p, json.dumps({"ap_password": "hunter2", "webrepl_password": "hunter2-Secret",
                          "wifi_pasword": "hunter2-Secret", "tb_pass": 7}))
    log = Log()
    cfg = settings.load(p, log=log)
    assert len(log.lines) == 4 and "hunter" not in log.text(), log.lines
    assert cfg["ap_password"] == config.DEFAULTS["ap_password"]


def test_conflicting_pins_and_backoff_use_defaults():
    _fresh()
    p = _path()
    _write(p, json.dumps({"i2c_scl": 21, "backoff_min_ms": 50000, "backoff_max_ms": 2000,
                          "led_pin": -1}))
    log = Log()
    cfg = settings.load(p, log=log)
    assert cfg["i2c_scl"] == 22 and cfg["i2c_sda"] == 21 and cfg["led_pin"] == -1
    assert cfg["backoff_min_ms"] == 1000 and cfg["backoff_max_ms"] == 300000
    assert len(log.lines) == 2, log.lines


def test_plain_http_host_needs_the_insecure_opt_out():
    # It was accepted silently: the password and tokens then crossed the LAN readable.
    _fresh()
    p = _path()
    host = "http://10.0.0.2:8099"
    _write(p, json.dumps({"tb_host": host, "tb_pass": "hunter2-Secret"}))
    log = Log()
    cfg = settings.load(p, log=log)
    assert cfg["tb_host"] == "" and cfg["tb_pass"] == "hunter2-Secret"  # nothing is sent
    assert len(log.lines) == 1 and "tb_host" in log.text() and "tb_insecure" in log.text()
    assert "hunter" not in log.text()
    _write(p, json.dumps({"tb_host": host, "tb_insecure": True}))
    log = Log()
    assert settings.load(p, log=log)["tb_host"] == host and not log.lines  # opted out
    p = _path("set.json")
    _write(p, "{}")
    out = _capture_print()
    try:
        e = support.raises(ValueError, settings.set_config, "tb_host", host, p)
        assert "tb_host" in str(e) and "tb_insecure" in str(e)
        assert _read_json(p) == {}
        settings.set_config("tb_insecure", True, p)
        settings.set_config("tb_host", host, p)
        support.raises(ValueError, settings.set_config, "tb_insecure", False, p)
        support.raises(ValueError, settings.set_config, "tb_insecure", None, p)
        assert _read_json(p) == {"tb_host": host, "tb_insecure": True}
        settings.set_config("tb_host", "https://10.0.0.2:8443", p)
        settings.set_config("tb_insecure", None, p)
    finally:
        _restore_print()
    assert _read_json(p) == {"tb_host": "https://10.0.0.2:8443"}
    assert "tb_host = 'http://10.0.0.2:8099' saved" in out.text()


def test_save_roundtrip_is_atomic_and_readable():
    _fresh()
    p = _path()
    over = {"wifi_ssid": "Dach \u00e4", "sample_interval_s": 4, "tb_insecure": False}
    settings.save(over, p)
    assert not fsutil.exists(p + ".tmp")
    assert _read_json(p) == over
    with open(p) as f:
        assert len(f.read().splitlines()) == 5  # braces + one key per line
    settings.save({"sample_interval_s": 6}, p)  # replaces the existing file
    assert _read_json(p) == {"sample_interval_s": 6} and not fsutil.exists(p + ".tmp")
    settings.save({}, p)
    assert _read_json(p) == {}


class _FatOs:
    """``os`` as on FAT: rename onto an existing file fails."""

    def __init__(self):
        self.renames = 0

    def __getattr__(self, name):
        return getattr(os, name)

    def rename(self, a, b):
        self.renames += 1
        if fsutil.exists(b):
            raise OSError(17)  # EEXIST
        os.rename(a, b)


def test_save_on_fat_removes_then_renames():
    _fresh()
    p = _path()
    settings.save({"sample_interval_s": 3}, p)
    fat = _FatOs()
    fsutil.os = fat  # save() writes through fsutil.write_atomic
    try:
        settings.save({"sample_interval_s": 7}, p)
    finally:
        fsutil.os = os
    assert fat.renames == 2
    assert _read_json(p) == {"sample_interval_s": 7} and not fsutil.exists(p + ".tmp")


def test_load_recovers_complete_temp_file():
    _fresh()
    # A cut between remove and rename on FAT leaves only the complete temp file.
    p = _path()
    _write(p + ".tmp", json.dumps({"sample_interval_s": 9}))
    log = Log()
    assert settings.load(p, log=log)["sample_interval_s"] == 9
    assert fsutil.exists(p) and not fsutil.exists(p + ".tmp") and "recovered" in log.text()
    # A cut while writing the temp file: the old file wins, the torn temp is ignored.
    _write(p + ".tmp", "{\"sample_interval_s\": 1")
    log = Log()
    assert settings.load(p, log=log)["sample_interval_s"] == 9 and log.lines == []


def test_nvs_credentials_migrated_once():
    _nvs_set("seed-net", "seed-pass-123")
    p = _path()
    _write(p, json.dumps({"sample_interval_s": 4}))
    log = Log()
    cfg = settings.load(p, log=log)
    assert cfg["wifi_ssid"] == "seed-net" and cfg["wifi_password"] == "seed-pass-123"
    assert cfg["sample_interval_s"] == 4
    assert _read_json(p) == {"sample_interval_s": 4, "wifi_ssid": "seed-net",
                             "wifi_password": "seed-pass-123"}
    assert "seed-net" in log.text() and "seed-pass" not in log.text()
    _nvs_set("other-net", "other-pass-123")  # NVS is not read again
    cfg = settings.load(p, log=Log())
    assert cfg["wifi_ssid"] == "seed-net"
    _nvs_set()


def test_nvs_migration_rules():
    # No config.json: created with the credentials; a missing PASS is an open network.
    _nvs_set("open-net")
    p = _path()
    cfg = settings.load(p, log=Log())
    assert cfg["wifi_ssid"] == "open-net" and cfg["wifi_password"] == ""
    assert _read_json(p) == {"wifi_ssid": "open-net", "wifi_password": ""}
    # An explicit wifi_ssid (even "") wins over NVS.
    p = _path()
    _write(p, json.dumps({"wifi_ssid": ""}))
    assert settings.load(p, log=Log())["wifi_ssid"] == ""
    # A corrupt config.json is left alone: the credentials are used, not written.
    p = _path()
    _write(p, "{corrupt")
    assert settings.load(p, log=Log())["wifi_ssid"] == "open-net"
    with open(p) as f:
        assert f.read() == "{corrupt"
    # nvs=False: no migration.
    p = _path()
    assert settings.load(p, log=Log(), nvs=False)["wifi_ssid"] == ""
    assert not fsutil.exists(p)
    # Nothing in NVS: nothing written.
    _nvs_set()
    p = _path()
    assert settings.load(p, log=Log())["wifi_ssid"] == "" and not fsutil.exists(p)
    # Blob longer than any SSID: ignored with no crash.
    _nvs_set("x" * 40)
    p = _path()
    log = Log()
    assert settings.load(p, log=log)["wifi_ssid"] == "" and "wifi_ssid" in log.text()
    _nvs_set()


def test_masked():
    _fresh()
    cfg = dict(config.DEFAULTS, wifi_password="pw123456", tb_refresh_token="eyJ")
    m = settings.masked(cfg)
    assert m["wifi_password"] == "***" and m["tb_refresh_token"] == "***"
    assert m["ap_password"] == "***" and m["tb_pass"] == "" and m["webrepl_password"] == ""
    assert m["wifi_ssid"] == cfg["wifi_ssid"] and m["sample_interval_s"] == 2
    assert cfg["wifi_password"] == "pw123456"  # a copy


def test_set_config_and_show_config():
    _fresh()
    p = _path()
    out = _capture_print()
    try:
        settings.set_config("sample_interval_s", 5, path=p)
        settings.set_config("tb_pass", "s3cr3t-pass", path=p)
        assert _read_json(p) == {"sample_interval_s": 5, "tb_pass": "s3cr3t-pass"}
        support.raises(ValueError, settings.set_config, "sample_interval_s", 0, p)
        support.raises(ValueError, settings.set_config, "bogus", 1, p)
        assert _read_json(p)["sample_interval_s"] == 5
        settings.set_config("sample_interval_s", None, path=p)  # back to the default
        assert _read_json(p) == {"tb_pass": "s3cr3t-pass"}
        settings.show_config(path=p)
    finally:
        _restore_print()
    text = out.text()
    assert "s3cr3t" not in text, text
    assert "* tb_pass" in text and "'***'" in text
    assert "  sample_interval_s    2" in text
    for key in config.DEFAULTS:
        assert key in text, key


def test_set_config_replaces_a_corrupt_file():
    _fresh()
    p = _path()
    _write(p, "{broken")
    out = _capture_print()
    try:
        settings.set_config("send_interval_s", 30, path=p)
    finally:
        _restore_print()
    assert _read_json(p) == {"send_interval_s": 30}
    assert "not valid JSON" in out.text()


def test_write_wifi_persists_then_resets():
    _fresh()
    p = _path()
    settings.save({"sample_interval_s": 3}, p)
    out = _capture_print()
    reset = None
    try:
        settings.write_wifi("roof-ap", "pa55word!", path=p)
    except BaseException as e:  # machine.Reset is a BaseException, like on the board
        reset = e
    finally:
        _restore_print()
    assert isinstance(reset, machine.Reset), reset
    assert _read_json(p) == {"sample_interval_s": 3, "wifi_ssid": "roof-ap",
                             "wifi_password": "pa55word!"}
    assert "roof-ap" in out.text() and "pa55word" not in out.text()
    assert settings.load(p, log=Log())["wifi_ssid"] == "roof-ap"
    support.raises(ValueError, settings.write_wifi, "", "x", p)
    support.raises(ValueError, settings.write_wifi, "n", "p" * 65, p)
    assert _read_json(p)["wifi_ssid"] == "roof-ap"  # an invalid call changes nothing


def test_write_wifi_resets_through_the_running_firmwares_guard():
    """boot.py gives the firmware's boot guard: its reset commits the queue and records
    why before the board resets."""
    _fresh()
    p = _path()
    calls = []

    class Guard:
        def reset(self, cause, why=""):
            calls.append((cause, why))
            machine.reset()

    out = _capture_print()
    try:
        settings.write_wifi("roof-ap", "pa55word!", path=p, guard=Guard())
    except BaseException as e:  # noqa: BLE001 - machine.Reset, as on the board
        assert isinstance(e, machine.Reset), e
    finally:
        _restore_print()
    assert calls == [("config", "write_wifi")] and _read_json(p)["wifi_ssid"] == "roof-ap"
    assert "pa55word" not in out.text()


def _random_value(rng):
    k = rng.getrandbits(3)
    if k == 0:
        return rng.getrandbits(20) - (1 << 19)
    if k == 1:
        return "s" * rng.getrandbits(4)
    if k == 2:
        return rng.getrandbits(1) == 1
    if k == 3:
        return None
    if k == 4:
        return [1, "a"]
    if k == 5:
        return {"x": 1}
    if k == 6:
        return 1.5
    return "https://" + "h" * rng.getrandbits(3)


def test_load_never_raises_and_returns_only_valid_values():
    _fresh()
    rng = random
    rng.seed(7)
    keys = list(config.DEFAULTS) + ["junk", ""]
    p = _path()
    for _ in range(150):
        over = {}
        for _ in range(rng.getrandbits(4)):
            over[keys[rng.getrandbits(8) % len(keys)]] = _random_value(rng)
        _write(p, json.dumps(over))
        cfg = settings.load(p, log=Log(), nvs=False)
        assert sorted(cfg) == sorted(config.DEFAULTS)
        for key in cfg:
            settings.validate(key, cfg[key])
        assert cfg["i2c_scl"] != cfg["i2c_sda"]
        assert cfg["backoff_min_ms"] <= cfg["backoff_max_ms"]


@support.cpython_only("differential check against CPython's strict json module")
def test_json_check_matches_cpython_json():
    rng = random.Random(3)
    docs = [json.dumps(config.DEFAULTS), json.dumps({"a": [1, -2.5e-3, {"b": None}],
                                                     "c": "x\\\"y\\u00e4", "d": True})]
    alphabet = '{}[]:,"\\ 0123456789.-+eEtrufalsnx\n'
    for _ in range(20000):
        t = list(rng.choice(docs))
        for _ in range(rng.randint(0, 3)):
            k = rng.randrange(len(t))
            if rng.random() < 0.5:
                t.insert(k, rng.choice(alphabet))
            else:
                del t[k]
        t = "".join(t)
        try:
            json.loads(t)
            ok = True
        except ValueError:
            ok = False
        assert settings._well_formed(t) == ok, t


_PC_DEFAULTS = {"sample_interval_s": 2, "wifi_ssid": "", "symbol": ""}
_PC_MNT = "/settings_pc"


def _pc_umount():
    import vfs

    from flash import PowerCut

    try:
        vfs.umount(_PC_MNT)
    except (OSError, PowerCut):
        pass


def _powercut_sweep(torn, fat=False):
    """Cut the power at every flash write of one save() that replaces config.json; after
    each cut, load() must give the old or the new settings whole, with no error.

    Not run on FAT: FAT itself is not power-safe (on this emulator a cut between the erase
    and the program of a directory sector loses every entry in it, the old file too);
    config.json lives on the board's LittleFS root."""
    import gc

    import vfs

    from flash import FlashBlockDevice, PowerCut

    fs = vfs.VfsFat if fat else vfs.VfsLfs2
    old = {"sample_interval_s": 3, "wifi_ssid": "old-net"}
    new = {"sample_interval_s": 7, "wifi_ssid": "new-net", "symbol": "roof"}
    path = _PC_MNT + "/config.json"
    _pc_umount()
    dev = FlashBlockDevice(block_size=512 if fat else 4096, block_count=128 if fat else 16,
                           nor=not fat)
    fs.mkfs(dev)
    vfs.mount(fs(dev), _PC_MNT)
    settings.save(old, path)
    _pc_umount()
    base = bytes(dev.data)
    k, cuts, outcomes = 0, 0, {}
    while True:
        k += 1
        dev.data[:] = base
        dev.restore()
        vfs.mount(fs(dev), _PC_MNT)
        dev.cut_after(k, torn)
        try:
            settings.save(new, path)
            done = True
        except PowerCut:
            done = False
            cuts += 1
        _pc_umount()
        dev = dev.reboot()
        gc.collect()  # finalizers of handles abandoned at the cut meet a dead chip
        vfs.mount(fs(dev), _PC_MNT)
        log = Log()
        cfg = settings.load(path, defaults=_PC_DEFAULTS, log=log, nvs=False)
        got = "new" if cfg == dict(_PC_DEFAULTS, **new) else (
            "old" if cfg == dict(_PC_DEFAULTS, **old) else repr(cfg))
        assert got in ("old", "new") and "using the default" not in log.text(), (
            k, got, log.lines)
        assert got == "new" or not done, k
        outcomes[got] = outcomes.get(got, 0) + 1
        settings.save({"sample_interval_s": 9}, path)  # the filesystem still works
        assert settings.load(path, defaults=_PC_DEFAULTS, log=log)["sample_interval_s"] == 9
        _pc_umount()
        if done:
            break
    print("settings power-cut sweep (%s, torn=%s): %d cuts, outcomes %r" % (
        "FAT" if fat else "LittleFS", torn, cuts, outcomes))
    return cuts, outcomes


@support.micropython_only("vfs.VfsLfs2 over the fake flash exists only in MicroPython")
def test_save_survives_power_cut_at_every_write_littlefs():
    for torn in (False, True):
        cuts, outcomes = _powercut_sweep(torn)
        assert cuts >= 3 and outcomes.get("old") and outcomes.get("new"), outcomes

