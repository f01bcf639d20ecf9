"""Default settings of the weather logger (one line per key: unit / meaning).

Do not edit secrets in here: put overrides in ``config.json`` on the board (``make deploy
CONFIG=...``) or set them from WebREPL with ``settings.set_config(key, value)``. Every key's
type and range is checked by ``lib/settings.py`` (``settings.RULES``).
"""

DEFAULTS = {
    # -- Wi-Fi station and fallback access point
    "wifi_ssid": "",  # station SSID; "" = none (a seed board's NVS "WIFI" creds are migrated)
    "wifi_password": "",  # station password (secret); "" = open network
    "ap_ssid": "",  # fallback AP SSID; "" = "weather-" + last 4 hex digits of the MAC
    "ap_password": "weather-setup",  # fallback AP WPA2 passphrase, 8..63 chars (secret)
    "no_wifi_before_ap_s": 60,  # s without a station link before the AP starts
    "sta_retry_s": 30,  # s between station reconnect attempts (also while the AP is up)
    # -- clock
    "ntp_host": "pool.ntp.org",  # NTP server host name
    "ntp_resync_s": 3600,  # s between NTP resyncs once the clock is set
    # -- sensors (I2C bus shared by the AM2320 and the BMP180) and status LED
    "i2c_id": 0,  # hardware I2C peripheral, 0 or 1
    "i2c_scl": 22,  # GPIO of SCL
    "i2c_sda": 21,  # GPIO of SDA
    "i2c_freq": 100000,  # Hz; the AM2320 is specified up to 100 kHz only
    "led_pin": 2,  # GPIO of the Wi-Fi status LED (PWM); -1 = no LED
    # -- sampling and the on-flash queue (TSLog)
    "sample_interval_s": 2,  # s between samples (below 2 s the AM2320 rests in some slots)
    "send_interval_s": 10,  # s between upload attempts
    "commit_delta": 16,  # samples between TSLog commits: at most this many lost on a power cut
    "tslog_partition": "tslog",  # data partition for the queue (make flash creates it)
    "tslog_dir": "data/q",  # queue folder when the board has no such partition
    "bucket_size": 1024,  # records per TSLog bucket file (folder queue only)
    # -- upload to TimeBase WebAdmin (or tools/ingest)
    "tb_host": "",  # base URL "https://host:port"; "" = do not upload (samples queue up)
    "tb_ca_file": "ca.der",  # server CA certificate file on flash (DER or PEM)
    "tb_insecure": False,  # True = skip TLS certificate checks (testing only)
    "tb_user": "",  # WebAdmin user name (password grant)
    "tb_pass": "",  # WebAdmin password (secret)
    "tb_refresh_token": "",  # OAuth refresh token, used before user/password (secret)
    "tb_client_id": "web",  # OAuth client id (HTTP Basic on /oauth/token)
    "tb_client_secret": "secret",  # OAuth client secret (secret)
    "tb_stream": "weather-data",  # TimeBase stream key
    "symbol": "",  # record symbol; "" = "esp" + the whole MAC in hex (unique per board)
    "write_mode": "APPEND",  # ?writeMode= APPEND|INSERT|REWRITE|TRUNCATE; "" = omit (0.5.x)
    "batch_max": 50,  # records per upload request, at most
    "batch_bytes": 16384,  # bytes of JSON per upload request, at most
    "backoff_min_ms": 1000,  # ms, first retry delay after a failed upload
    "backoff_max_ms": 300000,  # ms, longest retry delay (exponential backoff cap)
    "timeout_s": 10,  # s per network operation (connect, send, receive)
    "cursor_commit_s": 60,  # s between saves of the upload position (flash wear)
    # -- fleet uplink: MQTT 3.1.1 to a broker (NATS JetStream cluster), beside or instead of
    # the TimeBase upload above (README "Fleet uplink (MQTT)")
    "mqtt_host": "",  # "mqtts://host:8883" (TLS); "" = no MQTT uplink (the module not loaded)
    "mqtt_ca_file": "ca.der",  # broker CA certificate file on flash (DER or PEM)
    "mqtt_insecure": False,  # True = skip TLS checks, or allow plain mqtt:// (testing only)
    "mqtt_user": "",  # broker user name
    "mqtt_pass": "",  # broker password (secret)
    "mqtt_topic": "weather/{symbol}",  # topic of every message; {symbol} = the record symbol
    "mqtt_batch_bytes": 4096,  # bytes of JSON per message (one buffer, allocated once)
    # -- health and failure policy
    "health_interval_s": 300,  # s between health records
    "sensor_fail_reset": 30,  # failed samples in a row before a reset (backed off across boots)
    "wdt_timeout_ms": 60000,  # ms, hardware watchdog (fed while the loop progresses); 0 = off
    "upload_stall_ms": 300000,  # ms an upload step may hang before the watchdog is left to fire
    "webrepl_password": "",  # WebREPL password, 4..9 chars (secret); "" = WebREPL not started
    "sd_mount": "",  # mount point of an SD card for archives, e.g. "/sd"; "" = none
}
