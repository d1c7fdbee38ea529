"""Run inside the ParaView GUI: paraview --dr --script=gui_check.py (plugin from PV_PLUGIN_PATH).

Reads SRNVTK_TEST_SRN (a .srn file) and SRNVTK_TEST_OUT (a folder) from the environment; writes
gui.json there and a screenshot gui.png, then ends the GUI with os._exit(0) whatever happened
(paraview's own exit code is 0 even when a plugin failed, so the test reads gui.json).
"""

import json
import os
import traceback

out = os.environ.get("SRNVTK_TEST_OUT", ".")
result = {"ok": False}
try:
    from paraview import servermanager, simple

    pxm = servermanager.ProxyManager().SMProxyManager
    result["encoder_prototype"] = pxm.GetPrototypeProxy("filters", "SRNEncoder") is not None
    result["reader_prototype"] = pxm.GetPrototypeProxy("sources", "SRNReader") is not None

    reader = simple.OpenDataFile(os.environ["SRNVTK_TEST_SRN"])
    result["reader"] = reader.GetXMLName()
    view = simple.GetActiveViewOrCreate("RenderView")
    display = simple.Show(reader, view)
    display.SetRepresentationType("Surface")
    simple.ColorBy(display, ("POINTS", reader.PointData.keys()[0]))
    simple.ResetCamera(view)
    simple.Render(view)
    info = reader.GetDataInformation()
    result["points"] = info.GetNumberOfPoints()
    result["arrays"] = reader.PointData.keys()

    # An encoder in the GUI (its properties panel builds the file chooser, drop-down and groups).
    encoder = simple.SRNEncoder(Input=reader, Steps=20, BatchSize=4096, GridResolution=8, GridChannels=4,
                                MLPWidth=16, MLPLayers=2, Threads=1, Device="cpu")
    simple.SetActiveSource(encoder)
    simple.Show(encoder, view)
    simple.Render(view)
    fd = encoder.GetDataInformation().DataInformation.GetFieldDataInformation()
    result["encoder_field"] = [fd.GetArrayInformation(i).GetName() for i in range(fd.GetNumberOfArrays())]
    simple.Hide(encoder, view)
    simple.SaveScreenshot(os.path.join(out, "gui.png"), view, ImageResolution=[400, 300])
    result["ok"] = True
except Exception:
    result["error"] = traceback.format_exc()
finally:
    with open(os.path.join(out, "gui.json"), "w") as f:
        json.dump(result, f, indent=1)
    os._exit(0)
