"""pvbatch under mpirun -np 2 (plugin from PV_PLUGIN_PATH): NRRD reader -> SRN Encoder in bricks, one file.

Usage: mpirun -np 2 pvbatch encode_bricks.py IN.nrrd OUT.srn OUT_DIR BRICK_SIZE HALO
Programmable Filters record, on every rank, the extent the reader produced for the encoder (its piece) and the
encoder's output (OUT_DIR/input<rank>.json, output<rank>.npy and output<rank>.json).
"""

import os
import sys

from paraview import simple
from pvcommon import TINY_ENCODER, arg, write_json

path, srn, out, size, halo = arg(1), arg(2), arg(3), int(arg(4)), int(arg(5))
RECORD = """
import json
import numpy as np
from vtkmodules.util.numpy_support import vtk_to_numpy
from vtkmodules.vtkParallelCore import vtkMultiProcessController

image = self.GetInputDataObject(0, 0)
rank = vtkMultiProcessController.GetGlobalController().GetLocalProcessId()
ex = image.GetExtent()
info = {"extent": list(ex), "points": image.GetNumberOfPoints()}
if SAVE:
    fd = image.GetFieldData()
    info["field"] = {fd.GetArrayName(i): fd.GetArray(i).GetTuple1(0) for i in range(fd.GetNumberOfArrays())
                     if fd.GetArray(i) is not None}
    values = vtk_to_numpy(image.GetPointData().GetArray(NAME))
    np.save(OUT + "/output%d.npy" % rank, values.reshape(ex[5] - ex[4] + 1, ex[3] - ex[2] + 1, ex[1] - ex[0] + 1))
with open(OUT + "/" + KIND + "%d.json" % rank, "w") as f:
    json.dump(info, f)
self.GetOutputDataObject(0).ShallowCopy(image)
"""


def recorder(source, kind, save):
    script = RECORD.replace("OUT", repr(out)).replace("KIND", repr(kind)).replace("SAVE", repr(save))
    return simple.ProgrammableFilter(Input=source, Script=script.replace("NAME", repr("ImageFile")))


reader = simple.OpenDataFile(path)
settings = dict(TINY_ENCODER, Steps=30, BrickSize=size, BrickHalo=halo)
settings.pop("Threads")
encoder = simple.SRNEncoder(Input=recorder(reader, "input", False), FileName=srn, **settings)
encoder.Scalars = ["POINTS", "ImageFile"]  # what ParaView's NRRD reader names the array
saved = recorder(encoder, "output", True)
saved.UpdatePipeline()
write_json(os.path.join(out, "run.json"), {"reader": reader.GetXMLName(), "file": os.path.isfile(srn)})
print("encode_bricks.py done")
sys.stdout.flush()
