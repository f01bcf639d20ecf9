"""``socket`` for the simulated board: the host's sockets, gated by the simulated Wi-Fi link.

While the fake ``network.world`` says the station is offline, the network behaves as it
does on an ESP32 whose Wi-Fi is down: ``getaddrinfo`` fails (lwIP's -202), ``connect``
fails with EHOSTUNREACH, and I/O on an open connection stalls until the socket's timeout
(in simulated time) and then fails with ETIMEDOUT (the peer is unreachable, nothing is
answered).  The sockets are ``io.IOBase`` streams, so ``ssl.wrap_socket`` runs TLS over
them unchanged.

Under the lockstep clock (tools/sim/mp/time.py) a thread blocked in a host socket call
counts as running: the simulated clock stands still until the real server answers, so
the answer takes no simulated time, however long the host takes to produce it.  A server
that does not answer within the socket's timeout *in real time* (at least 2 s) is taken
as silent: the call then also lets the timeout pass in simulated time and fails with
ETIMEDOUT, as on the board.
"""

import io
import sys

_saved = sys.path[:]
sys.path[:] = []  # import the built-in module this file shadows
try:
    import socket as _s
finally:
    sys.path[:] = _saved

import time  # noqa: E402 - the virtual clock (tools/sim/mp/time.py), after the builtin

for _n in dir(_s):
    if not _n.startswith("_") and _n != "socket":
        globals()[_n] = getattr(_s, _n)

_EHOSTUNREACH = 113
_ETIMEDOUT = 116  # lwIP's, as the board reports it
_HOST_TIMEOUTS = (110, 11)  # the unix port's: ETIMEDOUT (read, readline), EAGAIN (recv)
_EAI_FAIL = -202
stats = {"refused_offline": 0, "stalled_offline": 0, "timed_out": 0}


def online():
    net = sys.modules.get("network")
    if net is None:
        try:
            import network as net
        except ImportError:
            return True
    w = getattr(net, "world", None)
    return True if w is None else bool(w.online())


def getaddrinfo(host, port, *args):
    if not online():
        stats["refused_offline"] += 1
        raise OSError(_EAI_FAIL)
    return _s.getaddrinfo(host, port, *args)


class socket(io.IOBase):
    def __init__(self, *args):
        self._s = _s.socket(*args)
        self._timeout = None

    def _stall(self):
        """A dead link: nothing arrives until the timeout, then ETIMEDOUT."""
        stats["stalled_offline"] += 1
        t = self._timeout
        time.sleep(min(t, 60) if t is not None else 60)
        raise OSError(_ETIMEDOUT)

    def settimeout(self, t):
        """``t`` in simulated seconds; the host socket waits as long in real time (at
        least 2 s, so a busy host does not turn into network timeouts)."""
        self._timeout = t
        if t is not None and t > 0:
            t = max(t, 2.0)
        self._s.settimeout(t)

    def _host(self, fn, *args):
        """A host socket call; a real timeout also takes the timeout in simulated time."""
        try:
            return fn(*args)
        except OSError as e:
            if self._timeout and e.args and e.args[0] in _HOST_TIMEOUTS:
                stats["timed_out"] += 1
                time.sleep(self._timeout)
            raise

    def setblocking(self, flag):
        self.settimeout(None if flag else 0)

    def setsockopt(self, *args):
        return self._s.setsockopt(*args)

    def bind(self, addr):
        return self._s.bind(addr)

    def listen(self, *args):
        return self._s.listen(*args)

    def accept(self):
        return self._s.accept()

    def fileno(self):
        return self._s.fileno()

    def connect(self, addr):
        if not online():
            stats["refused_offline"] += 1
            raise OSError(_EHOSTUNREACH)
        return self._host(self._s.connect, addr)

    def _io(self):
        if not online():
            self._stall()

    def send(self, buf):
        self._io()
        return self._host(self._s.send, buf)

    def sendall(self, buf):
        self._io()
        return self._host(self._s.sendall, buf)

    def write(self, buf):
        self._io()
        return self._host(self._s.write, buf)

    def recv(self, n):
        self._io()
        return self._host(self._s.recv, n)

    def read(self, n=-1):
        self._io()
        return self._host(self._s.read, n) if n >= 0 else self._host(self._s.read)

    def readinto(self, buf, n=-1):
        self._io()
        return self._host(self._s.readinto, buf) if n < 0 else \
            self._host(self._s.readinto, buf, n)

    def readline(self, *args):
        self._io()
        return self._host(self._s.readline, *args)

    def ioctl(self, req, arg):
        """The stream protocol, as ssl (mbedTLS) calls it on the wrapped socket."""
        if req == 4:  # MP_STREAM_CLOSE
            self._s.close()
            return 0
        if req == 3:  # MP_STREAM_POLL: what the host socket is ready for
            import select

            p = select.poll()
            p.register(self._s, arg)
            ready = p.poll(0)
            return ready[0][1] & arg if ready else 0
        if req == 10:  # MP_STREAM_GET_FILENO
            return self._s.fileno()
        return 0  # flush and the rest: nothing to do

    def close(self):
        self._s.close()
