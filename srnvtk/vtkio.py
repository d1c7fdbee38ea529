"""Conversions between vtkImageData and srnvtk's Volume, using vtkmodules only (VTK 9.2 and later)."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

import numpy as np
from vtkmodules.util import numpy_support
from vtkmodules.vtkCommonDataModel import vtkImageData

from .errors import InputError
from .volume import Geometry, Volume


def geometry_of(image: vtkImageData) -> Geometry:
    return Geometry(tuple(image.GetExtent()), tuple(image.GetOrigin()), tuple(image.GetSpacing()))


def point_array_names(image: vtkImageData) -> list[str]:
    pd = image.GetPointData()
    return [pd.GetArrayName(i) for i in range(pd.GetNumberOfArrays()) if pd.GetArrayName(i)]


def volume_from_image(image: vtkImageData, array_name: str | None = None) -> Volume:
    """The named point-data array (or the active scalars) as a Volume; the data is not copied."""
    if image is None or not image.IsA("vtkImageData"):
        kind = "nothing" if image is None else image.GetClassName()
        raise InputError(f"srnvtk needs vtkImageData as input, got {kind}")
    pd = image.GetPointData()
    array = pd.GetArray(array_name) if array_name else pd.GetScalars()
    if array is None:
        names = ", ".join(point_array_names(image)) or "none"
        wanted = f"'{array_name}'" if array_name else "active scalars"
        raise InputError(f"no point-data array {wanted}; the input has: {names}")
    if array.GetNumberOfComponents() != 1:
        raise InputError(
            f"array '{array.GetName()}' has {array.GetNumberOfComponents()} components; "
            "srnvtk compresses scalar arrays (extract a component first)"
        )
    geometry = geometry_of(image)
    values = numpy_support.vtk_to_numpy(array)
    if values.size != geometry.num_points:
        raise InputError(f"array '{array.GetName()}' has {values.size} values for {geometry.num_points} points")
    return Volume(values.reshape(geometry.shape_zyx), geometry, array.GetName() or "scalars")


def image_from_arrays(geometry: Geometry, arrays: dict[str, np.ndarray], active: str | None = None) -> vtkImageData:
    """A vtkImageData with the given [z, y, x] point arrays; VTK keeps a reference to each buffer."""
    image = vtkImageData()
    fill_image(image, geometry, arrays, active)
    return image


def fill_image(
    image: vtkImageData, geometry: Geometry, arrays: dict[str, np.ndarray], active: str | None = None
) -> None:
    """Give an existing (pipeline output) image its geometry and point arrays."""
    image.SetExtent(*geometry.extent)
    image.SetOrigin(*geometry.origin)
    image.SetSpacing(*geometry.spacing)
    pd = image.GetPointData()
    for name, values in arrays.items():
        flat = np.ascontiguousarray(values).reshape(geometry.num_points, -1)  # [z, y, x] or [z, y, x, components]
        flat = flat.reshape(-1) if flat.shape[1] == 1 else flat
        vtk_array = numpy_support.numpy_to_vtk(flat, deep=False)
        vtk_array._numpy_reference = flat  # keep the buffer alive as long as the VTK array
        vtk_array.SetName(name)
        pd.AddArray(vtk_array)
    if active is not None:
        pd.SetActiveScalars(active)


def read_vti(path: str) -> vtkImageData:
    from vtkmodules.vtkIOXML import vtkXMLImageDataReader

    reader = vtkXMLImageDataReader()
    reader.SetFileName(str(path))
    reader.Update()
    output = reader.GetOutput()
    if output is None or output.GetNumberOfPoints() == 0:
        raise InputError(f"could not read image data from '{path}'")
    return output


def write_vti(image: vtkImageData, path: str | os.PathLike) -> None:
    """Write a zlib-compressed .vti file atomically.

    VTK writes to a temporary name beside the target (OUT.vti.tmp-XXXX), which is renamed once
    complete, so a failed or interrupted write never leaves half a file under the real name.
    """
    from vtkmodules.vtkIOXML import vtkXMLImageDataWriter

    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise OSError(f"cannot write '{path}': folder '{folder}' does not exist")
    if path.is_dir():
        raise OSError(f"cannot write '{path}': it is a folder")
    # A random name rather than mkstemp, so VTK creates the file with the usual permissions (umask).
    tmp = folder / f"{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        writer = vtkXMLImageDataWriter()
        writer.SetFileName(str(tmp))
        writer.SetInputData(image)
        writer.SetCompressorTypeToZLib()
        if writer.Write() != 1:
            raise OSError(f"could not write '{path}'")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
