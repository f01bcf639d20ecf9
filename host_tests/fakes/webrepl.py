"""Fake ``webrepl``: records ``start``/``stop`` calls instead of opening a server.

Like the real module, ``start()`` without a password falls back to
``webrepl_cfg.PASS`` and, without that file, prints that WebREPL is not
configured and does not start.  ``calls`` holds ``("start", port, has_password)``
and ``("stop",)`` tuples (never the password itself); ``running`` tells the state.
"""

calls = []
running = False
started_port = None
_password = [None]


def start(port=8266, password=None, accept_handler=None):
    global running, started_port
    stop()
    if password is None:
        try:
            import webrepl_cfg

            password = webrepl_cfg.PASS
        except ImportError:
            print("WebREPL is not configured, run 'import webrepl_setup'")
            calls.append(("start", port, False))
            return
    _password[0] = password
    started_port = port
    running = True
    calls.append(("start", port, True))
    print("WebREPL server started on http://192.168.4.1:%d/" % port)


def start_foreground(port=8266, password=None):
    start(port, password)


def stop():
    global running
    if running:
        calls.append(("stop",))
    running = False


def check_password(password):
    """Test helper: would a client with ``password`` be let in?"""
    return running and password == _password[0]


def reset():
    global running
    del calls[:]
    running = False
    _password[0] = None
