"""Health records: the board's own state, POSTed every ``interval_ms`` on their own ``$type``.

One message ``{"$type": "health_record", "symbol", "timestamp", <FIELDS>}`` in a JSON
array of one, sent to the same ``/api/v0/{stream}/write`` with the same
``https.Client`` and ``oauth.OAuth`` as the sample ``sender``, by the same POST
(``sender.post``: a 401 renews the token and sends once more), so it must run on the
uploader's thread: the client is not shared between threads.

Best effort, latest snapshot only: a health record is not queued on flash.  If a POST
fails (offline, server error, refused) nothing is retried; the next interval sends a
fresh snapshot, which supersedes the lost one (every field is a running total or a
current value, so nothing is lost but resolution).  The reset cause of this boot is in
every record of the boot, and ``resets`` lists the last few boots' causes, so a cause
still reaches the server when the boot it caused sent nothing.  While offline or
before the clock is set the record stays due and goes out as soon as both are fine.

A server that refuses the record (``200`` with an error entry: a stream created with the
weather class only answers ``Unknown type: health_record``) is logged once with a hint,
then quietly counted in ``refused`` while the snapshots keep going out, so the records
flow as soon as the class is added (docs/firmware.md); a different refusal is logged again.

Fields (all non-null; ``FIELDS`` names them in order, ``TEXT_FIELDS`` the VARCHAR ones, the
others are INTEGER: the TimeBase types for the stream schema):

==============  ========  ===================================================
boot            INTEGER   boot counter
reset_cause     VARCHAR   why this boot happened (``bootguard``)
resets          VARCHAR   last boots' causes, ``"boot:cause,..."``
uptime_s        INTEGER   seconds since boot (monotonic)
heap_free       INTEGER   ``gc.mem_free()`` bytes
heap_used       INTEGER   ``gc.mem_alloc()`` bytes
flash_free      INTEGER   records that still fit on flash (``TSLog.free()``)
queue_lag       INTEGER   stored records not yet uploaded (``TSLog.stats()[2]``)
rssi            INTEGER   Wi-Fi RSSI in dBm; 0 when unknown
wifi_drops      INTEGER   Wi-Fi links lost since boot
samples         INTEGER   sample slots taken since boot
stored          INTEGER   samples stored since boot
missed          INTEGER   slots missed (loop blocked) since boot
sensor_failed   INTEGER   slots where every sensor failed (not stored)
am2320_fails    INTEGER   failed AM2320 readings since boot
bmp180_fails    INTEGER   failed BMP180 readings since boot
dropped         INTEGER   unsent records deleted because the flash was full
dead            INTEGER   records dead-lettered by the sender since boot
sent            INTEGER   records uploaded since boot
firmware        VARCHAR   firmware version (``app.VERSION``)
queue           VARCHAR   where the queue is: ``partition tslog`` or its folder
queue_days      INTEGER   days of samples the queue holds at this interval (estimate)
==============  ========  ===================================================
"""

import json
import time

import utc

TYPE_NAME = "health_record"
FIELDS = ("boot", "reset_cause", "resets", "uptime_s", "heap_free", "heap_used", "flash_free",
          "queue_lag", "rssi", "wifi_drops", "samples", "stored", "missed", "sensor_failed",
          "am2320_fails", "bmp180_fails", "dropped", "dead", "sent", "firmware", "queue",
          "queue_days")
TEXT_FIELDS = ("reset_cause", "resets", "firmware", "queue")  # VARCHAR; the others INTEGER


def message(symbol, utc_ms, snap):
    """The JSON text of one health message of ``symbol`` at ``utc_ms`` from ``snap`` (a dict
    with the ``FIELDS`` names; a missing one is sent as 0 or "")."""
    m = {"$type": TYPE_NAME, "symbol": symbol, "timestamp": utc.iso(utc_ms)}
    for name in FIELDS:
        v = snap.get(name)
        if v is None:
            v = "" if name in TEXT_FIELDS else 0
        m[name] = v
    return json.dumps(m)


class Health:
    """Sends ``gather()`` (a dict with the ``FIELDS`` names) every ``interval_ms``.

    ``clock``: object with ``is_set`` and ``utc_ms()``.  Figures: ``sent``, ``failed``,
    ``refused`` (failures the server answered with an error entry), ``last_error``.
    """

    def __init__(self, client, auth, stream, symbol, interval_ms, gather, clock,
                 write_mode="APPEND", log=print):
        import sender  # here: the MQTT uplink uses message() without the HTTPS modules

        self._client = client
        self._auth = auth
        self._path = sender.write_path(stream, write_mode)
        self._post = sender.post
        self._stream = stream
        self._symbol = symbol
        self.interval_ms = interval_ms
        self.gather = gather
        self._clock = clock
        self._log = log
        self._next_ms = time.ticks_ms()  # the first one as soon as possible
        self.sent = 0
        self.failed = 0
        self.refused = 0
        self.last_error = None
        self._refusal = None  # the refusal last logged: the same one is not logged again

    def message(self):
        """The JSON text of the current snapshot (one message, not the array)."""
        return message(self._symbol, self._clock.utc_ms(), self.gather())

    def step(self, online=True):
        """Send a snapshot if one is due; True sent, False failed, None nothing done.
        It waits for the sender to log in: a login needs the most heap of anything the
        uploader does, and the sender keeps room for it (``sender._RESERVE``)."""
        if (time.ticks_diff(time.ticks_ms(), self._next_ms) < 0 or not online
                or not self._clock.is_set or not self._auth.valid()):
            return None
        self._next_ms = time.ticks_add(time.ticks_ms(), self.interval_ms)
        try:
            resp = self._post(self._client, self._auth, self._path, "[" + self.message() + "]")
            if resp.status != 200:
                raise ValueError("HTTP %d" % resp.status)
            if resp.body.strip() != b"[]":
                self.failed += 1
                self.refused += 1
                self.last_error = "refused: " + _refusal(resp.body)
                if self.last_error != self._refusal:
                    self._refusal = self.last_error
                    self._log("health: the server %s (does stream %s have the class %s? "
                              "docs/firmware.md); sending on, not logged again" % (
                                  self.last_error, self._stream, TYPE_NAME))
                return False
        except Exception as e:  # noqa: BLE001 - best effort: any failure waits an interval
            self.failed += 1
            self.last_error = str(e)[:120]
            self._log("health: not sent (%s); next in %d s" % (
                self.last_error, self.interval_ms // 1000))
            return False
        self.sent += 1
        self.last_error = None
        if self._refusal is not None:
            self._refusal = None
            self._log("health: records accepted again")
        return True


def _refusal(body):
    """The reason in a /write error reply (its first entry's ``error``), shortened."""
    try:
        e = json.loads(body)[0]
        text = e.get("error") or e.get("description") or str(e)
    except Exception:  # noqa: BLE001 - not the JSON we expect: quote the start
        text = body[:80].decode("utf-8", "replace")
    return text[:100]
