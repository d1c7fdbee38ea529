"""Helpers shared by the scripts that tests/test_paraview.py runs in pvpython and pvbatch.

Runs on ParaView's own Python and VTK: no pytest, no pip VTK. Results go to JSON and .npy files
that the test (in the pip-VTK world) reads back.
"""

import json
import sys

import numpy as np
from vtkmodules.util.numpy_support import vtk_to_numpy

# Small and fast: a few seconds on two shared cores.
TINY_ENCODER = {
    "Steps": 40,
    "BatchSize": 4096,
    "GridResolution": 8,
    "GridChannels": 4,
    "MLPWidth": 16,
    "MLPLayers": 2,
    "Threads": 1,
    "Device": "cpu",
}
WAVELET_EXTENT = [-7, 8, -7, 8, -7, 8]  # 16^3 points, negative indices on purpose


def point_values(image, name=None):
    """A point array (the active scalars when name is None) as [z, y, x]."""
    pd = image.GetPointData()
    array = pd.GetArray(name) if name else pd.GetScalars()
    ex = image.GetExtent()
    shape = (ex[5] - ex[4] + 1, ex[3] - ex[2] + 1, ex[1] - ex[0] + 1)
    return vtk_to_numpy(array).reshape(shape).copy()


def field_values(image):
    """Field data as {name: first value}; numbers as floats, strings as str."""
    fd = image.GetFieldData()
    out = {}
    for i in range(fd.GetNumberOfArrays()):
        array = fd.GetAbstractArray(i)
        if array.IsA("vtkStringArray"):
            out[array.GetName()] = array.GetValue(0)
        else:
            out[array.GetName()] = float(array.GetTuple1(0))
    return out


def write_json(path, data):
    with open(path, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)


def arg(index, default=None):
    return sys.argv[index] if len(sys.argv) > index else default


def save_array(path, values):
    np.save(path, np.ascontiguousarray(values))
