"""pvpython: Wavelet (16^3) -> SRNEncoder (writes a .srn) -> SRNReader on that file.

Usage: pvpython encode_read.py PLUGIN_XML OUT_DIR
Writes OUT_DIR/wavelet.srn, the arrays original/reconstruction/error/read/strided/sub .npy and
result.json (field data, extents, the reader's proxy name).
"""

import os
import sys

from paraview import servermanager
from paraview.simple import LoadPlugin, Wavelet
from pvcommon import TINY_ENCODER, WAVELET_EXTENT, arg, field_values, point_values, save_array, write_json

LoadPlugin(arg(1), remote=False, ns=globals())
out = arg(2)
srn = os.path.join(out, "wavelet.srn")

wavelet = Wavelet(WholeExtent=WAVELET_EXTENT)
encoder = SRNEncoder(Input=wavelet, FileName=srn, **TINY_ENCODER)  # noqa: F821 (added by LoadPlugin)
encoder.Scalars = ["POINTS", "RTData"]
encoder.UpdatePipeline()
if not os.path.isfile(srn):
    sys.exit("encode_read.py: the SRN Encoder wrote no file; its error is printed above")
encoded = servermanager.Fetch(encoder)
original = servermanager.Fetch(wavelet)

reader = SRNReader(FileName=srn)  # noqa: F821
reader.UpdatePipeline()
read = servermanager.Fetch(reader)

# The reader's other modes, through the XML properties: every 2nd point, and a sub-extent.
strided = SRNReader(FileName=srn, Stride=[2, 2, 2])  # noqa: F821
strided.UpdatePipeline()
sub = SRNReader(FileName=srn, SubExtent=[-3, 4, -7, 8, 0, 5])  # noqa: F821
sub.UpdatePipeline()
strided_image = servermanager.Fetch(strided)
sub_image = servermanager.Fetch(sub)

save_array(os.path.join(out, "original.npy"), point_values(original, "RTData"))
save_array(os.path.join(out, "reconstruction.npy"), point_values(encoded, "RTData"))
save_array(os.path.join(out, "error.npy"), point_values(encoded, "abs_error"))
save_array(os.path.join(out, "read.npy"), point_values(read))
save_array(os.path.join(out, "strided.npy"), point_values(strided_image))
save_array(os.path.join(out, "sub.npy"), point_values(sub_image))
pd = encoded.GetPointData()
# Which CPU evaluation ParaView's Python got: the fused C kernel (srnvtk.native) or the torch path.
from srnvtk.fileformat import read_srn  # noqa: E402
from srnvtk.lattice import LatticeFVSRN  # noqa: E402
from srnvtk.native import find_compiler  # noqa: E402

write_json(os.path.join(out, "result.json"), {
    "encoder_field": field_values(encoded),
    "reader_field": field_values(read),
    "encoder_extent": list(encoded.GetExtent()),
    "reader_extent": list(read.GetExtent()),
    "reader_array": read.GetPointData().GetScalars().GetName(),
    "reader_spacing": list(read.GetSpacing()),
    "strided_extent": list(strided_image.GetExtent()),
    "strided_spacing": list(strided_image.GetSpacing()),
    "sub_extent": list(sub_image.GetExtent()),
    "encoder_arrays": [pd.GetArrayName(i) for i in range(pd.GetNumberOfArrays())],
    "fused_kernel": LatticeFVSRN(read_srn(srn).model).fused is not None,
    "compiler": find_compiler(),
})
print("encode_read.py done")
sys.stdout.flush()
