# AM2320 on an ESP32: SDA GPIO21, SCL GPIO22, 100 kHz, 4.7k pull-ups to 3.3 V.
# Copy lib/am2320.py to the board, then paste this into the REPL (Ctrl-E, paste, Ctrl-D).
import time

import am2320
from machine import I2C, Pin

sensor = am2320.AM2320(I2C(0, scl=Pin(22), sda=Pin(21), freq=100_000))
for _ in range(6):
    # The chip answers with the conversion it made at the previous read: the first call only
    # primes it (False), and reads must be >= 2 s apart (False sooner, without waiting).
    if sensor.measure():
        print("%.1f C  %.1f %%RH" % (sensor.temperature(), sensor.humidity()))
    time.sleep(2)
