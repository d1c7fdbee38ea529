"""VTK algorithms: SRNEncoder (filter) and SRNReader (source).

They only translate between VTK objects and the library (arrays, extents, progress, errors).
Pure vtkmodules, so they run in ParaView 5.11 (VTK 9.2) and with pip's VTK alike.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from vtkmodules.util import numpy_support
from vtkmodules.util.vtkAlgorithm import VTKPythonAlgorithmBase
from vtkmodules.vtkCommonCore import vtkDoubleArray, vtkOutputWindow, vtkStringArray
from vtkmodules.vtkCommonDataModel import vtkDataObject, vtkImageData
from vtkmodules.vtkCommonExecutionModel import vtkAlgorithm, vtkStreamingDemandDrivenPipeline

from .config import (
    PRECISIONS,
    FVSRNConfig,
    NeurcompConfig,
    PruningConfig,
    TrainConfig,
    check_device,
    model_config_class,
)
from .decode import decode, resampled_geometry, strided_geometry
from .encoder import CompressResult, compress
from .errors import SettingsError, SRNError
from .fileformat import STAT_KEYS, SRNFile, read_srn
from .ratecontrol import compress_to_psnr, plan_for_ratio
from .volume import Geometry, Volume
from .vtkio import fill_image, volume_from_image

ERROR_ARRAY = "abs_error"
SDDP = vtkStreamingDemandDrivenPipeline


def report_error(algorithm: VTKPythonAlgorithmBase, message: str) -> int:
    """Show the error where VTK and ParaView show errors (the output window) and fail the request."""
    name = type(algorithm).__name__
    vtkOutputWindow.GetInstance().DisplayErrorText(f"{name}: {message}\n")
    return 0


def add_field_data(image: vtkImageData, values: dict[str, object]) -> None:
    """Numbers become one-tuple double arrays, strings one-value string arrays.

    Every earlier srnvtk entry is dropped first: the pipeline copies the input's field data to the
    output, and an input read from a .srn file would otherwise leave its stale ratio or file size.
    """
    fd = image.GetFieldData()
    for name in SRN_FIELD_NAMES:
        fd.RemoveArray(name)
    for name, value in values.items():
        if isinstance(value, str):
            array = vtkStringArray()
            array.InsertNextValue(value)
        else:
            array = vtkDoubleArray()
            array.InsertNextValue(float(value))
        array.SetName(name)
        fd.AddArray(array)


SRN_FIELD_NAMES = (*STAT_KEYS, "source_array", "architecture", "pruning", "grid_resolution", "neurcomp_width")


def _set_if_changed(algorithm: VTKPythonAlgorithmBase, attribute: str, value) -> None:
    if getattr(algorithm, attribute) != value:
        setattr(algorithm, attribute, value)
        algorithm.Modified()


def _as_path(name: str | None) -> str:
    # ParaView pushes the string 'None' for string properties without a default.
    return "" if name in (None, "None") else str(name)


class SRNEncoder(VTKPythonAlgorithmBase):
    """Trains an fV-SRN or Neurcomp network (optionally pruning it) on one point array of the input image;
    outputs the reconstruction and its error.

    The array is chosen with SetInputArrayToProcess(0, 0, 0, 0, name) (active scalars when unset).
    With a file name set, the compressed model is written there.
    """

    def __init__(self) -> None:
        super().__init__(nInputPorts=1, inputType="vtkImageData", nOutputPorts=1, outputType="vtkImageData")
        self._file_name = ""
        self._target_ratio = 0.0
        self._target_psnr = 0.0
        self._architecture = "fvsrn"
        self._model = FVSRNConfig()
        self._neurcomp = NeurcompConfig()
        self._pruning = PruningConfig()
        self._train = TrainConfig()
        self.last_stats: dict[str, float] = {}

    # -- properties ---------------------------------------------------------------------------------
    def SetFileName(self, name: str) -> None:
        _set_if_changed(self, "_file_name", _as_path(name))

    def GetFileName(self) -> str:
        return self._file_name

    def SetTargetRatio(self, ratio: float) -> None:
        """Fit the file into float32 bytes / ratio (srnvtk.ratecontrol); 0 uses GridResolution as given."""
        _set_if_changed(self, "_target_ratio", float(ratio))

    def SetTargetPSNR(self, psnr: float) -> None:
        """Search for the smallest file reaching this PSNR in dB (several trainings); 0: off. Wins over the
        target ratio."""
        _set_if_changed(self, "_target_psnr", float(psnr))

    def _set_config(self, attribute: str, **change) -> None:
        """Replace one field of a settings object; a bad value is reported and the old settings stay."""
        try:
            _set_if_changed(self, attribute, dataclasses.replace(getattr(self, attribute), **change))
        except SRNError as exc:
            report_error(self, str(exc))

    def _set_model(self, **change) -> None:
        self._set_config("_model", **change)

    def _set_train(self, **change) -> None:
        self._set_config("_train", **change)

    def model_config(self) -> FVSRNConfig | NeurcompConfig:
        """The settings of the chosen architecture."""
        return self._neurcomp if self._architecture == "neurcomp" else self._model

    def pruning_config(self) -> PruningConfig:
        return self._pruning

    def SetArchitecture(self, name: str) -> None:
        """fvsrn (latent grid + MLP) or neurcomp (SIREN)."""
        try:
            model_config_class(str(name))
        except SRNError as exc:
            report_error(self, str(exc))
            return
        _set_if_changed(self, "_architecture", str(name))

    def SetNeurcompWidth(self, n: int) -> None:
        self._set_config("_neurcomp", width=int(n))

    def SetNeurcompBlocks(self, n: int) -> None:
        self._set_config("_neurcomp", blocks=int(n))

    def SetResidual(self, flag: int) -> None:
        self._set_config("_neurcomp", residual=bool(flag))

    def SetOmega0(self, omega: float) -> None:
        self._set_config("_neurcomp", omega_0=float(omega))

    def SetWeightClusters(self, clusters: int) -> None:
        """Neurcomp: 0 stores hidden matrices in fp16; 2..256 as that many k-means shared values each."""
        self._set_config("_neurcomp", weight_clusters=int(clusters))

    def SetPruning(self, method: str) -> None:
        """none, smallify, variational or binary."""
        self._set_config("_pruning", method=str(method))

    def SetPruningGranularity(self, granularity: str) -> None:
        """fV-SRN: position (one mask per grid point) or position_channel (one per grid value)."""
        self._set_config("_pruning", granularity=str(granularity))

    def SetMaskPhaseFraction(self, fraction: float) -> None:
        self._set_config("_pruning", mask_phase_fraction=float(fraction))

    def SetMaskLearningRate(self, rate: float) -> None:
        self._set_config("_pruning", mask_learning_rate=float(rate))

    def SetFinetuneLRFactor(self, factor: float) -> None:
        self._set_config("_pruning", finetune_lr_factor=float(factor))

    def SetL1Weight(self, weight: float) -> None:
        self._set_config("_pruning", l1_weight=float(weight))

    def SetL2Weight(self, weight: float) -> None:
        self._set_config("_pruning", l2_weight=float(weight))

    def SetKLWeight(self, weight: float) -> None:
        self._set_config("_pruning", kl_weight=float(weight))

    def SetKLRampFraction(self, fraction: float) -> None:
        self._set_config("_pruning", kl_ramp_fraction=float(fraction))

    def SetSigma(self, mode: str) -> None:
        """Variational dropout's likelihood sigma: static or dynamic."""
        self._set_config("_pruning", sigma=str(mode))

    def SetStaticSigma(self, sigma: float) -> None:
        self._set_config("_pruning", static_sigma=float(sigma))

    def SetSignMomentum(self, momentum: float) -> None:
        self._set_config("_pruning", sign_momentum=float(momentum))

    def SetSignVarianceThreshold(self, threshold: float) -> None:
        self._set_config("_pruning", sign_variance_threshold=float(threshold))

    def SetDropoutThreshold(self, threshold: float) -> None:
        self._set_config("_pruning", dropout_threshold=float(threshold))

    def SetBinaryThreshold(self, threshold: float) -> None:
        self._set_config("_pruning", binary_threshold=float(threshold))

    def SetGridChannels(self, n: int) -> None:
        self._set_model(grid_channels=int(n))

    def SetGridResolution(self, n: int) -> None:
        self._set_model(grid_resolution=int(n))

    def SetWavelet(self, name: str) -> None:
        """fV-SRN: train the latent grid as its wavelet coefficients (a PyWavelets discrete wavelet name such as
        haar, db2 or bior2.2); none for a plain grid. An unknown name is reported with the valid ones."""
        self._set_model(wavelet=str(name))

    def SetWaveletLevels(self, n: int) -> None:
        """Wavelet decomposition levels on every axis; 0 chooses them automatically per axis."""
        self._set_model(wavelet_levels=int(n) or None)

    def SetMLPWidth(self, n: int) -> None:
        self._set_model(mlp_width=int(n))

    def SetMLPLayers(self, n: int) -> None:
        self._set_model(mlp_layers=int(n))

    def SetFourierFeatures(self, n: int) -> None:
        self._set_model(fourier_features=int(n))

    def SetSteps(self, n: int) -> None:
        self._set_train(steps=int(n))

    def SetBatchSize(self, n: int) -> None:
        self._set_train(batch_size=int(n))

    def SetLearningRate(self, lr: float) -> None:
        """Adam's initial rate; 0 uses the architecture's default."""
        self._set_train(learning_rate=float(lr) if float(lr) != 0.0 else None)

    def SetSeed(self, seed: int) -> None:
        self._set_train(seed=int(seed))

    def SetDevice(self, device: str) -> None:
        self._set_train(device=str(device))

    def SetThreads(self, n: int) -> None:
        self._set_train(threads=int(n))

    def SetTimeLimit(self, seconds: float) -> None:
        """Stop training after this many seconds (0: run all steps)."""
        self._set_train(time_limit=float(seconds))

    # -- pipeline -----------------------------------------------------------------------------------
    def RequestUpdateExtent(self, request, inInfo, outInfo) -> int:
        info = inInfo[0].GetInformationObject(0)
        info.Set(SDDP.UPDATE_EXTENT(), info.Get(SDDP.WHOLE_EXTENT()), 6)
        return 1

    def RequestData(self, request, inInfo, outInfo) -> int:
        image = vtkImageData.GetData(inInfo[0])
        output = vtkImageData.GetData(outInfo)
        try:
            volume = volume_from_image(image, self._selected_array())
            result = self._compress(volume)
        except SRNError as exc:
            return report_error(self, str(exc))
        error = np.abs(result.reconstruction.astype(np.float32) - volume.values.astype(np.float32))
        arrays = {volume.name: result.reconstruction, ERROR_ARRAY: error}
        fill_image(output, volume.geometry, arrays, active=volume.name)
        self.last_stats = dict(result.stats)
        model_config = result.model_config
        size = {"grid_resolution": model_config.grid_resolution} if isinstance(model_config, FVSRNConfig) else {
            "neurcomp_width": model_config.width}
        if isinstance(model_config, FVSRNConfig):
            size["wavelet"] = model_config.wavelet or "none"
        add_field_data(output, {**result.stats, **size, "architecture": model_config.architecture,
                                "pruning": self._pruning.method})
        return 1

    def _compress(self, volume: Volume) -> CompressResult:
        """Train and (with a file name) write: to a target PSNR, into a target ratio, or as configured."""
        args = (self._file_name or None, self._progress, self._should_abort, self._pruning)
        if self._target_psnr > 0:
            return compress_to_psnr(volume, self._target_psnr, self._train, self.model_config(), *args).result
        model_config, budget = self.model_config(), None
        if self._target_ratio > 0:
            model_config, budget = plan_for_ratio(self._target_ratio, volume, model_config, self._pruning)
        return compress(volume, model_config, self._train, *args, target_bytes=budget)

    def _progress(self, fraction: float, _message: str) -> None:
        self.UpdateProgress(fraction)

    def _should_abort(self) -> bool:
        return bool(self.GetAbortExecute())

    def _selected_array(self) -> str | None:
        info = self.GetInputArrayInformation(0)
        if info is not None and info.Has(vtkDataObject.FIELD_NAME()):
            return info.Get(vtkDataObject.FIELD_NAME()) or None
        return None


class SRNReader(VTKPythonAlgorithmBase):
    """Reconstructs the volume stored in a .srn file: whole, strided, resampled or a sub-extent.

    Produces exactly the update extent it is asked for, so streaming and parallel pieces work.
    """

    def __init__(self) -> None:
        super().__init__(nInputPorts=0, nOutputPorts=1, outputType="vtkImageData")
        self._file_name = ""
        self._stride = (1, 1, 1)
        self._dimensions = (0, 0, 0)
        self._region: tuple[int, ...] | None = None
        self._device = "auto"
        self._threads = 0
        self._precision = "fp32"
        self._cache_key: tuple | None = None
        self._file: SRNFile | None = None

    def SetFileName(self, name: str) -> None:
        _set_if_changed(self, "_file_name", _as_path(name))

    def GetFileName(self) -> str:
        return self._file_name

    def SetStride(self, sx: int, sy: int, sz: int) -> None:
        _set_if_changed(self, "_stride", (int(sx), int(sy), int(sz)))

    def SetTargetDimensions(self, nx: int, ny: int, nz: int) -> None:
        """Resample to this many points per axis; 0 0 0 uses the stride instead."""
        _set_if_changed(self, "_dimensions", (int(nx), int(ny), int(nz)))

    def SetSubExtent(self, i0: int, i1: int, j0: int, j1: int, k0: int, k1: int) -> None:
        """Region in the source's index space; an empty range on any axis (i1 < i0) means the whole grid."""
        region = (int(i0), int(i1), int(j0), int(j1), int(k0), int(k1))
        empty = any(region[2 * a + 1] < region[2 * a] for a in range(3))
        _set_if_changed(self, "_region", None if empty else region)

    def SetDevice(self, device: str) -> None:
        try:
            _set_if_changed(self, "_device", check_device(str(device)))
        except SRNError as exc:
            report_error(self, str(exc))

    def SetPrecision(self, precision: str) -> None:
        """The MLP's precision on CUDA: fp32, fp16, or auto (fp16 where it stays within 1e-3 of the range)."""
        if str(precision) not in PRECISIONS:
            report_error(self, f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
            return
        _set_if_changed(self, "_precision", str(precision))

    def SetThreads(self, n: int) -> None:
        """CPU threads for decoding; 0: one per core, shared between the MPI ranks on this machine."""
        if int(n) < 0:
            report_error(self, "threads must be >= 0")
            return
        _set_if_changed(self, "_threads", int(n))

    def srn_file(self) -> SRNFile:
        """The loaded file, re-read when its path, size or modification time changes."""
        if not self._file_name:
            raise SettingsError("no file name set")
        try:
            st = os.stat(self._file_name)
            key = (self._file_name, st.st_mtime_ns, st.st_size)
        except OSError:
            key = (self._file_name, None, None)
        if key != self._cache_key:
            self._file, self._cache_key = read_srn(self._file_name), key
        return self._file

    def output_geometry(self) -> Geometry:
        source = self.srn_file().source.geometry
        if any(self._dimensions):
            return resampled_geometry(source, self._dimensions, self._region)
        return strided_geometry(source, self._stride, self._region)

    def RequestInformation(self, request, inInfo, outInfo) -> int:
        try:
            geometry = self.output_geometry()
        except SRNError as exc:
            return report_error(self, str(exc))
        info = outInfo.GetInformationObject(0)
        info.Set(SDDP.WHOLE_EXTENT(), geometry.extent, 6)
        info.Set(vtkDataObject.SPACING(), geometry.spacing, 3)
        info.Set(vtkDataObject.ORIGIN(), geometry.origin, 3)
        info.Set(vtkAlgorithm.CAN_PRODUCE_SUB_EXTENT(), 1)
        # Announce the scalars' type, as VTK's image readers do: imaging filters downstream (such as
        # vtkImageDataStreamer) allocate their output from it, and fell back to double without it.
        scalar_type = numpy_support.get_vtk_array_type(np.dtype(self.srn_file().source.dtype))
        vtkDataObject.SetPointDataActiveScalarInfo(info, scalar_type, 1)
        return 1

    def RequestData(self, request, inInfo, outInfo) -> int:
        output = vtkImageData.GetData(outInfo)
        info = outInfo.GetInformationObject(0)
        try:
            srn = self.srn_file()
            whole = self.output_geometry()
            extent = tuple(info.Get(SDDP.UPDATE_EXTENT())) if info.Has(SDDP.UPDATE_EXTENT()) else whole.extent
            piece = Geometry(extent, whole.origin, whole.spacing)
            values = decode(
                srn.model, srn.source.geometry, piece, srn.source.value_range, srn.source.dtype,
                self._device, progress=self.UpdateProgress, threads=self._threads, precision=self._precision,
            )
        except SRNError as exc:
            return report_error(self, str(exc))
        fill_image(output, piece, {srn.source.array_name: values}, active=srn.source.array_name)
        add_field_data(output, {**srn.stats, "source_array": srn.source.array_name})
        return 1
