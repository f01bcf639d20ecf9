"""The settings of the weather logger: one table, one entry per key.

Each entry is ``"key": (default, low, high[, flags[, extra...]])``, then a comment, the
key's one-line doc:

* ``low..high``: an int's range; a str's length range in UTF-8 bytes.
* ``flags``, words in a str: ``secret`` (never printed, logged or put in an exception),
  ``empty-ok`` ("" allowed besides the length range: off/none), ``zero-ok`` (0 allowed
  besides the range: off), ``fraction`` (a float allowed, e.g. the simulator's 1.5 s),
  ``one-of`` (the extra tuple lists every allowed value).
* ``extra``: a tuple, the prefixes the value must start with (and go on after); a str, the
  characters it must not contain.
* A bare value instead of a tuple (the bools): only the type is checked.

The type is the default's (a bool is not an int here). The checks and the rules between
two keys (pins that must differ, backoff order, plain ``http://`` only with the insecure
opt-out) are code, in ``lib/settings.py``. Adding a setting touches this table, then
``make settings-doc``. Change a board's values in its ``config.json`` (``make deploy
CONFIG=...``, or ``set_config(key, value)`` at the REPL), not here.

The docs cost the board nothing: they are comments, which ``mpy-cross`` drops. Comment
lines under an entry continue its doc; ``# --`` starts a section. Only the host reads
them: ``python -m tools.settings_doc`` writes the tables of README.md and docs/setup.md from
this file, and a test fails when those tables differ from it.

Why here, in ``/lib`` as bytecode like the other modules, and not in a ``/config.py`` the
board compiles from source at every boot (as earlier firmware had its defaults): the
compiler's parse tree of the whole table comes on top at the boot peak, ~2 KB on a 32-bit
build. ``settings`` and ``config`` are dropped after boot (``lib/app.py``);
``bench/bench_code_heap.py`` prints what they take while loaded and what stays after.
"""

TABLE = {
    # -- Wi-Fi station and fallback access point
    "wifi_ssid": ("", 0, 32),  # station SSID; "" = none (a seed board's NVS "WIFI"
    # credentials are migrated)
    "wifi_password": ("", 0, 64, "secret"),  # station password; "" = open network
    "ap_ssid": ("", 0, 32),  # fallback AP SSID; "" = "weather-" + the last 4 hex digits of
    # the MAC
    "ap_password": ("weather-setup", 8, 63, "secret"),  # fallback AP WPA2 passphrase: the
    # AP is never open
    "no_wifi_before_ap_s": (60, 5, 86400),  # s without a station link before the AP starts
    "sta_retry_s": (30, 1, 3600),  # s between station reconnect attempts (also while the AP
    # is up)
    # -- clock
    "ntp_host": ("pool.ntp.org", 1, 253),  # NTP server host name
    "ntp_resync_s": (3600, 60, 604800),  # s between NTP resyncs once the clock is set
    # -- sensors (I2C bus shared by the AM2320 and the BMP180) and status LED
    "i2c_id": (0, 0, 1),  # hardware I2C peripheral
    "i2c_scl": (22, 0, 33),  # GPIO of SCL (GPIO 34..39 are input only)
    "i2c_sda": (21, 0, 33),  # GPIO of SDA
    "i2c_freq": (100000, 1000, 400000),  # Hz; the AM2320 is specified up to 100 kHz only
    "led_pin": (2, -1, 33),  # GPIO of the Wi-Fi status LED (PWM); -1 = no LED
    # -- sampling and the on-flash queue (TSLog)
    "sample_interval_s": (2, 1, 3600, "fraction"),  # s between samples; below 2 s the
    # AM2320 (read at most every 2 s) has no reading in some records: its values are null
    # there, marked resting
    "send_interval_s": (10, 1, 86400, "fraction"),  # s between upload attempts
    "commit_delta": (16, 1, 4096),  # samples between queue commits: at most this many are
    # lost on a power cut
    "tslog_partition": ("tslog", 0, 16),  # label of the raw data partition for the queue
    # (`make flash` creates it; far less flash wear than LittleFS); when the board has none,
    # the folder `tslog_dir`
    "tslog_dir": ("data/q", 1, 64, "", " "),  # queue folder, relative to the filesystem
    # root (boards without the partition)
    "bucket_size": (1024, 8, 65536),  # records per TSLog bucket file (folder queue)
    # -- upload to TimeBase WebAdmin (or tools/ingest)
    "tb_host": ("", 0, 256, "empty-ok", ("https://", "http://")),  # base URL
    # "https://host:port"; "" = do not upload (samples queue up). Plain `http://` would send
    # the password and tokens readable: without `tb_insecure` the board refuses it (logged,
    # nothing uploaded) and `make deploy` stops
    "tb_ca_file": ("ca.der", 1, 64, "", " "),  # server CA certificate file on flash (DER
    # or PEM)
    "tb_insecure": False,  # true = skip TLS certificate checks, or allow plain `http://` (a
    # LAN test only; logged as a WARNING on every connection, and `make deploy` warns)
    "tb_user": ("", 0, 128),  # WebAdmin user name (password grant)
    "tb_pass": ("", 0, 128, "secret"),  # WebAdmin password
    "tb_refresh_token": ("", 0, 4096, "secret"),  # OAuth refresh token, used before
    # user/password
    "tb_client_id": ("web", 0, 128),  # OAuth client id (HTTP Basic on /oauth/token)
    "tb_client_secret": ("secret", 0, 128, "secret"),  # OAuth client secret
    "tb_stream": ("weather-data", 1, 128, "", "/?#% "),  # TimeBase stream key
    "symbol": ("", 0, 64),  # record symbol; "" = "esp" + the whole MAC in hex, e.g.
    # "esp246f28a1b2c3", unique per board (earlier firmware used the first 4 digits, the
    # vendor's prefix: see the README)
    "write_mode": ("APPEND", 0, 16, "one-of", ("APPEND", "INSERT", "REWRITE", "TRUNCATE",
                                               "")),  # `?writeMode=` of each write; "" =
    # omit it (WebAdmin 0.5.x, whose default REWRITE truncates the stream: docs/uplink.md)
    "batch_max": (50, 1, 1000),  # records per upload request, at most
    "batch_bytes": (16384, 1024, 65536),  # bytes of JSON per upload request, at most
    "backoff_min_ms": (1000, 100, 3600000),  # ms, first retry delay after a failed upload
    "backoff_max_ms": (300000, 1000, 86400000),  # ms, longest retry delay (exponential
    # backoff cap)
    "timeout_s": (10, 1, 120),  # s per network operation (connect, send, receive)
    "cursor_commit_s": (60, 0, 3600),  # s between saves of the upload position: each is a
    # flash write; after a power cut up to this much of the uploads may be sent again
    # -- fleet uplink: MQTT 3.1.1 to a broker, beside or instead of the upload above
    "mqtt_host": ("", 0, 256, "empty-ok", ("mqtts://", "mqtt://"), "?#@ "),  # broker URL
    # "mqtts://host[:port]" (README "Fleet uplink (MQTT)"); "" = no MQTT uplink (its code
    # is not loaded)
    "mqtt_ca_file": ("ca.der", 1, 64, "", " "),  # broker CA certificate file on flash (DER
    # or PEM)
    "mqtt_insecure": False,  # true = skip TLS checks, or allow plain `mqtt://` (testing only)
    "mqtt_user": ("", 0, 128),  # broker user name
    "mqtt_pass": ("", 0, 128, "secret"),  # broker password
    "mqtt_topic": ("weather/{symbol}", 1, 128, "", "+# "),  # topic of every message;
    # `{symbol}` = the record symbol
    "mqtt_batch_bytes": (4096, 1024, 16384),  # bytes of JSON per message (one buffer,
    # allocated at boot)
    # -- health and failure policy
    "health_interval_s": (300, 10, 86400),  # s between health records
    "sensor_fail_reset": (30, 1, 100000),  # slots with every sensor failing before a reset
    # (backed off across boots, 1 min doubling to 1 h)
    "wdt_timeout_ms": (60000, 5000, 3600000, "zero-ok"),  # ms, hardware watchdog (fed while
    # the loop progresses); 0 = off
    "upload_stall_ms": (300000, 10000, 3600000),  # ms an upload step may hang before the
    # watchdog is left to fire
    "webrepl_password": ("", 4, 9, "secret empty-ok"),  # WebREPL password; "" = WebREPL
    # not started
    "sd_mount": ("", 0, 32, "empty-ok", ("/",)),  # mount point of an SD card for daily CSV
    # archives of every record, e.g. "/sd"; "" = none
}


def __getattr__(name):
    """``config.DEFAULTS``: a new dict of every key's default, made when asked for (the
    table is the one copy kept)."""
    if name != "DEFAULTS":
        raise AttributeError(name)
    out = dict(TABLE)  # sized once; a dict grown key by key briefly holds two tables
    for k in out:
        if type(out[k]) is tuple:
            out[k] = out[k][0]
    return out
