"""Clock: monotonic ms across the ticks wrap, NTP retry/backoff/resync (both interpreters)."""

import clock
import network
import ntptime
import utc
from sensor_clock import VirtualClock


class FlakyNtp:
    """An ``ntptime`` stand-in that fails ``fail`` times (OSError ETIMEDOUT-like), then works."""

    def __init__(self, fail=0):
        self.host = None
        self.fail = fail
        self.calls = 0

    def settime(self):
        self.calls += 1
        if self.fail:
            self.fail -= 1
            raise OSError(116)


def _clock(ntp, **kw):
    clk = VirtualClock().install(clock)  # starts 3 s before the ticks wrap
    lines = []
    c = clock.Clock(ntp, log=lines.append, **kw)
    return clk, c, lines


def test_mono_ms_is_exact_across_the_ticks_wrap_and_long_gaps():
    clk, c, _ = _clock(FlakyNtp())
    try:
        assert c.mono_ms() == 0
        total = 0
        for step in (999, 1000, 1001, 1500, 2, 60_000, 123_456):  # crosses the wrap early
            clk.advance_ms(step)
            total += step
            assert c.mono_ms() == total
        assert clk.ticks_ms() < 1 << 20  # the counter did wrap
        for _ in range(6):  # ~19 days in 3-day gaps: several wraps of the 2**30 counter
            clk.advance_ms(1 << 28)
            total += 1 << 28
            assert c.mono_ms() == total
        assert c.mono_ms() == c.mono_ms()  # no time passed, no change
    finally:
        clk.uninstall()


def test_ntp_fails_n_times_then_succeeds_with_capped_jittered_backoff():
    ntp = FlakyNtp(fail=5)
    clk, c, lines = _clock(ntp, host="time.example", retry_min_s=5, retry_max_s=60)
    got = []
    c.on_set = got.append
    try:
        assert not c.is_set and c.utc_ms() is None and c.boot_epoch_ms is None
        tries = []
        for _ in range(1000):
            n = ntp.calls
            ok = c.step(True)
            if ntp.calls != n:
                tries.append(c.mono_ms())
            if ok:
                break
            clk.advance_ms(1000)
        assert ntp.calls == 6 and c.is_set and ntp.host == "time.example"
        gaps = [(b - a) / 1000 for a, b in zip(tries, tries[1:])]
        for k, gap in enumerate(gaps):  # backoff k+1: 5, 10, 20, 40, 60 (capped) s
            full = min(60, 5 << k)
            assert full / 2 <= gap <= full + 1, (k, gap, gaps)
        assert c.failures == 0 and c.syncs == 1 and c.attempts == 6
        assert sum(1 for line in lines if "failed" in line) == 5
        # boot_epoch_ms + mono_ms() is the wall clock now.
        assert abs(c.boot_epoch_ms + c.mono_ms() - utc.now_ms()) < 2000
        assert got == [c.boot_epoch_ms]
        assert abs(c.utc_ms() - utc.now_ms()) < 1000
    finally:
        clk.uninstall()


def test_backoff_never_exceeds_the_cap_and_never_spins():
    ntp = FlakyNtp(fail=10 ** 6)
    clk, c, _ = _clock(ntp, retry_min_s=5, retry_max_s=600)
    try:
        for _ in range(24 * 3600):  # a day of one step per second
            c.step(True)
            clk.advance_ms(1000)
        # 5+10+...+320 = 635 s, then one per 300..600 s: about 150-290 in a day.
        assert 100 < ntp.calls < 320, ntp.calls
        assert 0 < c._next_ms - c.mono_ms() <= 600_000
    finally:
        clk.uninstall()


def test_offline_makes_no_attempt_and_link_return_retries_at_once():
    ntp = FlakyNtp(fail=3)
    clk, c, _ = _clock(ntp, retry_min_s=100, retry_max_s=1000)
    try:
        for _ in range(50):
            assert not c.step(False)
            clk.advance_ms(1000)
        assert ntp.calls == 0
        c.step(True)
        assert ntp.calls == 1  # first time online: at once
        clk.advance_ms(5000)
        c.step(True)
        assert ntp.calls == 1  # backing off (>= 50 s)
        c.step(False)
        clk.advance_ms(1000)
        c.step(True)
        assert ntp.calls == 2  # the link came back: try now
    finally:
        clk.uninstall()


def test_periodic_resync_keeps_boot_epoch_and_calls_on_set_once():
    ntp = FlakyNtp()
    clk, c, lines = _clock(ntp, resync_s=3600, retry_min_s=5, retry_max_s=60)
    got = []
    c.on_set = got.append
    try:
        assert c.step(True)
        epoch = c.boot_epoch_ms
        clk.advance_ms(3599_000)
        assert not c.step(True) and ntp.calls == 1
        clk.advance_ms(1000)
        ntp.fail = 2  # the resync fails twice: backoff, still set
        assert not c.step(True) and c.is_set and c.utc_ms() is not None
        for _ in range(100):
            clk.advance_ms(1000)
            if c.step(True):
                break
        assert ntp.calls == 4 and c.syncs == 2
        assert c.boot_epoch_ms == epoch and got == [epoch]
        assert any("resync" in line for line in lines)
        assert c._next_ms - c.mono_ms() > 3500_000
    finally:
        clk.uninstall()


def test_with_fake_ntptime_over_the_fake_wifi():
    clk = VirtualClock().install(clock, network)
    network.world.reset()
    try:
        w = network.world
        w.add_ap("home", "secret123")
        w.ntp_fail_next = 3
        sta = network.WLAN(network.STA_IF)
        sta.active(True)
        sta.connect("home", "secret123")
        c = clock.Clock(ntptime, host="pool.ntp.org", retry_min_s=2, retry_max_s=8,
                        log=lambda s: None)
        for _ in range(120):
            c.step(w.online())
            if c.is_set:
                break
            clk.advance_ms(1000)
        assert c.is_set and w.ntp_calls == 4
        assert abs(c.utc_ms() - utc.now_ms()) < 1000
        assert c.utc_ms() >= utc.MIN_VALID_MS
    finally:
        clk.uninstall()
        network.world.reset()


def test_epochs_kept_across_boots_and_estimated_for_boots_without_a_clock():
    import support

    path = support.tmpdir("epochs") + "/epochs.json"
    e = clock.Epochs(path, interval_ms=2000, log=lambda m: None)
    e.learned(3, 1700000000000)  # boot 3 had NTP
    # boot 4 never learned the time: its last record was 50 s after its start; boot 5
    # neither (its last at 20 s); boot 6 learns it
    e.ended(4, 50000)
    e = clock.Epochs(path, interval_ms=2000)  # (a reboot between)
    e.ended(5, 20000)
    new = clock.Epochs(path, interval_ms=2000).learned(6, 1700000900000)
    assert new == [6, 5, 4]
    e = clock.Epochs(path, interval_ms=2000)
    assert e.epochs[6] == 1700000900000 and 6 not in e.estimated
    assert e.epochs[5] == 1700000900000 - 20000 - 2000 and 5 in e.estimated
    assert e.epochs[4] == e.epochs[5] - 50000 - 2000 and 4 in e.estimated
    assert e.epochs[3] == 1700000000000 and 3 not in e.estimated
    # the order holds: boot 4's last record before boot 5's first, 5's last before 6's
    assert e.epochs[4] + 50000 < e.epochs[5] and e.epochs[5] + 20000 < e.epochs[6]


def test_an_estimate_skips_boots_that_stored_nothing():
    import support

    path = support.tmpdir("epochs") + "/epochs.json"
    e = clock.Epochs(path, interval_ms=2000, log=lambda m: None)
    e.ended(7, 30000)  # boot 7 never learned the time; boot 8 stored nothing; 9 learns it
    assert e.learned(9, 1700000000000) == [9, 7]
    assert e.epochs[7] == 1700000000000 - 30000 - 2000 and 7 in e.estimated
    e.ended(65535, 4000)  # the 16-bit boot counter wraps: 65535 is before 1
    assert e.learned(1, 1700000500000) == [1, 65535]
    assert e.epochs[65535] == 1700000500000 - 4000 - 2000


def test_epochs_file_damaged_or_missing():
    import support

    d = support.tmpdir("epochs")
    logs = []
    e = clock.Epochs(d + "/none.json", log=logs.append)
    assert e.epochs == {} and logs == []
    with open(d + "/bad.json", "w") as f:
        f.write("{not json")
    e = clock.Epochs(d + "/bad.json", log=logs.append)
    assert e.epochs == {} and any("unreadable" in m for m in logs)
    e.learned(1, 5)
    assert clock.Epochs(d + "/bad.json").epochs == {1: 5}
    e = clock.Epochs(d + "/bad.json", keep=3)
    for b in range(2, 9):
        e.learned(b, b * 1000)
    assert sorted(clock.Epochs(d + "/bad.json").epochs) == [6, 7, 8]
