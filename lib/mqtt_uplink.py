"""Fleet uplink: publish committed TSLog records to an MQTT 3.1.1 broker, QoS 1.

Loaded only when ``mqtt_host`` is set.  It reads the queue through its own TSLog reader
(reader 2; 0 is the HTTPS sender's, 1 the SD archive's) and commits that cursor only after
the broker's PUBACK for the message holding the records: a cut connection, a broker that
fails over or a power cut re-sends, never loses (the collector absorbs the repeats, by
``(symbol, seq)``).  It runs beside the HTTPS sender on the uploader thread, each with its
own reader, so one board can feed a site's TimeBase and a fleet's cluster at once.

One message = a JSON array of up to ``batch_bytes`` of records, exactly the body of an
HTTPS ``/write`` (``$type``, ``symbol``, ``timestamp``, ``seq``, the values; a failed
reading is ``null``), on topic ``weather/<symbol>`` (``topic``, ``{symbol}`` replaced).
A message per batch, not per record: umqtt.simple waits for each PUBACK, so the round
trips, not the bytes, bound a backlog's drain.  The message is built in one buffer
allocated at start (``batch_bytes``), so the heap does not grow with the backlog, and a
failed publish re-sends the same bytes.  Records are read only while a whole record still
fits (an upper bound of its size), because a record read is a record the reader's cursor
has passed.  Records without a wall-clock time wait for their boot's epoch
(``set_boot_epoch``) as in ``sender``; those of an older boot that never learnt the time,
or of a layout this firmware cannot decode, are logged and counted in ``dead``.

TLS is verified against ``ca_file`` (DER, or PEM) with the host name checked;
``mqtt://`` (no TLS) or an unverified ``mqtts://`` need ``insecure=True`` and are logged
loudly.  The client id is the symbol, clean session, no keep-alive pings (a publish every
``send_interval_s`` finds a dead link: every socket operation has ``timeout_s``).

``step()``: at most one publish of records and, when due, one health record (best effort,
as ``health``: not retried).  Failures back off exponentially with jitter
(``backoff_min_ms`` .. ``backoff_max_ms``); a CONNACK refusing the user or password
(codes 4, 5) waits ``backoff_max_ms`` ("auth_failed").  Figures: ``stats()``.
"""

import json
import sys
import time

import record
from micropython import const
from umqtt_simple import MQTTClient, MQTTException

try:
    import ssl
except ImportError:  # pragma: no cover - ports built without TLS
    ssl = None

_MP = sys.implementation.name == "micropython"
_PID_MAX = const(65535)  # umqtt.simple's packet id would pass 16 bits (0 is not a valid id)


def _rand16():
    import random

    return random.getrandbits(16)


def parse_url(url):
    """``(tls, host, port)`` of ``mqtts://host[:port]`` (8883) or ``mqtt://host[:port]``
    (1883); host: a name or an IPv4 address."""
    tls = url.startswith("mqtts://")
    if not tls and not url.startswith("mqtt://"):
        raise ValueError("mqtt_host must start with mqtts:// or mqtt://")
    host, _, port = url[8 if tls else 7:].rstrip("/").partition(":")
    if not host:
        raise ValueError("mqtt_host has no host")
    return tls, host, int(port) if port else 8883 if tls else 1883


class _Conn:
    """What umqtt.simple gets as ``ssl``: wraps each new socket (TLS when ``ctx``), keeping
    the plain socket, whose timeout ``wait_msg()`` clears and ``step()`` sets again.  On
    CPython it also gives the socket MicroPython's ``read``/``write`` calls, which
    umqtt.simple uses (``_Stream``)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.raw = None

    def wrap_socket(self, sock, server_hostname=None):
        self.raw = sock
        try:  # TCP_NODELAY (6, 1 on Linux and lwIP): umqtt writes a PUBLISH in 4 pieces
            sock.setsockopt(6, 1, 1)
        except (OSError, AttributeError):
            pass
        if self.ctx is not None:
            sock = self.ctx.wrap_socket(sock, server_hostname=server_hostname)
        if _MP:
            return sock
        self.raw = sock  # CPython's SSLSocket took the plain one over (its timeout too)
        return _Stream(sock)


class _Stream:
    """CPython only: a socket with MicroPython's stream calls."""

    def __init__(self, sock):
        self._s = sock

    def read(self, n):
        out = b""
        while len(out) < n:
            got = self._s.recv(n - len(out))
            if not got:
                break
            out += got
        return out

    def write(self, data, n=None):
        if isinstance(data, str):  # umqtt.simple writes the client id, topic, user as str
            data = data.encode()
        self._s.sendall(data if n is None else memoryview(data)[:n])

    def setblocking(self, flag):
        self._s.setblocking(flag)

    def close(self):
        self._s.close()


def _context(tls, ca_file, insecure):
    """An SSLContext verifying against ``ca_file`` (None for plain MQTT)."""
    if not tls:
        return None
    if ssl is None:
        raise ValueError("this port has no ssl module")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if insecure:
        if hasattr(ctx, "check_hostname"):
            ctx.check_hostname = False  # type: ignore
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if not ca_file:
        raise ValueError("mqtts:// needs a CA file (or mqtt_insecure)")
    with open(ca_file, "rb") as f:
        data = f.read()
    if b"-----BEGIN" in data:  # PEM: some mbedTLS builds parse DER only
        import https

        certs = https.load_ca(ca_file)
    else:
        certs = (data,)
    for der in certs:
        ctx.load_verify_locations(cadata=der)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class MqttUplink:
    """QoS 1 publisher of ``reader``'s records (a TSReader: ``next_record()``, ``seqn``,
    ``seek()``, ``commit()``) as ``symbol`` to the broker at ``url``.

    ``health_ms``/``health``: every ``health_ms`` publish ``health()`` (the JSON text of
    one health message, None while the clock is unknown) on the same topic.  ``boot``:
    this boot's counter (see ``sender``).
    """

    def __init__(self, reader, symbol, url, ca_file=None, insecure=False, user=None,
                 password=None, topic="weather/{symbol}", batch_bytes=4096, timeout_s=10,
                 backoff_min_ms=1000, backoff_max_ms=300000, boot=None, health_ms=0,
                 health=None, log=print):
        tls, self.host, self.port = parse_url(url)
        if not (tls and not insecure):
            if not insecure:
                raise ValueError("mqtt:// sends the password and data unencrypted: use "
                                 "mqtts:// (or mqtt_insecure, a LAN test only)")
            log("mqtt: WARNING: %s to %s" % ("unverified TLS" if tls else "no TLS", self.host))
        self._conn = _Conn(_context(tls, ca_file, insecure))
        self._reader = reader
        self._symbol = symbol
        self._user = user or None
        self._password = password or None
        self.topic = topic.replace("{symbol}", symbol)
        self._timeout = timeout_s
        self._bmin = backoff_min_ms
        self._bmax = backoff_max_ms
        self._boot = boot
        self._health_ms = health_ms
        self._health = health
        self._health_next = time.ticks_ms()
        self._log = log
        self._prefix = '{"$type":"weather_record","symbol":%s,"timestamp":"' % json.dumps(symbol)
        most = self._most = record.json_bound(self._prefix)  # of every registered layout
        if batch_bytes < most + 2:
            raise ValueError("mqtt_batch_bytes must be >= %d" % (most + 2))
        self._buf = bytearray(batch_bytes)
        self._mv = memoryview(self._buf)
        self._n = 0  # bytes of the message in the buffer; 0: none pending
        self._count = 0  # records in it
        self._held = None  # (seq, rec) read, waiting for its boot's epoch
        self._epochs = {}
        self._estimated = set()
        self._client = None
        self._fails = 0
        self._next_ms = time.ticks_ms()
        self.sent = 0
        self.messages = 0
        self.dead = 0
        self.retries = 0
        self.connects = 0
        self.health_sent = 0
        self.state = "idle"  # idle|sending|backoff|waiting_clock|auth_failed
        self.last_error = None

    def set_boot_epoch(self, boot, utc_ms_at_boot, estimated=False):
        """The UTC ms at which boot ``boot``'s monotonic clock read 0 (see ``record``);
        ``estimated`` as in ``sender``."""
        self._epochs[boot] = utc_ms_at_boot
        if estimated:
            self._estimated.add(boot)
        else:
            self._estimated.discard(boot)

    def stats(self):
        return {"sent": self.sent, "messages": self.messages, "dead": self.dead,
                "retries": self.retries, "connects": self.connects, "state": self.state,
                "health_sent": self.health_sent, "last_error": self.last_error}

    def pending(self):
        return self._count > 0 or self._held is not None

    # -- building a message ----------------------------------------------------
    def _put(self, text):
        b = text.encode()
        n = self._n
        self._buf[n:n + len(b)] = b
        self._n = n + len(b)

    def _fill(self):
        """Read records into the buffer while one more surely fits; returns how many.
        On any error (a MemoryError on a fragmented heap) the reader goes back to where
        this fill started: what it read is read again, never skipped."""
        start, held = self._reader.seqn, self._held
        try:
            return self._fill_buffer()
        except Exception:
            self._reader.seek(start)
            self._held = held
            self._n = self._count = 0
            raise

    def _fill_buffer(self):
        self._n = 0
        self._put("[")
        count = 0
        rd = self._reader
        while self._n + self._most + 1 <= len(self._buf):
            item, self._held = self._held, None
            if item is None:
                raw = rd.next_record()
                if raw is None:
                    break
                try:
                    item = rd.seqn, record.decode(raw)
                except ValueError as e:  # unknown layout or length: never block the queue
                    self._dead(rd.seqn, e)
                    continue
            seq, rec = item
            ts = record.timestamp_of(rec, self._epochs)
            if ts is None:
                if record.waits(rec, self._epochs, self._boot):
                    self._held = item  # it may get its time: wait, keep order
                    break
                self._dead(seq, "no wall-clock time for boot %d" % rec[record.I_BOOT])
                continue
            self._put(record.json_message(self._prefix, seq, rec, ts, self._estimated,
                                          "," if count else ""))
            count += 1
        self._put("]")
        self._count = count
        if not count:
            self._n = 0
            if self._held is None:
                rd.commit()  # only dead records were read (or none): they are done
        return count

    def _dead(self, seq, why):
        self.dead += 1
        self._log("mqtt: seq %d not sent: %s" % (seq, str(why)[:80]))

    # -- the connection ----------------------------------------------------------
    def close(self):
        c, self._client = self._client, None
        if c is not None and c.sock is not None:
            try:
                c.sock.close()
            except OSError:
                pass

    def _publish(self, data):
        c = self._client
        if c is None:
            c = MQTTClient(self._symbol, self.host, self.port, self._user, self._password,
                           ssl=self._conn)
            self._client = c
            c.connect(timeout=self._timeout)
            self.connects += 1
        self._conn.raw.settimeout(self._timeout)  # type: ignore  (wait_msg() cleared it)
        if c.pid >= _PID_MAX:
            c.pid = 0
        c.publish(self.topic, data, qos=1)

    def _fail(self, e):
        self.close()
        auth = isinstance(e, MQTTException) and e.args and e.args[0] in (4, 5)
        self.last_error = ("connection refused, code %d" % e.args[0] if isinstance(
            e, MQTTException) and e.args else "%s: %s" % (type(e).__name__, e))[:120]
        self._fails += 1
        self.retries += 1
        if auth:
            delay = self._bmax
            self.state = "auth_failed"
        else:
            delay = self._bmin << min(self._fails - 1, 20)
            if delay > self._bmax:
                delay = self._bmax
            delay = delay // 2 + (delay // 2) * _rand16() // 65536  # jitter: [d/2, d)
            self.state = "backoff"
        self._next_ms = time.ticks_add(time.ticks_ms(), delay)
        self._log("mqtt: %s; retry in %d ms" % (self.last_error, delay))

    # -- the step ------------------------------------------------------------------
    def step(self):
        """At most one publish of records (and a health record when due); returns the
        number of records the broker acknowledged (0 if idle, waiting or backing off)."""
        if self.state in ("backoff", "auth_failed") and \
                time.ticks_diff(self._next_ms, time.ticks_ms()) > 0:
            return 0
        if not self._count and not self._fill():
            self.state = "waiting_clock" if self._held is not None else "idle"
            self._send_health()
            return 0
        self.state = "sending"
        try:
            self._publish(self._mv[:self._n])
        except Exception as e:  # noqa: BLE001 - any failure: the same bytes go again later
            self._fail(e)
            return 0
        n = self._count
        self._count = self._n = 0
        self.sent += n
        self.messages += 1
        self._fails = 0
        if self._held is None:
            self._reader.commit()  # acknowledged: this reader never reads them again
        self._send_health()
        return n

    def _send_health(self):
        if not self._health_ms or self._health is None or \
                time.ticks_diff(time.ticks_ms(), self._health_next) < 0:
            return
        text = self._health()
        if text is None:  # no wall-clock time yet: stays due
            return
        self._health_next = time.ticks_add(time.ticks_ms(), self._health_ms)
        try:
            self._publish(("[" + text + "]").encode())
            self.health_sent += 1
        except Exception as e:  # noqa: BLE001 - best effort: a fresh one next interval
            self.close()
            self._log("mqtt: health record not sent: %s" % str(e)[:80])
