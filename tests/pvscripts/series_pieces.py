"""pvbatch under mpirun -np 2: the SRN Reader on a series file, every time step, each rank its piece.

Usage: mpirun -np 2 pvbatch series_pieces.py FILE.srn OUT_DIR
A Programmable Filter after the reader saves, on every rank and at every time, the piece it received:
OUT_DIR/<array>_<step>_rank<rank>.npy and OUT_DIR/piece_<step>_rank<rank>.json (extent, time, arrays).
"""

import sys

from paraview import simple
from pvcommon import arg

path, out = arg(1), arg(2)
SAVE_PIECE = """
import json
import numpy as np
from vtkmodules.util.numpy_support import vtk_to_numpy
from vtkmodules.vtkCommonDataModel import vtkDataObject
from vtkmodules.vtkParallelCore import vtkMultiProcessController

image = self.GetInputDataObject(0, 0)
rank = vtkMultiProcessController.GetGlobalController().GetLocalProcessId()
time = image.GetInformation().Get(vtkDataObject.DATA_TIME_STEP())
step = TIMES.index(time)
ex = image.GetExtent()
pd = image.GetPointData()
names = [pd.GetArrayName(i) for i in range(pd.GetNumberOfArrays())]
for name in names:
    values = vtk_to_numpy(pd.GetArray(name))
    np.save(OUT + "/%s_%d_rank%d.npy" % (name, step, rank),
            values.reshape(ex[5] - ex[4] + 1, ex[3] - ex[2] + 1, ex[1] - ex[0] + 1, -1))
with open(OUT + "/piece_%d_rank%d.json" % (step, rank), "w") as f:
    json.dump({"extent": list(ex), "time": time, "arrays": names,
               "ranks": vtkMultiProcessController.GetGlobalController().GetNumberOfProcesses()}, f)
self.GetOutputDataObject(0).ShallowCopy(image)
"""

reader = simple.OpenDataFile(path)
times = list(reader.TimestepValues)
saver = simple.ProgrammableFilter(Input=reader, Script=SAVE_PIECE.replace("OUT", repr(out)).replace("TIMES",
                                                                                                       repr(times)))
for t in times:
    saver.UpdatePipeline(t)
print("series_pieces.py done")
sys.stdout.flush()
