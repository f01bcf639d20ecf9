"""A "board" for the uplink end-to-end tests: run under the MicroPython unix port.

Usage: micropython uplink_device.py CONFIG.json
Stores ``count`` samples in a TSLog (lib/tslog.py) in ``dir``, then drains them
with the real https/oauth/sender modules against ``url``, and prints one line
``@@DEVICE {json figures}``.  ``poison``: seqs stored with a NaN temperature
(the server rejects them).  ``dns_failures``: the first N look-ups fail.
Sample i (from 1) gets TSLog seqn ``first_seq + i - 1``.
``store_during``: keep storing this many more samples while sending, one per step.
``deadline_s``: give up (figures still printed) after this long.
"""

import gc
import json
import sys
import time

gc.collect()
_M0 = gc.mem_alloc()
import https  # noqa: E402
import oauth  # noqa: E402
import record  # noqa: E402
import sender  # noqa: E402

gc.collect()
CODE_HEAP = gc.mem_alloc() - _M0  # bytecode of the uplink modules (0 when frozen on a board)

try:
    import tslog
except ImportError:  # until lib/tslog.py exists: a file-backed stand-in (same API subset)
    tslog = None


class _FileLog:
    """Minimal TSLog stand-in: one file of fixed-size records plus a cursor file."""

    def __init__(self, folder, record_size):
        self.path = folder + "/log.bin"
        self.cur = folder + "/cursor"
        self.size = record_size
        self.n = 0
        try:
            with open(self.path, "rb") as f:
                self.n = len(f.read()) // record_size
        except OSError:
            pass

    def store_record(self, buf):
        with open(self.path, "ab") as f:
            f.write(buf)
        self.n += 1
        return self.n

    def commit(self):
        pass

    def reader(self, _n):
        return _FileReader(self)


class _FileReader:
    def __init__(self, log):
        self.log = log
        self.f = None
        self.pos = 0
        try:
            with open(log.cur) as f:
                self.pos = int(f.read())
        except (OSError, ValueError):
            pass
        self.seqn = None

    def next(self):
        r = self.next_record()
        return None if r is None else record.decode(r)

    def next_record(self):
        if self.pos >= self.log.n:
            return None
        if self.f is None:
            self.f = open(self.log.path, "rb")
        self.f.seek(self.pos * self.log.size)
        rec = self.f.read(self.log.size)
        self.pos += 1
        self.seqn = self.pos
        return rec

    def commit(self):
        with open(self.log.cur, "w") as f:
            f.write(str(self.pos))


def open_log(folder):
    if tslog is None:
        return _FileLog(folder, record.SIZE)
    return tslog.TSLog(folder, format=record.FORMAT, record_size=record.SIZE,
                       bucket_size=8192, commit_delta=16, nreaders=1)


def store(log, i, poison):
    t = record.utc_ms()
    temp = float("nan") if i in poison else 20.0 + (i % 50) / 10
    buf = record.encode(t, (temp, 55.5, 21.0, 101325.0 + i, 12.5, 1000, 2000), 1,
                        record.FLAG_UTC)
    if hasattr(log, "store_record"):
        q = log.store_record(buf)
    else:
        q = log.store(*record.decode(buf))
    if q is None:  # an API returning nothing: the last seqn from stats()
        q = log.stats()[0]
    return q


def main():
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    folder = cfg["dir"]
    log = open_log(folder)
    poison = set(cfg.get("poison", ()))
    first = cfg.get("first", 1)
    first_seq = None
    for i in range(first, first + cfg.get("count", 0)):
        q = store(log, i, poison)
        if first_seq is None:
            first_seq = q
    log.commit()
    dns_fail = [cfg.get("dns_failures", 0)]

    def resolve(host, port):
        if dns_fail[0] > 0:
            dns_fail[0] -= 1
            raise OSError(-2)  # what MicroPython's getaddrinfo raises for an unknown name
        import socket

        return socket.getaddrinfo("127.0.0.1", port)[0][-1]

    secret = cfg.get("password") or "\0"
    leaks = [0]

    def say(text):  # keeps nothing (a list would grow the heap): checks for secrets only
        if secret in text or "Bearer" in text:
            leaks[0] += 1
        if cfg.get("verbose"):
            print(text)

    client = https.Client(cfg["url"], ca_file=cfg["ca"], timeout_s=cfg.get("timeout_s", 5),
                          resolve=resolve, log=say)
    auth = oauth.OAuth(client, cfg.get("user"), cfg.get("password"),
                       refresh_token=cfg.get("refresh_token"), log=say)
    dead = sender.DeadLetterLog(folder + "/dead.log")
    snd = sender.Sender(log.reader(0), client, auth, cfg.get("stream", "weather-data"),
                        cfg.get("symbol", "esp2462"), batch_max=cfg.get("batch_max", 20),
                        dead_letter=dead, backoff_min_ms=cfg.get("backoff_min_ms", 50),
                        backoff_max_ms=cfg.get("backoff_max_ms", 400), log=say)
    measure = cfg.get("measure_heap", False)
    peak = 0
    gc.collect()
    base = gc.mem_alloc()
    more = cfg.get("store_during", 0)
    nxt = first + cfg.get("count", 0)
    t0 = time.ticks_ms()
    deadline = int(cfg.get("deadline_s", 60) * 1000)
    idle = 0
    while time.ticks_diff(time.ticks_ms(), t0) < deadline:
        if more:
            q = store(log, nxt, poison)
            if first_seq is None:
                first_seq = q
            log.commit()
            nxt += 1
            more -= 1
        snd.step()
        if measure:
            gc.collect()
            a = gc.mem_alloc()
            peak = a if a > peak else peak
        if snd.state == "idle" and not more:
            idle += 1
            if idle > 3:
                break
        else:
            idle = 0
        time.sleep_ms(cfg.get("pace_ms", 0) if snd.state != "backoff" else 20)
    figs = snd.stats()
    figs["send_s"] = time.ticks_diff(time.ticks_ms(), t0) / 1000
    figs["heap_base"] = base
    figs["heap_peak_live"] = peak
    figs["code_heap"] = CODE_HEAP
    figs["first_seq"] = first_seq  # TSLog's seqn of sample 1 (the tests shift by it)
    figs["tslog"] = tslog is not None
    figs["oauth_failed"] = auth.failed.reason if auth.failed else None
    figs["connects"] = client.connects
    figs["grants"] = auth.grants
    figs["secret_in_logs"] = leaks[0] > 0
    print("@@DEVICE " + json.dumps(figs))


main()
