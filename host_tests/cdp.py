"""Headless Chromium driven over the DevTools protocol on a pipe (CPython only, stdlib only).

Chromium's ``--remote-debugging-pipe`` reads JSON commands on its fd 3 and writes replies
and events on its fd 4, each message ending with a NUL byte: no websocket, no port, no
extra package.  Used by ``test_ingest_dashboard.py`` and ``bench/bench_dashboard.py``::

    with Browser(trust_cert="ingest-data/tls/server.pem") as b:
        page = b.new_page(timezone="Europe/Paris")
        page.navigate("https://127.0.0.1:8099/login")
        page.eval("document.title")
        page.screenshot("shot.png")
        assert not page.errors()          # uncaught exceptions, console.error, failed loads

Chromium comes from Debian's ``chromium`` package (``.ci/run`` installs it); it runs with
the flags known to work on a closed network (no background networking, no component
updates, no sync) in a fresh profile that is deleted afterwards.
"""

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--no-default-browser-check", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-extensions",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
         "--window-size=1280,1400")


def find_chromium():
    env = os.environ.get("CHROMIUM")
    if env:
        return env
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def spki_pin(pem_path):
    """base64(sha256(SubjectPublicKeyInfo)) of the first certificate in a PEM file: what
    ``--ignore-certificate-errors-spki-list`` takes, so Chromium trusts that one server
    certificate (made by the test's own CA) and nothing else."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    with open(pem_path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


class CDPError(Exception):
    pass


class Browser:
    def __init__(self, trust_cert=None, exe=None, log_path=None):
        exe = exe or find_chromium()
        if not exe:
            raise CDPError("no Chromium found (apt-get install chromium)")
        self.profile = tempfile.mkdtemp(prefix="cdp-profile-")
        args = list(FLAGS) + ["--user-data-dir=" + self.profile, "--remote-debugging-pipe"]
        if trust_cert:
            args.append("--ignore-certificate-errors-spki-list=" + spki_pin(trust_cert))
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()
        shell = 'exec "$0" "$@" 3<&%d 4>&%d %d<&- %d>&-' % (
            to_chrome_r, from_chrome_w, to_chrome_r, from_chrome_w)
        self._log = open(log_path or os.devnull, "wb")
        self.proc = subprocess.Popen(["/bin/bash", "-c", shell, exe] + args + ["about:blank"],
                                     pass_fds=(to_chrome_r, from_chrome_w),
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=self._log)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next = 0
        self._lock = threading.Lock()
        self._waiting = {}
        self._replies = {}
        self.events = []  # (session id, method, params), every event received
        self._event_cv = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.send("Target.setDiscoverTargets", {"discover": False}, timeout=30)

    # -- transport ------------------------------------------------------------------------
    def _read(self):
        buf = b""
        while True:
            try:
                data = os.read(self._r, 1 << 16)
            except OSError:
                data = b""
            if not data:
                break
            buf += data
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._lock:
                        self._replies[msg["id"]] = msg
                        ev = self._waiting.pop(msg["id"], None)
                    if ev:
                        ev.set()
                else:
                    with self._event_cv:
                        self.events.append((msg.get("sessionId"), msg.get("method"),
                                            msg.get("params", {})))
                        self._event_cv.notify_all()
        with self._lock:  # Chromium went away: wake everyone up
            for ev in self._waiting.values():
                ev.set()

    def send(self, method, params=None, session=None, timeout=30):
        with self._lock:
            self._next += 1
            mid = self._next
            ev = self._waiting[mid] = threading.Event()
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        if not ev.wait(timeout):
            raise CDPError("%s: no reply within %s s" % (method, timeout))
        with self._lock:
            reply = self._replies.pop(mid, None)
        if reply is None:
            raise CDPError("%s: Chromium exited (code %s)" % (method, self.proc.poll()))
        if "error" in reply:
            raise CDPError("%s: %s" % (method, reply["error"].get("message")))
        return reply.get("result", {})

    def wait_event(self, method, session=None, since=0, timeout=30):
        """The params of the first event ``method`` (of ``session``) at index >= since."""
        end = time.monotonic() + timeout
        with self._event_cv:
            while True:
                for s, m, p in self.events[since:]:
                    if m == method and (session is None or s == session):
                        return p
                left = end - time.monotonic()
                if left <= 0:
                    raise CDPError("no %s within %s s" % (method, timeout))
                self._event_cv.wait(left)

    # -- pages ----------------------------------------------------------------------------
    def new_page(self, timezone=None, width=1280, height=1400):
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target,
                                                      "flatten": True})["sessionId"]
        page = Page(self, session)
        for m in ("Page.enable", "Runtime.enable", "Log.enable", "Network.enable"):
            self.send(m, session=session)
        self.send("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=session)
        if timezone:
            self.send("Emulation.setTimezoneOverride", {"timezoneId": timezone},
                      session=session)
        return page

    def close(self):
        try:
            if self.proc.poll() is None:
                self.send("Browser.close", timeout=10)
                self.proc.wait(10)
        except (CDPError, OSError, subprocess.TimeoutExpired):
            pass
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            for fd in (self._w, self._r):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._log.close()
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Page:
    def __init__(self, browser, session):
        self.b = browser
        self.session = session

    def send(self, method, params=None, timeout=30):
        return self.b.send(method, params, session=self.session, timeout=timeout)

    def navigate(self, url, timeout=30):
        mark = len(self.b.events)
        r = self.send("Page.navigate", {"url": url})
        if r.get("errorText"):
            raise CDPError("navigate %s: %s" % (url, r["errorText"]))
        self.b.wait_event("Page.loadEventFired", self.session, since=mark, timeout=timeout)

    def eval(self, expression, timeout=30):
        """The value of a JS expression (promises awaited); a JS exception raises."""
        r = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                           "returnByValue": True}, timeout=timeout)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise CDPError("JS: %s" % (d.get("exception", {}).get("description") or d["text"]))
        return r["result"].get("value")

    def wait_for(self, expression, timeout=20, poll=0.05):
        """Poll a JS expression until it is truthy; its value."""
        end = time.monotonic() + timeout
        while True:
            v = self.eval(expression)
            if v:
                return v
            if time.monotonic() > end:
                raise CDPError("still false after %s s: %s" % (timeout, expression))
            time.sleep(poll)

    def mouse(self, kind, x, y):
        self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y,
                                               "button": "left" if kind != "mouseMoved"
                                               else "none", "clickCount": 1})

    def screenshot(self, path):
        data = self.send("Page.captureScreenshot", {"format": "png",
                                                    "captureBeyondViewport": True})["data"]
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path

    def errors(self):
        """What went wrong on this page so far: uncaught exceptions and promise rejections,
        console.error/assert calls, and error log entries (a script or request that
        failed to load, a CSP violation)."""
        out = []
        for s, m, p in list(self.b.events):
            if s != self.session:
                continue
            if m == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                out.append("exception: %s" % (d.get("exception", {}).get("description")
                                              or d.get("text")))
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console.%s: %s" % (p["type"], " ".join(
                    str(a.get("value", a.get("description", ""))) for a in p.get("args", []))))
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                e = p["entry"]
                out.append("log: %s %s" % (e.get("text"), e.get("url", "")))
        return out
