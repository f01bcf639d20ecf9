"""Child processes that never outlive the process that started them, and free ports."""

import ctypes
import os
import queue
import signal
import socket
import subprocess
import threading

_PR_SET_PDEATHSIG = 1


def _die_with_parent(user=None):
    def pre():
        if user is not None:  # before the death signal: a change of user clears it
            import pwd

            pw = pwd.getpwnam(user)
            os.setgroups([])
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
        try:  # Linux: SIGKILL this child when the thread that started it exits
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    return pre


_jobs = queue.Queue()
_spawner = []
_spawner_lock = threading.Lock()


def _spawn_loop():
    while True:
        fn, box, done = _jobs.get()
        try:
            box.append(fn())
        except BaseException as e:  # noqa: BLE001 - handed back to the caller
            box.append(e)
        done.set()


def spawn(args, log_path, env=None, cwd=None, user=None):
    """Start ``args`` (as ``user``, when given and we are root) with stdout and stderr
    appended to ``log_path``; it is killed when this process ends, even by SIGKILL.

    The death signal follows the *thread* that started a child, so every child is started
    by one thread that lives as long as the process (a fault injected from a short-lived
    thread must not take the restarted server down with that thread)."""
    with _spawner_lock:
        if not _spawner:
            t = threading.Thread(target=_spawn_loop, name="spawner", daemon=True)
            t.start()
            _spawner.append(t)
    box, done = [], threading.Event()
    _jobs.put((lambda: _spawn(args, log_path, env, cwd, user), box, done))
    done.wait()
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


def _spawn(args, log_path, env, cwd, user):
    log = open(log_path, "ab")
    try:
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                preexec_fn=_die_with_parent(user), start_new_session=True)
    finally:
        log.close()


def stop(p, timeout=10):
    """SIGTERM, then SIGKILL after ``timeout`` s; returns the exit code."""
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
    return p.wait()


def free_ports(n):
    """``n`` distinct loopback ports free right now (the OS picks them)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
