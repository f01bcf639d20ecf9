"""The collector: the boards' MQTT messages from a NATS JetStream cluster into a store.

``python -m tools.ingest collect`` (docs/fleet.md).  Boards publish QoS 1 over MQTT to
NATS's MQTT listener, which answers PUBACK only once the message is stored in JetStream's
stream ``$MQTT_msgs`` (subject ``$MQTT.msgs.<topic as subject>``, replicated like the
cluster's other streams).  That stream is the durable queue between boards and store: a
message another stream merely captured would not be covered by the board's PUBACK.  The
stream keeps a message while a consumer wants it (interest retention), so each *topic
stream* (``--topic weather/#=weather-data``: Attic's per-topic streams) is a durable pull
consumer on it, filtered to the topic, created before any board publishes (the collector
makes the stream itself when the cluster has not yet seen an MQTT client, with the
settings NATS would give it).

Loop per topic stream: fetch up to ``batch`` messages, parse each (a JSON array of
records, the body of an HTTPS ``/write``; a single object is taken as an array of one),
validate every record against the stream's schema (``schema.validate``), write the
valid ones in one transaction (``store.write``: the dedup rule of ``dedup.py``), and
only then ack the messages.  A crash before the ack redelivers them (after ``ack_wait``)
to whichever collector asks next, and the store absorbs the exact repeats.  Invalid
records are logged, counted and appended to the reject file (JSON lines), then acked: a
message nothing can store must not come back forever.  A store that fails (PostgreSQL
restarting) is retried with back-off while the messages are kept in progress.

Several collectors share one durable consumer: each fetch hands out messages no other
collector holds, so adding collectors (processes, machines) scales the drain.

Every ``report_s`` (60) the collector prints one line ``collect: figures {...}``:
messages and records per second since the last line, written, duplicates, collisions,
rejects, redeliveries (messages delivered more than once), store retries, and the lag
(messages not yet acked by any collector, from the consumer's info).  SIGTERM or SIGINT:
the batch in hand is written and acked, then the collector exits (code 0) with its
final figures.
"""

import asyncio
import json
import os
import signal
import sys
import time

from . import schema

MQTT_STREAM = "$MQTT_msgs"
MQTT_PREFIX = "$MQTT.msgs."
_STORE_BACKOFF = (0.2, 5.0)  # s: first and longest wait between store retries


def topic_subject(topic):
    """The NATS subject filter of an MQTT topic filter: ``weather/#`` -> ``weather.>``."""
    parts = []
    for level in topic.split("/"):
        if "." in level or " " in level:
            raise ValueError("topic %r: '.' and ' ' are not usable here" % topic)
        parts.append(">" if level == "#" else "*" if level == "+" else level)
    return ".".join(parts)


def consumer_name(stream):
    """The durable consumer of a store stream (one per topic stream)."""
    return "collect-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in stream)


def parse_topics(items):
    """``["weather/#=weather-data", ...]`` -> ``{"weather/#": "weather-data"}``."""
    out = {}
    for item in items:
        topic, sep, stream = item.partition("=")
        if not sep or not topic or not stream:
            raise ValueError("--topic takes TOPIC=STREAM, e.g. weather/#=weather-data")
        topic_subject(topic)
        out[topic] = stream
    return out


class Figures:
    """Counters of one collector process (all topic streams)."""

    KEYS = ("messages", "records", "written", "duplicates", "collisions", "rejects",
            "redeliveries", "store_retries", "batches")

    def __init__(self):
        for k in self.KEYS:
            setattr(self, k, 0)
        self.t0 = time.monotonic()
        self._last = (self.t0, 0, 0)
        self.lag = None

    def snapshot(self, final=False):
        now = time.monotonic()
        t, m, r = self._last
        dt = max(now - t, 1e-9)
        d = {k: getattr(self, k) for k in self.KEYS}
        d["messages_per_s"] = round((self.messages - m) / dt, 1)
        d["records_per_s"] = round((self.records - r) / dt, 1)
        d["lag"] = self.lag
        d["uptime_s"] = round(now - self.t0, 1)
        if not final:
            self._last = (now, self.messages, self.records)
        return d


class Collector:
    """Drains ``topics`` ({MQTT topic filter: store stream}) into ``store``.

    ``nats_urls``: the cluster's client URLs (any node; the client fails over);
    ``user``/``password``: the NATS user; ``ca``: CA file when the NATS port is TLS.
    """

    def __init__(self, store, nats_urls, topics, user=None, password=None, ca=None,
                 batch=256, ack_wait_s=30, replicas=3, report_s=60, reject_path=None,
                 ack_delay_s=0, out=sys.stdout):
        self.store = store
        self.urls = list(nats_urls)
        self.topics = dict(topics)
        for s in self.topics.values():
            if not store.has_stream(s):
                raise ValueError("store has no stream %r (have: %s)" % (
                    s, ", ".join(sorted(store.specs))))
        self.user = user
        self.password = password
        self.ca = ca
        self.batch = batch
        self.ack_wait_s = ack_wait_s
        self.replicas = replicas
        self.report_s = report_s
        self.reject_path = reject_path
        self.ack_delay_s = ack_delay_s  # fault injection: hold a committed batch unacked
        self.out = out
        self.figures = Figures()
        self._stop = None
        self._nc = None

    def say(self, text):
        self.out.write("collect: %s\n" % text)
        self.out.flush()

    def stop(self):
        """Finish the batch in hand, ack it, and return from ``run()`` (any thread)."""
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    # -- set-up -----------------------------------------------------------------------------
    async def _connect(self):
        import nats

        kw = {}
        if self.ca:
            import ssl

            kw["tls"] = ssl.create_default_context(cafile=self.ca)

        async def on_error(e):
            self.say("nats: %s" % (str(e) or type(e).__name__)[:160])

        async def on_disconnect():
            self.say("nats: disconnected, reconnecting")

        async def on_reconnect():
            self.say("nats: reconnected to %s" % (self._nc.connected_url.netloc
                                                 if self._nc and self._nc.connected_url else "?"))

        self._nc = await nats.connect(
            servers=self.urls, user=self.user, password=self.password, connect_timeout=3,
            max_reconnect_attempts=-1, reconnect_time_wait=0.5, error_cb=on_error,
            disconnected_cb=on_disconnect, reconnected_cb=on_reconnect, **kw)
        return self._nc.jetstream(timeout=5)

    async def ensure(self, js):
        """The stream (if the cluster has none yet) and one durable consumer per topic
        stream; safe when several collectors do it at once."""
        from nats.js import api
        from nats.js.errors import NotFoundError

        try:
            await js.stream_info(MQTT_STREAM)
        except NotFoundError:
            try:  # what NATS's MQTT gateway creates at its first client
                await js.add_stream(api.StreamConfig(
                    name=MQTT_STREAM, subjects=[MQTT_PREFIX + ">"],
                    retention=api.RetentionPolicy.INTEREST, storage=api.StorageType.FILE,
                    num_replicas=self.replicas))
                self.say("created stream %s (%d replicas)" % (MQTT_STREAM, self.replicas))
            except Exception as e:  # noqa: BLE001 - another collector or the gateway won
                if "already in use" not in str(e) and "exist" not in str(e):
                    raise
        for topic, stream in self.topics.items():
            await js.add_consumer(MQTT_STREAM, api.ConsumerConfig(
                durable_name=consumer_name(stream), ack_policy=api.AckPolicy.EXPLICIT,
                deliver_policy=api.DeliverPolicy.ALL,
                filter_subject=MQTT_PREFIX + topic_subject(topic), ack_wait=self.ack_wait_s,
                max_deliver=-1, max_ack_pending=20000))

    # -- the loop ---------------------------------------------------------------------------
    async def run(self):
        """Run until ``stop()`` (or SIGTERM when installed by ``main``); returns the final
        figures."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        while True:  # the cluster may not be up yet: keep trying, as a service should
            try:
                js = await self._connect()
                break
            except Exception as e:  # noqa: BLE001
                self.say("cannot reach %s: %s; retrying" % (
                    ",".join(self.urls), (str(e) or type(e).__name__)[:120]))
                try:
                    await asyncio.wait_for(self._stop.wait(), 2)
                    return self.figures.snapshot(final=True)
                except asyncio.TimeoutError:
                    pass
        for attempt in range(60):  # a cluster just started may have no meta leader yet
            try:
                await self.ensure(js)
                break
            except Exception as e:  # noqa: BLE001
                if attempt == 59:
                    raise
                self.say("set-up: %s; retrying" % (str(e) or type(e).__name__)[:120])
                await asyncio.sleep(1)
        self.say("draining %s from %s" % (", ".join("%s -> %s" % kv for kv in
                                                     self.topics.items()), self.urls[0]))
        tasks = [asyncio.ensure_future(self._drain(js, t, s)) for t, s in self.topics.items()]
        tasks.append(asyncio.ensure_future(self._report(js)))
        await self._stop.wait()
        await asyncio.gather(*tasks[:-1])
        tasks[-1].cancel()
        try:
            await self._nc.flush(timeout=5)
        except Exception:  # noqa: BLE001 - acks not flushed are redelivered, then absorbed
            pass
        await self._nc.close()
        figs = self.figures.snapshot(final=True)
        self.say("stopped; figures %s" % json.dumps(figs, sort_keys=True))
        return figs

    async def _drain(self, js, topic, stream):
        from nats.errors import TimeoutError as NatsTimeout

        sub = None
        while not self._stop.is_set():
            try:
                if sub is None:
                    sub = await js.pull_subscribe_bind(consumer_name(stream), MQTT_STREAM)
                msgs = await sub.fetch(self.batch, timeout=1)
            except (NatsTimeout, asyncio.TimeoutError):
                continue
            except Exception as e:  # noqa: BLE001 - a node down, no leader yet: try again
                self.say("fetch %s: %s" % (stream, (str(e) or type(e).__name__)[:120]))
                await asyncio.sleep(0.5)
                continue
            if msgs:
                await self._handle(stream, msgs)

    async def _handle(self, stream, msgs):
        f = self.figures
        types = self.store.specs[stream]["types"]
        rows, rejects = [], []
        for m in msgs:
            f.messages += 1
            if m.metadata.num_delivered > 1:
                f.redeliveries += 1
            try:
                body = m.data if m.data[:1] != b"{" else b"[" + m.data + b"]"
                items = schema.parse_batch(body, 10000)
            except schema.BatchError as e:
                rejects.append((m.subject, None, str(e)))
                continue
            for item in items:
                f.records += 1
                try:
                    rows.append(schema.validate(item, types))
                except schema.MessageError as e:
                    rejects.append((m.subject, item, str(e)))
        if rows:
            res = await self._write(stream, rows, msgs)
            if res is None:  # stopping while the store is down: not acked, redelivered
                return
            f.written += res.written
            f.duplicates += res.duplicates
            f.collisions += res.collisions
            for i, err in res.rejected:
                rejects.append(("", rows[i], err))
        if rejects:
            self._reject(stream, rejects)
        if self.ack_delay_s:  # tests kill the collector here: written, not yet acked
            self.say("holding %d committed messages %.1f s before the ack" % (
                len(msgs), self.ack_delay_s))
            await asyncio.sleep(self.ack_delay_s)
        for m in msgs:
            await m.ack()
        f.batches += 1

    async def _write(self, stream, rows, msgs):
        wait = _STORE_BACKOFF[0]
        while True:
            try:
                return await asyncio.to_thread(self.store.write, stream, rows)
            except Exception as e:  # noqa: BLE001 - the store is down or restarting
                self.figures.store_retries += 1
                self.say("store: %s; retry in %.1f s" % ((str(e).strip() or type(e).__name__)
                                                          [:160], wait))
            if self._stop.is_set():  # not acked: redelivered to the next collector
                return None
            for m in msgs:  # keep them ours while we wait
                try:
                    await m.in_progress()
                except Exception:  # noqa: BLE001 - redelivered then: absorbed as repeats
                    pass
            await asyncio.sleep(wait)
            wait = min(wait * 2, _STORE_BACKOFF[1])

    def _reject(self, stream, rejects):
        self.figures.rejects += len(rejects)
        for subject, _, err in rejects[:3]:
            self.say("rejected on %s (%s): %s" % (subject or stream, stream, err[:160]))
        if self.reject_path:
            with open(self.reject_path, "a") as fh:
                for subject, item, err in rejects:
                    try:
                        text = json.dumps(item)
                    except (TypeError, ValueError):
                        text = json.dumps(repr(item))
                    fh.write('{"stream":%s,"subject":%s,"error":%s,"message":%s}\n' % (
                        json.dumps(stream), json.dumps(subject), json.dumps(err), text))

    async def _report(self, js):
        while True:
            await asyncio.sleep(self.report_s)
            lag = 0
            try:
                for stream in self.topics.values():
                    ci = await js.consumer_info(MQTT_STREAM, consumer_name(stream))
                    lag += (ci.num_pending or 0) + (ci.num_ack_pending or 0)
                self.figures.lag = lag
            except Exception:  # noqa: BLE001 - a figure, not worth failing for
                self.figures.lag = None
            self.say("figures %s" % json.dumps(self.figures.snapshot(), sort_keys=True))


def main(a):
    """``python -m tools.ingest collect`` (arguments: ``__main__``)."""
    from . import config as _config
    from .store import open_store

    try:
        streams = _config.load(a.config)["streams"]
        topics = parse_topics(a.topic or ["weather/#=weather-data"])
    except (_config.ConfigError, ValueError) as e:
        print("collect: %s" % e, file=sys.stderr)
        return 2
    password = os.environ.get("NATS_PASSWORD")
    if a.credentials:
        with open(a.credentials) as fh:
            password = json.load(fh).get(a.user)
    store = open_store(a.store, streams)
    try:
        c = Collector(store, a.nats.split(","), topics, user=a.user, password=password,
                      ca=a.ca, batch=a.batch, ack_wait_s=a.ack_wait, replicas=a.replicas,
                      report_s=a.report_s, reject_path=a.rejects, ack_delay_s=a.ack_delay)
    except ValueError as e:
        print("collect: %s" % e, file=sys.stderr)
        store.close()
        return 2

    async def go():
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, c.stop)
        return await c.run()

    try:
        asyncio.run(go())
    finally:
        store.close()
    return 0
