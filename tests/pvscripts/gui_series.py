"""Run inside the ParaView GUI: paraview --dr --script=gui_series.py (plugin from PV_PLUGIN_PATH).

Opens SRNVTK_TEST_SRN (a series .srn) and steps the animation the way the toolbar's "Next Frame" button does,
recording at each frame the scene's time and the range of every point array the reader gives at that time.
Writes SRNVTK_TEST_OUT/gui_series.json and a screenshot gui_series.png, then ends the GUI with os._exit(0)
whatever happened (the test reads the report).
"""

import json
import os
import traceback

out = os.environ.get("SRNVTK_TEST_OUT", ".")
result = {"ok": False}
try:
    from paraview import simple

    reader = simple.OpenDataFile(os.environ["SRNVTK_TEST_SRN"])
    result["reader"] = reader.GetXMLName()
    view = simple.GetActiveViewOrCreate("RenderView")
    display = simple.Show(reader, view)
    simple.ColorBy(display, ("POINTS", reader.PointData.keys()[0]))
    simple.ResetCamera(view)
    scene = simple.GetAnimationScene()
    scene.UpdateAnimationUsingDataTimeSteps()
    result["animation_times"] = list(scene.TimeKeeper.TimestepValues)
    scene.GoToFirst()
    frames = []
    for _ in result["animation_times"]:
        simple.Render(view)
        ranges = {name: list(reader.PointData[name].GetRange()) for name in reader.PointData.keys()}
        frames.append({"time": scene.TimeKeeper.Time, "ranges": ranges})
        scene.GoToNext()
    result["frames"] = frames
    simple.SaveScreenshot(os.path.join(out, "gui_series.png"), view, ImageResolution=[400, 300])
    result["ok"] = True
except Exception:
    result["error"] = traceback.format_exc()
finally:
    with open(os.path.join(out, "gui_series.json"), "w") as f:
        json.dump(result, f, indent=1)
    os._exit(0)
