"""Run inside the ParaView GUI: show an SRN Encoder's properties panel, then report that it is shown.

paraview --dr --script=gui_panel.py, with SRNVTK_TEST_OUT (a folder) in the environment. Unlike
gui_check.py it leaves the GUI running: the test takes a screenshot of the display, then ends it.
"""

import json
import os
import traceback

out = os.environ.get("SRNVTK_TEST_OUT", ".")
result = {"ok": False}
try:
    from paraview import simple

    source = simple.Wavelet()
    encoder = simple.SRNEncoder(Input=source)
    simple.SetActiveSource(encoder)  # the Properties panel shows the encoder's (generated) properties
    result["ok"] = True
except Exception:
    result["error"] = traceback.format_exc()
with open(os.path.join(out, "panel.json"), "w") as f:
    json.dump(result, f)
