"""What the pvpython examples share: a display to render into, the plugin, field-data values.

Kept beside the examples (not in srnvtk/, which never imports paraview).
"""

import os
import random
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PLUGIN_XML = os.path.join(HERE, "..", "xml", "srnvtk.xml")


def ensure_display() -> None:
    """ParaView from Debian has no offscreen (EGL/OSMesa) rendering: render into Xvfb when there is no X."""
    if os.environ.get("DISPLAY") or os.environ.get("SRNVTK_NO_XVFB"):
        return
    xvfb = shutil.which("xvfb-run")
    if xvfb is None:
        sys.exit("no X display (DISPLAY is unset) and no xvfb-run to make one; install xvfb or set DISPLAY")
    os.environ["SRNVTK_NO_XVFB"] = "1"  # once only
    # -a picks a free display; a random first number avoids racing other xvfb-run -a for :99.
    os.execv(xvfb, [xvfb, "-a", "-n", str(random.randint(100, 999)), *sys.orig_argv])


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
    os._exit(0)
