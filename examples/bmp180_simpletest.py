# BMP180 on an ESP32: SDA GPIO21, SCL GPIO22, 100 kHz, 4.7k pull-ups to 3.3 V.
# Copy lib/bmp180.py to the board, then paste this into the REPL (Ctrl-E, paste, Ctrl-D).
import time

import bmp180
from machine import I2C, Pin

sensor = bmp180.BMP180(I2C(0, scl=Pin(22), sda=Pin(21), freq=100_000), oss=3)
for _ in range(5):
    sensor.measure()  # ~30 ms at oss 3
    print("%.1f C  %d Pa  %.1f m" % (sensor.temperature(), sensor.pressure(), sensor.altitude()))
    time.sleep(2)
