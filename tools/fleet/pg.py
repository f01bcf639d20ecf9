"""A throw-away PostgreSQL server on a loopback port: ``initdb`` once, then ``postgres``
run as a child of this process (it dies with it), for tests, ``make fleet`` and benches.

PostgreSQL refuses to run as root: as root, the server runs as the ``postgres`` user
(Debian's package makes it) in a folder of its own under /tmp (a test's folder is often
closed to other users).  ``stop()`` is a fast shutdown; ``kill()`` a crash (SIGKILL of the
postmaster: the next start recovers from the WAL); ``restart()`` both ways.

    pg = PgServer().start()
    pg.dsn                 # postgresql://fleet@127.0.0.1:PORT/postgres
    pg.restart(); pg.stop(); pg.cleanup()
"""

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time

from . import proc


def pg_bin(name):
    """A PostgreSQL program: on PATH, else the newest under /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    cands = sorted(glob.glob("/usr/lib/postgresql/*/bin/" + name),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if not cands:
        raise FileNotFoundError("PostgreSQL's %s not found (Debian: apt-get install "
                                "postgresql)" % name)
    return cands[-1]


class PgServer:
    def __init__(self, port=None, user="fleet", fsync=True):
        self.user = user
        self.port = port or proc.free_ports(1)[0]
        self.root = tempfile.mkdtemp(prefix="fleet-pg-")
        self.data = os.path.join(self.root, "data")
        self.sock = os.path.join(self.root, "sock")
        self.log_path = os.path.join(self.root, "postgres.log")
        self.run_as = "postgres" if os.geteuid() == 0 else None
        self.fsync = fsync
        self.p = None
        self.dsn = "postgresql://%s@127.0.0.1:%d/postgres" % (user, self.port)
        os.makedirs(self.sock)
        if self.run_as:
            import pwd

            pw = pwd.getpwnam(self.run_as)
            for d in (self.root, self.sock):
                os.chown(d, pw.pw_uid, pw.pw_gid)
        self._initdb()

    def _run(self, args):
        log = os.path.join(self.root, "initdb.log")
        p = proc.spawn(args, log, user=self.run_as)
        if p.wait(120) != 0:
            with open(log) as f:
                raise RuntimeError("%s failed: %s" % (args[0], f.read()[-2000:]))

    def _initdb(self):
        self._run([pg_bin("initdb"), "-D", self.data, "-U", self.user, "-A", "trust",
                   "-E", "UTF8", "--no-locale", "--no-instructions"])

    def start(self, timeout=60):
        self.p = proc.spawn([pg_bin("postgres"), "-D", self.data, "-p", str(self.port),
                             "-k", self.sock, "-c", "listen_addresses=127.0.0.1",
                             "-c", "fsync=%s" % ("on" if self.fsync else "off"),
                             "-c", "max_connections=200", "-c", "shared_buffers=64MB"],
                            self.log_path, user=self.run_as)
        t_end = time.monotonic() + timeout
        while not self.ready():
            if self.p.poll() is not None:
                raise RuntimeError("postgres exited: %s" % self.tail())
            if time.monotonic() > t_end:
                raise RuntimeError("postgres not ready in %d s: %s" % (timeout, self.tail()))
            time.sleep(0.1)
        return self

    def ready(self):
        r = subprocess.run([pg_bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port),
                            "-d", "postgres", "-U", self.user], capture_output=True)
        return r.returncode == 0

    def tail(self, n=2000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self):
        """Fast shutdown (SIGINT): open transactions roll back, then a clean stop."""
        if self.p is not None and self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(60)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.p = None

    def kill(self):
        """A crash: SIGKILL of the postmaster (its backends stop when they notice)."""
        if self.p is not None and self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        self.p = None
        time.sleep(0.5)  # backends of the dead postmaster let go of the shared memory

    def restart(self, crash=False):
        self.kill() if crash else self.stop()
        return self.start()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
