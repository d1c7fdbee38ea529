"""pvbatch under mpirun -np 2 (plugin from PV_PLUGIN_PATH): each rank decodes only its piece.

Usage: mpirun -np 2 pvbatch pieces.py FILE.srn OUT_DIR
A Programmable Filter after the reader runs on every rank and saves the piece it received as
OUT_DIR/piece<rank>.npy with OUT_DIR/piece<rank>.json (extent, piece number, number of pieces).
"""

import os
import sys

from paraview import servermanager, simple
from pvcommon import arg, write_json

path, out = arg(1), arg(2)
SAVE_PIECE = """
import json
import numpy as np
from vtkmodules.util.numpy_support import vtk_to_numpy
from vtkmodules.vtkCommonExecutionModel import vtkStreamingDemandDrivenPipeline as SDDP
from vtkmodules.vtkParallelCore import vtkMultiProcessController

image = self.GetInputDataObject(0, 0)
info = self.GetOutputInformation(0)
rank = vtkMultiProcessController.GetGlobalController().GetLocalProcessId()
ex = image.GetExtent()
values = vtk_to_numpy(image.GetPointData().GetScalars())
np.save(OUT + "/piece%d.npy" % rank, values.reshape(ex[5] - ex[4] + 1, ex[3] - ex[2] + 1, ex[1] - ex[0] + 1))
with open(OUT + "/piece%d.json" % rank, "w") as f:
    json.dump({"extent": list(ex), "piece": info.Get(SDDP.UPDATE_PIECE_NUMBER()),
               "pieces": info.Get(SDDP.UPDATE_NUMBER_OF_PIECES()),
               "ranks": vtkMultiProcessController.GetGlobalController().GetNumberOfProcesses()}, f)
self.GetOutputDataObject(0).ShallowCopy(image)
""".replace("OUT", repr(out))

reader = simple.OpenDataFile(path)
saver = simple.ProgrammableFilter(Input=reader, Script=SAVE_PIECE)
saver.UpdatePipeline()
write_json(os.path.join(out, "pieces.json"), {
    "xml_name": reader.GetXMLName(),
    "partitions": servermanager.ActiveConnection.GetNumberOfDataPartitions(),
})
print("pieces.py done")
sys.stdout.flush()
