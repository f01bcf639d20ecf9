"""A "board" for the uplink end-to-end tests and bench: runs under the MicroPython unix port.

Usage: micropython uplink_device.py CONFIG.json  (or ``-c "import sys; sys.argv[1:] =
[CONFIG]; import uplink_device"`` when loaded as .mpy).  Stores ``count`` samples in a
TSLog (lib/tslog.py) in ``dir``, then drains them with the real https/oauth/sender
modules against ``url``, and prints one line ``@@DEVICE {json figures}``.

Config: ``poison``: sample numbers stored with a null AM2320 reading (a strict server
rejects them inside a 200); ``bad_layout``: sample numbers stored in a layout this
firmware does not know (as a newer firmware writes it: a poisoned queue entry);
``refuse``: sample numbers stored with mem_used 99999 (the poison test's server answers
400 to any batch holding one); ``dns_failures``: the
first N look-ups fail; ``store_during``: keep storing this many more samples while
sending, one per step (sampling goes on during a backlog drain); ``deadline_s``: give
up (figures still printed) after this long; ``measure_heap``: record the largest live
heap after each step; ``oom_max``: give up after this many MemoryErrors while sending
(default 20).
Sample i (from 1) gets TSLog seqn ``first_seq + i - 1``.

Kept small on purpose: under ``-X heapsize=64k`` this script's own bytecode counts too.
"""

import gc
import json
import struct
import sys
import time

gc.collect()
_M0 = gc.mem_alloc()
import https  # noqa: E402
import oauth  # noqa: E402
import record  # noqa: E402
import sender  # noqa: E402
import utc  # noqa: E402  (loaded by record)

gc.collect()
_M1 = gc.mem_alloc()
print("@@CODE", _M1 - _M0)
import tslog  # noqa: E402

gc.collect()
# bytecode etc. of the uplink modules and of TSLog (0 when frozen into a board's firmware)
CODE = (_M1 - _M0, gc.mem_alloc() - _M1)
print("@@CODE", CODE[0], CODE[1])
_M0 = _M1 = None


def store(log, i, cfg):
    if i in cfg["bad_layout"]:
        # As a newer firmware writes it: layout v8, unknown to this one. The queue still
        # reads it back (its frame carries the layout); the sender dead-letters it.
        record.CODEC.add(8, "<qiHB", "tdrF")
        return log.store_record(struct.pack("<qiHB", utc.now_ms(), i, 1, 0xE1))
    flags = record.FLAG_UTC | (record.FLAG_NO_AM if i in cfg["poison"] else 0)  # null
    mem = 99999 if i in cfg["refuse"] else 1000  # the test's server refuses such a batch
    return log.store_record(record.encode(
        utc.now_ms(), (200 + i % 50, 555, 210, 101325 + i, mem, 3000), 1, flags))


def main():
    phases = []

    def mark(name):  # live heap after each phase, also printed at once (a run may fail)
        gc.collect()
        phases.append((name, gc.mem_alloc()))
        print("@@PHASE", name, phases[-1][1])

    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    cfg["poison"] = set(cfg.get("poison", ()))
    cfg["bad_layout"] = set(cfg.get("bad_layout", ()))
    cfg["refuse"] = set(cfg.get("refuse", ()))
    mark("start")
    folder = cfg["dir"]
    log = tslog.TSLog(folder, record_size=record.QUEUE_RECORD_SIZE, codec=record.CODEC,
                      bucket_size=cfg.get("bucket_size", 1024), commit_delta=16, nreaders=1)
    mark("log_open")
    n = cfg.get("count", 0)
    first_seq = None
    for i in range(1, n + 1):
        q = store(log, i, cfg)
        first_seq = first_seq or q
    log.commit()
    mark("stored")
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
    mark("client")
    snd = sender.Sender(log.reader(0), client, auth, cfg.get("stream", "weather-data"),
                        cfg.get("symbol", "esp2462"), batch_max=cfg.get("batch_max", 20),
                        dead_letter=sender.DeadLetterLog(folder + "/dead.log"),
                        backoff_min_ms=cfg.get("backoff_min_ms", 50),
                        backoff_max_ms=cfg.get("backoff_max_ms", 400), log=say)
    mark("sender")
    measure = cfg.get("measure_heap", False)
    peak = 0
    more = cfg.get("store_during", 0)
    nxt = n + 1
    pace = cfg.get("pace_ms", 0)
    t0 = time.ticks_ms()
    deadline = int(cfg.get("deadline_s", 60) * 1000)
    idle = oom = seen = 0
    oom_max = cfg.get("oom_max", 20)
    while time.ticks_diff(time.ticks_ms(), t0) < deadline:
        if more:
            q = store(log, nxt, cfg)
            first_seq = first_seq or q
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
        if snd.retries != seen and (snd.last_error or "").startswith("out of memory"):
            seen = snd.retries  # the heap is too small (or too fragmented) for one batch
            oom += 1
            if oom >= oom_max:
                break
        time.sleep_ms(pace if snd.state != "backoff" else 20)
    figs = snd.stats()
    figs["send_s"] = time.ticks_diff(time.ticks_ms(), t0) / 1000
    figs["heap_peak_live"] = peak
    figs["out_of_memory"] = oom
    figs["code_heap"] = CODE
    figs["phases"] = phases
    figs["heap_total"] = gc.mem_alloc() + gc.mem_free()
    figs["first_seq"] = first_seq  # TSLog's seqn of sample 1 (the tests shift by it)
    figs["oauth_failed"] = auth.failed.reason if auth.failed else None
    figs["connects"] = client.connects
    figs["grants"] = auth.grants
    figs["secret_in_logs"] = leaks[0] > 0
    snd = auth = client = log = None  # the JSON text below needs one contiguous block
    gc.collect()
    print("@@DEVICE " + json.dumps(figs))


main()
