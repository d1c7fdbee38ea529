"""pvpython: Wavelet (16^3) -> SRNEncoder with a wavelet grid and pruning (writes a .srn) -> SRNReader.

Usage: pvpython encode_wavelet_grid.py PLUGIN_XML OUT_DIR
Writes OUT_DIR/grid.srn, reconstruction.npy and read.npy, and result.json (both outputs' field data).
"""

import os
import sys

from paraview import servermanager
from paraview.simple import LoadPlugin, Wavelet
from pvcommon import TINY_ENCODER, WAVELET_EXTENT, arg, field_values, point_values, save_array, write_json

LoadPlugin(arg(1), remote=False, ns=globals())
out = arg(2)
srn = os.path.join(out, "grid.srn")

source = Wavelet(WholeExtent=WAVELET_EXTENT)  # ParaView's test source, no relation to the wavelet grid
# A strong L1 weight and fast masks prune within the tiny run's 40 steps.
encoder = SRNEncoder(Input=source, FileName=srn, Wavelet="db2", WaveletLevels=1, Pruning="binary",  # noqa: F821
                     L1Weight=20.0, MaskLearningRate=0.3, **TINY_ENCODER)
encoder.Scalars = ["POINTS", "RTData"]
encoder.UpdatePipeline()
if not os.path.isfile(srn):
    sys.exit("encode_wavelet_grid.py: the SRN Encoder wrote no file; its error is printed above")
encoded = servermanager.Fetch(encoder)
reader = SRNReader(FileName=srn)  # noqa: F821
reader.UpdatePipeline()
read = servermanager.Fetch(reader)

save_array(os.path.join(out, "reconstruction.npy"), point_values(encoded, "RTData"))
save_array(os.path.join(out, "read.npy"), point_values(read))
write_json(os.path.join(out, "result.json"), {"encoder_field": field_values(encoded),
                                              "reader_field": field_values(read)})
print("encode_wavelet_grid.py done")
sys.stdout.flush()
