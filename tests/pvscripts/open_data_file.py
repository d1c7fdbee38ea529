"""pvpython with PV_PLUGIN_PATH (no LoadPlugin): OpenDataFile('x.srn') picks the SRN Reader.

Usage: pvpython open_data_file.py FILE.srn OUT_DIR
Writes OUT_DIR/opened.npy and OUT_DIR/open.json.
"""

import os
import sys

from paraview import servermanager, simple
from pvcommon import arg, field_values, point_values, save_array, write_json

path, out = arg(1), arg(2)
reader = simple.OpenDataFile(path)
result = {
    "xml_name": reader.GetXMLName() if reader is not None else None,
    "xml_group": reader.GetXMLGroup() if reader is not None else None,
    "in_simple": hasattr(simple, "SRNReader") and hasattr(simple, "SRNEncoder"),
}
if reader is not None:
    reader.UpdatePipeline()
    image = servermanager.Fetch(reader)
    result["extent"] = list(image.GetExtent())
    result["field"] = field_values(image)
    result["file_name"] = reader.FileName
    save_array(os.path.join(out, "opened.npy"), point_values(image))
write_json(os.path.join(out, "open.json"), result)
print("open_data_file.py done")
sys.stdout.flush()
