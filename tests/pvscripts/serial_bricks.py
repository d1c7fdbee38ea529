"""The brick compressor on one process, in ParaView's own Python (pvpython): the reference that an MPI pvbatch run
(encode_bricks.py) must equal byte for byte (the same torch and numpy as the ranks).

Usage: pvpython serial_bricks.py IN.nrrd OUT.srn BRICK_SIZE HALO
"""

import sys

from pvcommon import TINY_ENCODER, arg

from srnvtk.config import EncoderSettings, FVSRNConfig, TrainConfig
from srnvtk.distributed import compress_bricks
from srnvtk.sources import open_nrrd

path, srn, size, halo = arg(1), arg(2), int(arg(3)), int(arg(4))
model = FVSRNConfig(grid_channels=TINY_ENCODER["GridChannels"], grid_resolution=TINY_ENCODER["GridResolution"],
                    mlp_width=TINY_ENCODER["MLPWidth"], mlp_layers=TINY_ENCODER["MLPLayers"])
train = TrainConfig(steps=30, batch_size=TINY_ENCODER["BatchSize"], device="cpu")  # encode_bricks.py's steps
compress_bricks(open_nrrd(path, "ImageFile"), EncoderSettings(fvsrn=model, train=train), brick_size=size,
                halo=halo, path=srn)  # ImageFile: what ParaView's NRRD reader calls the array
print("serial_bricks.py done")
sys.stdout.flush()
