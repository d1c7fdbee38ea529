"""What the pvpython examples share: a display to render into, the plugin, field-data values.

Kept beside the examples (not in srnvtk/, which never imports paraview).
"""

import atexit
import ctypes
import ctypes.util
import os
import random
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PLUGIN_XML = os.path.join(HERE, "..", "xml", "srnvtk.xml")
_OWN_SERVERS: list[subprocess.Popen] = []  # the Xvfb ensure_display started, ended by this process's exit
_HELD_CONNECTIONS: list[int] = []  # X connections kept open to our own server (see _hold_connection)


def ensure_display() -> None:
    """ParaView from Debian has no offscreen (EGL/OSMesa) rendering: render into an Xvfb of our own when there is
    no X. Xvfb says its display (-displayfd) once it accepts clients, so a busy machine cannot make the first
    render race its start-up (xvfb-run only waits a fixed 3 s); the display number is drawn at random (Xvfb's own
    choice, the lowest free one, trips over sockets that killed servers left behind). -dumbSched: started from
    pvpython, an Xvfb that had no client for ~20 s refused every later one ("bad X server connection" at the first
    render after a long training); with the dumb scheduler it does not (reproduced and checked on Debian 12's
    Xvfb 21.1, cause inside Xvfb not found). It ends with this process."""
    if os.environ.get("DISPLAY"):
        return
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        sys.exit("no X display (DISPLAY is unset) and no Xvfb to make one; install xvfb or set DISPLAY")
    for number in random.sample(range(100, 1000), 5):  # a number in use: Xvfb exits, try another
        read_end, write_end = os.pipe()
        server = subprocess.Popen([xvfb, f":{number}", "-displayfd", str(write_end), "-screen", "0", "1600x1200x24",
                                   "-nolisten", "tcp", "-dumbSched"], pass_fds=(write_end,), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        os.close(write_end)
        with os.fdopen(read_end) as announced:
            ready = announced.readline().strip() == str(number)
        if ready and _hold_connection(number):
            _OWN_SERVERS.append(server)
            atexit.register(_end_own_servers)
            os.environ["DISPLAY"] = f":{number}"
            return
        server.kill()
        server.wait()
    sys.exit("Xvfb did not start (five display numbers tried)")


def _hold_connection(number: int) -> bool:
    """Open one X connection to the new server and keep it for the life of this process: the server then never
    sits without a client (under load, the examples' first render came 30-50 s after the start and was refused
    now and then, with or without -dumbSched); False when the server does not accept it."""
    library = ctypes.util.find_library("X11")
    if library is None:
        return True  # nothing to hold it with; ParaView connects on its own
    xlib = ctypes.CDLL(library)
    xlib.XOpenDisplay.restype = ctypes.c_void_p
    xlib.XOpenDisplay.argtypes = [ctypes.c_char_p]
    connection = xlib.XOpenDisplay(f":{number}".encode())
    if not connection:
        return False
    _HELD_CONNECTIONS.append(connection)
    return True


def _end_own_servers() -> None:
    for server in _OWN_SERVERS:
        server.terminate()


def load_plugin(simple) -> None:
    """Load xml/srnvtk.xml unless PV_PLUGIN_PATH did already; the proxies land in paraview.simple."""
    try:
        import srnvtk  # noqa: F401 (the plugin's classes live there)
    except ImportError:
        sys.exit("srnvtk is not importable by ParaView's Python: run through plugin/srnvtk-paraview "
                 "or source plugin/srnvtk-env.sh first")
    if not hasattr(simple, "SRNEncoder"):
        simple.LoadPlugin(os.path.abspath(PLUGIN_XML), remote=False)
        if simple.servermanager.ActiveConnection.IsRemote():
            simple.LoadPlugin(os.path.abspath(PLUGIN_XML), remote=True)


def field_value(proxy, name):
    """First value of a field-data array of a proxy's output, or None."""
    if name not in proxy.FieldData.keys():
        return None
    return proxy.FieldData[name].GetRange(0)[0]


def run_and_exit(main) -> None:
    """Run main(), then leave without ParaView's teardown.

    ParaView 5.11 under Xvfb sometimes aborts (SIGABRT, or an X error with exit code 1) while tearing down
    its render windows at exit, after all results are written. An exception in main() still ends the
    program the normal way, with its traceback and a non-zero code.
    """
    main()
    sys.stdout.flush()
    sys.stderr.flush()
    _end_own_servers()  # os._exit skips atexit
    os._exit(0)
