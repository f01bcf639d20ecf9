"""tools.fleet: the fleet path on one machine (docs/fleet.md).

* ``cluster.NatsCluster``: N ``nats-server`` nodes (JetStream clustered, the MQTT listener
  with TLS) on loopback ports, each with its own store folder; kill and restart nodes.
* ``pg.PgServer``: a throw-away PostgreSQL server (``initdb`` + ``pg_ctl``) on a loopback
  port.
* ``python -m tools.fleet`` (``make fleet``): the cluster, collectors and N simulated
  boards, with a summary that accounts for every record.
"""
