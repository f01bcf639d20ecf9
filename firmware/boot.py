"""Board set-up, run once at power-on or reset (the work is in lib/app.py).

``app.boot()``: settings (config.json over lib/config.py's defaults), boot counter and
reset cause, I2C bus at ``i2c_freq`` and both sensors (a missing one is logged and retried
by the sampler), the Wi-Fi LED (PWM), the Wi-Fi monitor thread, the uploader, and WebREPL
when ``webrepl_password`` is set.  Nothing here may stop the board from reaching the REPL:
a failed set-up is printed and main.py tries it again.

At the REPL (USB or WebREPL): ``show_config()``, ``set_config(key, value)``,
``write_wifi(ssid, password)`` (saves, then reboots).
"""

import gc

try:
    import app

    app.boot()
except Exception as e:  # noqa: BLE001 - keep the REPL reachable whatever happened
    import sys

    print("boot.py: set-up failed:")
    sys.print_exception(e)  # type: ignore[attr-defined]



# The REPL helpers import lib/settings.py when called: kept loaded, its code would hold
# ~10 KB of the heap the uploader needs (app drops it after boot for the same reason).
def show_config():
    import settings

    return settings.show_config()


def set_config(key, value):
    import settings

    return settings.set_config(key, value)


def write_wifi(ssid, password):
    import app
    import settings

    b = app.board  # the running firmware: its reset commits the queue, records why
    return settings.write_wifi(ssid, password, guard=b.guard if b else None)


gc.collect()
