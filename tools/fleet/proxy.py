"""A TCP forwarder on a loopback port whose connections can be cut at once: the boards'
links dropping (Wi-Fi, a NAT timing out) without touching the broker."""

import socket
import threading


class Proxy:
    """Forwards ``127.0.0.1:<port>`` to ``127.0.0.1:<target>``; ``cut()`` drops every open
    connection (both sides), new ones are accepted as before."""

    def __init__(self, target):
        self.target = target
        self._ls = socket.socket()
        self._ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._ls.bind(("127.0.0.1", 0))
        self._ls.listen(64)
        self.port = self._ls.getsockname()[1]
        self._lock = threading.Lock()
        self._open = set()
        self.cuts = 0
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stop:
            try:
                c, _ = self._ls.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.target), timeout=2)
            except OSError:  # the broker node is down: the board sees a closed link
                c.close()
                continue
            u.settimeout(None)
            for s in (c, u):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._open.update((c, u))
            threading.Thread(target=self._pipe, args=(c, u), daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c), daemon=True).start()

    def _pipe(self, a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        self._close(a, b)

    def _close(self, *socks):
        with self._lock:
            for s in socks:
                self._open.discard(s)
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def cut(self):
        """Drop every connection open now; returns how many sockets were closed."""
        with self._lock:
            socks = list(self._open)
        self._close(*socks)
        self.cuts += 1
        return len(socks)

    def stop(self):
        self._stop = True
        self._ls.close()
        self.cut()
