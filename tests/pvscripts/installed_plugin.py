"""Run by `srnvtk paraview pvpython installed_plugin.py OUT`: srnvtk as pip installed it, in ParaView.

Writes OUT/installed.json: where srnvtk was imported from, and a tiny SRN Encoder run's PSNR.
"""

import json
import os
import sys

from paraview import simple

import srnvtk

out = sys.argv[1]
source = simple.Wavelet(WholeExtent=[-4, 4, -4, 4, -4, 4])
encoder = simple.SRNEncoder(Input=source, Steps=20, BatchSize=512, GridResolution=4, GridChannels=2, MLPWidth=8,
                            MLPLayers=1, Device="cpu", FileName=os.path.join(out, "installed.srn"))
encoder.UpdatePipeline()
fd = encoder.GetDataInformation().DataInformation.GetFieldDataInformation()
names = [fd.GetArrayInformation(i).GetName() for i in range(fd.GetNumberOfArrays())]
with open(os.path.join(out, "installed.json"), "w") as f:
    json.dump({"srnvtk": srnvtk.__file__, "field": names,
               "plugin_path": os.environ.get("PV_PLUGIN_PATH", "")}, f)
print("installed_plugin.py done")
