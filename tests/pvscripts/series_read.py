"""pvpython (plugin from PV_PLUGIN_PATH): open a series .srn, step the animation through every time, save each
step's arrays; then read with one array unchecked.

Usage: pvpython series_read.py FILE.srn OUT_DIR
Writes OUT_DIR/series.json (the reader's times and arrays, the animation's times, per step the time the output
carries and its arrays) and OUT_DIR/<array>_<step>.npy; OUT_DIR/only_<array>.npy for the unchecked run.
"""

import os
import sys

from paraview import simple
from pvcommon import arg, point_values, save_array, write_json
from vtkmodules.vtkCommonDataModel import vtkDataObject

path, out = arg(1), arg(2)
reader = simple.OpenDataFile(path)
times = list(reader.TimestepValues)
result = {"xml_name": reader.GetXMLName(), "times": times, "arrays": list(reader.PointArrayStatus), "steps": []}

scene = simple.GetAnimationScene()
scene.UpdateAnimationUsingDataTimeSteps()
result["animation_times"] = list(scene.TimeKeeper.TimestepValues)
for step, t in enumerate(result["animation_times"]):
    scene.AnimationTime = t
    reader.UpdatePipeline(scene.TimeKeeper.Time)
    image = reader.GetClientSideObject().GetOutputDataObject(0)  # pvpython's builtin session: the data itself
    names = [image.GetPointData().GetArrayName(i) for i in range(image.GetPointData().GetNumberOfArrays())]
    result["steps"].append({"time": image.GetInformation().Get(vtkDataObject.DATA_TIME_STEP()), "arrays": names,
                            "extent": list(image.GetExtent())})
    for name in names:
        save_array(os.path.join(out, f"{name}_{step}.npy"), point_values(image, name))

keep = result["arrays"][-1]
reader.PointArrayStatus = [keep]
reader.UpdatePipeline(times[-1])
image = reader.GetClientSideObject().GetOutputDataObject(0)
result["only"] = [image.GetPointData().GetArrayName(i) for i in range(image.GetPointData().GetNumberOfArrays())]
save_array(os.path.join(out, f"only_{keep}.npy"), point_values(image, keep))
write_json(os.path.join(out, "series.json"), result)
print("series_read.py done")
sys.stdout.flush()
