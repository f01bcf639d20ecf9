"""lib/utc.py: the wall clock as UTC ms since 1970 on any port, civil dates, ISO text."""

import time

import utc


def test_iso_known_values():
    assert utc.iso(0) == "1970-01-01T00:00:00.000Z"
    assert utc.iso(951782400000) == "2000-02-29T00:00:00.000Z"
    assert utc.iso(1638102896006) == "2021-11-28T12:34:56.006Z"
    assert utc.iso(4102444799999) == "2099-12-31T23:59:59.999Z"
    assert utc.iso(1709164800000 - 1) == "2024-02-28T23:59:59.999Z"
    assert utc.iso(-1) == "1969-12-31T23:59:59.999Z"


def test_iso_matches_gmtime_on_unix_epoch_ports():
    if time.gmtime(0)[0] != 1970:
        return
    for s in range(0, 4102444800, 86400 * 37 + 3601):
        g = time.gmtime(s)
        assert utc.iso(s * 1000 + 5) == "%04d-%02d-%02dT%02d:%02d:%02d.005Z" % g[:6]


def test_civil_dates_round_trip_across_eras():
    assert utc.days_from_civil(1970, 1, 1) == 0
    assert utc.days_from_civil(2000, 3, 1) == 11017 and utc.civil_from_days(11016) == (2000, 2, 29)
    assert utc.civil_from_days(-1) == (1969, 12, 31)
    assert utc.days_from_civil(-1, 12, 31) == -719529  # before year 0: floor division
    for days in range(-800000, 3000000, 997):  # years -220 .. 10183
        y, m, d = utc.civil_from_days(days)
        assert 1 <= m <= 12 and 1 <= d <= 31 and utc.days_from_civil(y, m, d) == days, days


def test_now_is_1970_based_and_set_on_a_host():
    now = utc.now_ms()
    assert now >= utc.MIN_VALID_MS  # the host's clock is set
    assert abs(now // 1000 - (time.time() + (946684800 if time.gmtime(0)[0] == 2000 else 0))) < 5
