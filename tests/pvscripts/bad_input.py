"""pvpython: SRNEncoder on bad input fails the update with a clear message, and writes no file.

Usage: pvpython bad_input.py PLUGIN_XML OUT_DIR
Cases: a 2D image (16 x 16 x 1) and a missing array. Each case prints a marker line before and
after its update, so the test can find the error text between them. Ends with 'bad_input.py done'.
"""

import os
import sys

from paraview import servermanager
from paraview.simple import Delete, LoadPlugin, Wavelet
from pvcommon import TINY_ENCODER, arg, write_json

LoadPlugin(arg(1), remote=False, ns=globals())
out = arg(2)
result = {}


def run_case(name, extent, array):
    path = os.path.join(out, name + ".srn")
    wavelet = Wavelet(WholeExtent=extent)
    encoder = SRNEncoder(Input=wavelet, FileName=path, **TINY_ENCODER)  # noqa: F821 (added by LoadPlugin)
    encoder.Scalars = ["POINTS", array]
    print(f"CASE {name} BEGIN", flush=True)
    sys.stderr.flush()
    raised = None
    try:
        encoder.UpdatePipeline()
    except Exception as exc:  # ParaView reports pipeline errors in the output window, not as exceptions
        raised = repr(exc)
    sys.stderr.flush()
    print(f"CASE {name} END", flush=True)
    output = servermanager.Fetch(encoder)
    result[name] = {
        "raised": raised,
        "file_exists": os.path.exists(path),
        "output_points": output.GetNumberOfPoints() if output is not None else None,
        "leftovers": sorted(f for f in os.listdir(out) if f.startswith("." + name)),
    }
    Delete(encoder)
    Delete(wavelet)


run_case("flat", [-7, 8, -7, 8, 0, 0], "RTData")
run_case("missing", [-7, 8, -7, 8, -7, 8], "no_such_array")
write_json(os.path.join(out, "bad.json"), result)
print("bad_input.py done", flush=True)
