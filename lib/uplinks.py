"""The board's uplinks, set up once at boot after the other parts (``build()``, via
``app.boot()``, which drops this module from the heap again afterwards).

TimeBase over HTTPS (``tb_host``: reader 0, and its health records), the fleet's MQTT
uplink (``mqtt_host``: reader 2), the SD archive (``sd_mount``: reader 1), then WebREPL;
each reads the queue through an ``uploader.LockedReader`` (the sampler writes it).  An
uplink that cannot be set up (a missing CA file, a bad setting) is logged and left out,
its modules dropped again: sampling goes on.  As in ``builder``, nothing set up here
keeps a function of this module.
"""

import gc
import sys

import uploader


def build(a, log=print):
    """Set up the uplinks ``a.cfg`` asks for on ``app.App`` ``a`` (into ``a.up``)."""
    cfg = a.cfg
    boot16 = a.up.boot16
    _timebase(a, cfg, boot16, log)
    _mqtt(a, cfg, boot16, log)
    _archive(a, cfg, boot16, log)
    if cfg["webrepl_password"]:
        try:
            import webrepl
            webrepl.start(password=cfg["webrepl_password"])
        except Exception as e:  # noqa: BLE001 - the loop runs without WebREPL
            log("app: WebREPL not started: %s" % e)


def _timebase(a, cfg, boot16, log):
    """The TimeBase uplink (reader 0) and its health records."""
    host = cfg["tb_host"]
    if not host:
        log("app: tb_host not set: samples are kept on flash, nothing is uploaded")
        return
    up = a.up
    try:
        import health
        import https
        import oauth
        import sender
        client = https.Client(host, ca_file=cfg["tb_ca_file"],
                              insecure=cfg["tb_insecure"],
                              timeout_s=cfg["timeout_s"], log=log)
        auth = oauth.OAuth(client, cfg["tb_user"] or None, cfg["tb_pass"] or None,
                           refresh_token=cfg["tb_refresh_token"] or None,
                           client_id=cfg["tb_client_id"],
                           client_secret=cfg["tb_client_secret"], log=log)
        stream = cfg["tb_stream"]
        mode = cfg["write_mode"]
        up.sender = sender.Sender(
            uploader.LockedReader(a.queue.reader(0), a.lock), client, auth, stream, a.symbol,
            write_mode=mode, batch_max=cfg["batch_max"], batch_bytes=cfg["batch_bytes"],
            dead_letter=sender.DeadLetterLog("data/dead.log"),
            backoff_min_ms=cfg["backoff_min_ms"], backoff_max_ms=cfg["backoff_max_ms"],
            boot=boot16, cursor_commit_ms=int(cfg["cursor_commit_s"] * 1000), log=log)
        up.health = health.Health(client, auth, stream, a.symbol,
                                  int(cfg["health_interval_s"] * 1000), a.stats, a.clock,
                                  write_mode=mode, log=log)
    except Exception as e:  # noqa: BLE001 - e.g. CA file missing: keep logging
        up.sender = up.health = None
        for name in ("health", "sender", "oauth", "https"):  # their code: sampling's heap
            sys.modules.pop(name, None)
        gc.collect()
        log("app: uploader disabled: %s" % e)


def _mqtt(a, cfg, boot16, log):
    """The fleet uplink (lib/mqtt_uplink.py, reader 2), loaded only when ``mqtt_host`` is
    set; health records go out on it too."""
    url = cfg["mqtt_host"]
    if not url:
        return
    try:
        import mqtt_uplink
        q = a.queue
        idle = [q.reader(n) for n, key in ((0, "tb_host"), (1, "sd_mount")) if not cfg[key]]
        a.up.mqtt = mqtt_uplink.MqttUplink(
            uploader.LockedReader(q.reader(2), a.lock, idle), a.symbol, url,
            ca_file=cfg["mqtt_ca_file"], insecure=cfg["mqtt_insecure"],
            user=cfg["mqtt_user"] or None, password=cfg["mqtt_pass"] or None,
            topic=cfg["mqtt_topic"], batch_bytes=cfg["mqtt_batch_bytes"],
            timeout_s=cfg["timeout_s"], backoff_min_ms=cfg["backoff_min_ms"],
            backoff_max_ms=cfg["backoff_max_ms"], boot=boot16,
            health_ms=int(cfg["health_interval_s"] * 1000), health=a.health_message, log=log)
    except Exception as e:  # noqa: BLE001 - e.g. CA file missing: keep logging
        a.up.mqtt = None
        sys.modules.pop("mqtt_uplink", None)
        log("app: MQTT uplink disabled: %s" % e)


def _archive(a, cfg, boot16, log):
    mount = cfg["sd_mount"]
    if not mount:
        return
    try:
        import archive
        a.up.archive = archive.Archive(uploader.LockedReader(a.queue.reader(1), a.lock),
                                       mount, card=archive.sd_card, boot=boot16, log=log)
    except Exception as e:  # noqa: BLE001 - sampling and uploads go on without a card
        log("app: SD archive disabled: %s" % e)
