"""pvpython (plugin from PV_PLUGIN_PATH): a .pvd series -> SRN Encoder over all time steps and two arrays.

Usage: pvpython series_encode.py IN.pvd OUT.srn
Writes OUT.srn and OUT.srn.json (the encoder's field data, the input's time steps).
"""

import sys

from paraview import servermanager, simple
from pvcommon import TINY_ENCODER, arg, field_values, write_json

pvd, out = arg(1), arg(2)
series = simple.OpenDataFile(pvd)
encoder = simple.SRNEncoder(Input=series, FileName=out, **TINY_ENCODER)
encoder.PointArrays = ["density", "temperature"]
encoder.AllTimeSteps = 1
encoder.UpdatePipeline()
image = servermanager.Fetch(encoder)
write_json(out + ".json", {"field": field_values(image), "times": list(series.TimestepValues),
                           "arrays": [image.GetPointData().GetArrayName(i)
                                      for i in range(image.GetPointData().GetNumberOfArrays())]})
print("series_encode.py done")
sys.stdout.flush()
