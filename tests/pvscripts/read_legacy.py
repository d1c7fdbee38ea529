"""pvpython: the legacy HDF5 sample files read and decode inside ParaView's Python (Debian's h5py and HDF5 1.10),
through srnvtk.fileformat.read_srn (which forks its parsing child from pvpython) and through the SRN Reader
proxy; hostile files are refused with one-line errors in bounded time.

Usage: pvpython read_legacy.py OUT_DIR FILE.srn [FILE.srn ...]
Writes OUT_DIR/read_legacy.json: per file, either decoded statistics or the error, and the seconds taken.
"""

import os
import sys
import time

import numpy as np
from paraview import servermanager, simple
from pvcommon import arg, point_values, write_json

from srnvtk.decode import decode, resampled_geometry
from srnvtk.errors import FileFormatError
from srnvtk.fileformat import read_srn

out = arg(1)
result = {}
for path in sys.argv[2:]:
    name = os.path.basename(path)
    start = time.perf_counter()
    try:
        srn = read_srn(path)
    except FileFormatError as exc:
        result[name] = {"error": str(exc), "seconds": time.perf_counter() - start}
        continue
    source = srn.source
    output = resampled_geometry(source.geometry, (8, 8, 8))
    values = decode(srn, output, device="cpu", dtype="float32").astype(np.float64)
    reader = simple.OpenDataFile(path)
    reader.UpdatePipeline()
    image = servermanager.Fetch(reader)
    result[name] = {
        "seconds": time.perf_counter() - start,
        "version": srn.format_version,
        "decoded": [values.mean(), values.std(), values.min(), values.max()],
        "reader_points": image.GetNumberOfPoints(),
        "reader_mean": float(point_values(image).astype(np.float64).mean()),
    }
    simple.Delete(reader)
write_json(os.path.join(out, "read_legacy.json"), result)
print("read_legacy.py done")
sys.stdout.flush()
