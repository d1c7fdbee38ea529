"""VTK algorithms: SRNEncoder (filter) and SRNReader (source).

They only translate between VTK objects and the library (arrays, extents, progress, errors).
Pure vtkmodules, so they run in ParaView 5.11 (VTK 9.2) and with pip's VTK alike.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Callable

import numpy as np
from vtkmodules.util import numpy_support
from vtkmodules.util.vtkAlgorithm import VTKPythonAlgorithmBase
from vtkmodules.vtkCommonCore import vtkDoubleArray, vtkOutputWindow, vtkStringArray
from vtkmodules.vtkCommonDataModel import vtkDataObject, vtkImageData
from vtkmodules.vtkCommonExecutionModel import vtkAlgorithm, vtkStreamingDemandDrivenPipeline

from .config import (
    ENCODER_SETTINGS,
    BrickConfig,
    DecodeConfig,
    EncoderSettings,
    FVSRNConfig,
    ModelConfig,
    PruningConfig,
)
from .decode import bound_applies, decode, output_grid
from .encoder_series import COLLECT_SHARE, SeriesRequest, check_file_name
from .errors import SettingsError, SRNError
from .faces import install_setters
from .fileformat import STAT_KEYS, SRNFile, read_srn
from .ratecontrol import encode
from .reader_series import ReaderArrays, advertise_times, requested_step, series_times, stamp_time
from .series_encode import encode_series
from .volume import Geometry
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


SRN_FIELD_NAMES = (*STAT_KEYS, "source_array", "architecture", "pruning", "grid_resolution", "neurcomp_width",
                   "max_error", "error_bound", "bricks", "ranks")


def reports_errors(method: Callable[..., int]) -> Callable[..., int]:
    """A pipeline request that reports every failure through VTK's error output and returns failure (0): a
    library error as its one-line message, anything unexpected as a one-line internal error (with the
    traceback logged at DEBUG), never a Python traceback into VTK."""

    @functools.wraps(method)
    def request(self: VTKPythonAlgorithmBase, *args: object) -> int:
        try:
            return method(self, *args)
        except SRNError as exc:
            return report_error(self, str(exc))
        except MemoryError:
            return report_error(self, "out of memory")
        except Exception as exc:  # noqa: BLE001 (VTK must get a status, not an exception)
            logging.getLogger(__name__).debug("%s failed", method.__qualname__, exc_info=True)
            return report_error(self, f"internal error: {type(exc).__name__}: {exc}")

    return request


def _as_path(name: str | None) -> str:
    # ParaView pushes the string 'None' for string properties without a default.
    return "" if name in (None, "None") else str(name)


class _FileNameProperty:
    """SetFileName/GetFileName for an algorithm whose output depends on a file's path (Modified on change)."""

    _file_name = ""

    def SetFileName(self, name: str) -> None:
        if _as_path(name) != self._file_name:
            self._file_name = _as_path(name)
            self.Modified()

    def GetFileName(self) -> str:
        return self._file_name


class SRNEncoder(_FileNameProperty, VTKPythonAlgorithmBase):
    """Trains an fV-SRN or Neurcomp network (optionally pruning it) on one point array of the input image;
    outputs the reconstruction and its error.

    The array is chosen with SetInputArrayToProcess(0, 0, 0, 0, name) (active scalars when unset).
    With a file name set, the compressed model is written there. Every setting of srnvtk.config's encoder
    classes has a Set<Property>/Get<Property> pair (srnvtk.faces.install_setters).
    """

    def __init__(self) -> None:
        super().__init__(nInputPorts=1, inputType="vtkImageData", nOutputPorts=1, outputType="vtkImageData")
        self.settings = {cls: cls() for cls in ENCODER_SETTINGS}
        self.last_stats: dict[str, float] = {}
        self.series_request = SeriesRequest(self)

    # Several arrays and all time steps into one file (srnvtk.encoder_series).
    def GetEncodeArraySelection(self):  # noqa: N802 (VTK's naming)
        return self.series_request.selection

    def SetAllTimeSteps(self, value: int) -> None:  # noqa: N802
        if bool(value) != self.series_request.all_time_steps:
            self.series_request.all_time_steps = bool(value)
            self.Modified()

    def GetAllTimeSteps(self) -> int:  # noqa: N802
        return int(self.series_request.all_time_steps)

    @reports_errors
    def RequestInformation(self, request, inInfo, outInfo) -> int:
        self.series_request.read_times(inInfo[0].GetInformationObject(0))
        return 1

    def encoder_settings(self) -> EncoderSettings:
        return EncoderSettings(*(self.settings[cls] for cls in ENCODER_SETTINGS))

    def model_config(self) -> ModelConfig:
        """The settings of the chosen architecture."""
        return self.encoder_settings().model_config

    def pruning_config(self) -> PruningConfig:
        return self.settings[PruningConfig]

    def _pieces(self, outInfo) -> tuple[int, int]:
        """(this piece, pieces): what the pipeline asks of this process (pvbatch under MPI: its rank, the ranks)."""
        info = outInfo.GetInformationObject(0)
        if not info.Has(SDDP.UPDATE_NUMBER_OF_PIECES()):
            return 0, 1
        return info.Get(SDDP.UPDATE_PIECE_NUMBER()), max(1, info.Get(SDDP.UPDATE_NUMBER_OF_PIECES()))

    def _layout(self, whole: tuple[int, ...], pieces: int):
        """The brick layout for the input's whole extent on this many pieces; None: one network, no bricks."""
        from .bricks import layout_for

        grid = Geometry(tuple(whole))
        size = self.settings[BrickConfig].size_for(grid.dimensions, pieces)
        return layout_for(grid, size, self.settings[BrickConfig].halo) if size else None

    def RequestUpdateExtent(self, request, inInfo, outInfo) -> int:
        """The whole input, or under MPI only the bricks this rank trains, with their halos: its piece, which the
        upstream reader reads in parallel (srnvtk.distributed.assign_bricks)."""
        info = inInfo[0].GetInformationObject(0)
        whole = info.Get(SDDP.WHOLE_EXTENT())
        piece, pieces = self._pieces(outInfo)
        extent = whole
        if pieces > 1:
            try:
                layout = self._layout(whole, pieces)
            except SRNError:  # reported by RequestData, which fails on the same settings
                layout = None
            if layout is not None:
                from .distributed import assign_bricks, piece_extent

                owners = assign_bricks(layout.counts(Geometry(tuple(whole))), pieces)
                if owners[piece]:
                    extent = piece_extent(Geometry(tuple(whole)), layout, owners[piece])
                    # This extent, whole: readers would otherwise cut their own piece out of it.
                    info.Set(SDDP.UPDATE_PIECE_NUMBER(), 0)
                    info.Set(SDDP.UPDATE_NUMBER_OF_PIECES(), 1)
        info.Set(SDDP.UPDATE_EXTENT(), extent, 6)
        if self.series_request.active:
            self.series_request.request_time(info)
        return 1

    @reports_errors
    def RequestData(self, request, inInfo, outInfo) -> int:
        if self.series_request.active:
            try:
                return self._encode_series(request, inInfo, outInfo)
            except BaseException:
                self.series_request.reset()
                request.Remove(SDDP.CONTINUE_EXECUTING())
                raise
        image = vtkImageData.GetData(inInfo[0])
        output = vtkImageData.GetData(outInfo)
        piece, pieces = self._pieces(outInfo)
        if pieces > 1:
            return self._encode_piece(image, output, inInfo[0].GetInformationObject(0), piece, pieces)
        volume = volume_from_image(image, self._selected_array())
        settings = self.encoder_settings()
        encoded = encode(volume, settings, path=self._file_name or None, progress=self._progress,
                         should_abort=self._should_abort)
        result = encoded.result
        error = np.abs(result.reconstruction.astype(np.float32) - volume.values.astype(np.float32))
        arrays = {volume.name: result.reconstruction, ERROR_ARRAY: error}
        fill_image(output, volume.geometry, arrays, active=volume.name)
        self.last_stats = dict(result.stats)
        model_config = result.model_config
        if isinstance(model_config, FVSRNConfig):
            size = {"grid_resolution": model_config.grid_resolution, "wavelet": model_config.wavelet or "none"}
        elif model_config is not None:
            size = {"neurcomp_width": model_config.width}
        else:  # an error-bounded file without a network
            size = {}
        if result.bound is not None:
            size.update(max_error=result.bound["max_error"],
                        error_bound=f"{result.bound['design']} ({result.bound['coder']})")
        add_field_data(output, {**result.stats, **size,
                                "architecture": model_config.architecture if model_config is not None else "none",
                                "pruning": encoded.pruning.method})
        return 1

    def _encode_piece(self, image: vtkImageData, output: vtkImageData, info, piece: int, pieces: int) -> int:
        """Under MPI (pvbatch): this rank trains the bricks of its piece, all ranks write one file
        (srnvtk.distributed); the output is this rank's part of the reconstruction and its error."""
        from .distributed import MPIComm, compress_bricks
        from .sources import VolumeSource

        volume = volume_from_image(image, self._selected_array())
        held = volume.geometry
        grid = Geometry(tuple(info.Get(SDDP.WHOLE_EXTENT())), held.origin, held.spacing)
        comm = MPIComm()
        if (comm.rank, comm.size) != (piece, pieces):
            raise SettingsError(f"this process is MPI rank {comm.rank} of {comm.size}, but the pipeline asks for piece "
                                f"{piece} of {pieces}; run the SRN Encoder with one piece per rank")
        settings = self.encoder_settings()
        if not settings.train.threads:
            from .parallel import default_threads

            settings = dataclasses.replace(settings, train=dataclasses.replace(settings.train,
                                                                               threads=default_threads()))
        bricks = self.settings[BrickConfig]
        run = compress_bricks(VolumeSource(volume, grid), settings,
                              brick_size=bricks.size_for(grid.dimensions, pieces), halo=bricks.halo,
                              path=self._file_name or None, comm=comm, progress=self._progress,
                              should_abort=self._should_abort, keep_reconstruction=True)
        box = Geometry(run.reconstruction_extent, held.origin, held.spacing)
        original = VolumeSource(volume, grid).read(box.extent)
        error = np.abs(run.reconstruction.astype(np.float32) - original.astype(np.float32))
        fill_image(output, box, {volume.name: run.reconstruction, ERROR_ARRAY: error}, active=volume.name)
        self.last_stats = dict(run.stats)
        add_field_data(output, {**run.stats, "architecture": "fvsrn", "pruning": settings.pruning.method,
                                "bricks": float(len(run.layout.indices(grid))), "ranks": float(comm.size)})
        return 1

    def _progress(self, fraction: float, _message: str) -> None:
        self.UpdateProgress(fraction)

    def _encode_series(self, request, inInfo, outInfo) -> int:
        """One pass of the series path: collect this step; after the last, train and write (see
        srnvtk.encoder_series)."""
        check_file_name(self._file_name)
        image = vtkImageData.GetData(inInfo[0])
        names = self.series_request.names() or [self._selected_array() or _active_scalars(image)]
        if not self.series_request.collect(image, names, request, self.UpdateProgress):
            return 1
        info = image.GetInformation()
        current = info.Get(vtkDataObject.DATA_TIME_STEP()) if info.Has(vtkDataObject.DATA_TIME_STEP()) else None
        settings = self.encoder_settings()

        def progress(fraction: float, _message: str) -> None:
            self.UpdateProgress(COLLECT_SHARE + (1.0 - COLLECT_SHARE) * fraction)

        result = encode_series(self.series_request.series(current), settings, arrays=names, path=self._file_name,
                               progress=progress, should_abort=self._should_abort)
        srn = read_srn(self._file_name)
        last = len(srn.times) - 1
        arrays = {f.name: decode(srn, field=i, step=last, device=settings.train.device)
                  for i, f in enumerate(srn.fields)}
        output = vtkImageData.GetData(outInfo)
        fill_image(output, srn.geometry, arrays, active=names[0])
        self.last_stats = {**srn.stats, "psnr": result.mean_psnr}
        add_field_data(output, {**self.last_stats, "source_array": ",".join(names),
                                "architecture": srn.parts[0].model_config.architecture,
                                "pruning": srn.parts[0].pruning.method})
        return 1

    def _should_abort(self) -> bool:
        return bool(self.GetAbortExecute())

    def _selected_array(self) -> str | None:
        info = self.GetInputArrayInformation(0)
        if info is not None and info.Has(vtkDataObject.FIELD_NAME()):
            return info.Get(vtkDataObject.FIELD_NAME()) or None
        return None


def _active_scalars(image: vtkImageData) -> str:
    scalars = image.GetPointData().GetScalars()
    if scalars is None or not scalars.GetName():
        raise SettingsError("the input has no active scalars: choose the arrays to compress")
    return scalars.GetName()


install_setters(SRNEncoder, ENCODER_SETTINGS, report_error)


class SRNReader(_FileNameProperty, VTKPythonAlgorithmBase):
    """Reconstructs the volume stored in a .srn file: whole, strided, resampled or a sub-extent.

    Produces exactly the update extent it is asked for, so streaming and parallel pieces work. Its settings
    (srnvtk.config.DecodeConfig) have Set<Property>/Get<Property> pairs (srnvtk.faces.install_setters).
    """

    def __init__(self) -> None:
        super().__init__(nInputPorts=0, nOutputPorts=1, outputType="vtkImageData")
        self.settings = {DecodeConfig: DecodeConfig()}
        self._cache_key: tuple | None = None
        self._file: SRNFile | None = None
        self.arrays = ReaderArrays(self)

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
            self.arrays.offer([f.name for f in self._file.fields])
        return self._file

    # Array selection and time steps (srnvtk.reader_series); the methods VTK's own readers have.
    def GetPointDataArraySelection(self):  # noqa: N802 (VTK's name)
        return self.arrays.selection

    def GetNumberOfPointArrays(self) -> int:  # noqa: N802
        return self.arrays.selection.GetNumberOfArrays()

    def GetPointArrayName(self, index: int) -> str:  # noqa: N802
        return self.arrays.selection.GetArrayName(index)

    def GetPointArrayStatus(self, name: str) -> int:  # noqa: N802
        return self.arrays.selection.ArrayIsEnabled(name)

    def SetPointArrayStatus(self, name: str, status: int) -> None:  # noqa: N802
        self.arrays.set_status(name, status)

    def GetTimestepValues(self) -> list[float]:  # noqa: N802
        return list(series_times(self.srn_file())) if self._file_name else []

    def output_geometry(self) -> Geometry:
        return output_grid(self.srn_file().source.geometry, self.settings[DecodeConfig])

    @reports_errors
    def RequestInformation(self, request, inInfo, outInfo) -> int:
        geometry = self.output_geometry()
        info = outInfo.GetInformationObject(0)
        info.Set(SDDP.WHOLE_EXTENT(), geometry.extent, 6)
        info.Set(vtkDataObject.SPACING(), geometry.spacing, 3)
        info.Set(vtkDataObject.ORIGIN(), geometry.origin, 3)
        info.Set(vtkAlgorithm.CAN_PRODUCE_SUB_EXTENT(), 1)
        # Announce the scalars' type, as VTK's image readers do: imaging filters downstream (such as
        # vtkImageDataStreamer) allocate their output from it, and fell back to double without it.
        srn = self.srn_file()
        selected = self.arrays.selected_fields(srn)
        active = srn.fields[selected[0]] if selected else srn.fields[0]
        scalar_type = numpy_support.get_vtk_array_type(np.dtype(active.dtype))
        vtkDataObject.SetPointDataActiveScalarInfo(info, scalar_type, active.components)
        advertise_times(info, srn)
        return 1

    @reports_errors
    def RequestData(self, request, inInfo, outInfo) -> int:
        output = vtkImageData.GetData(outInfo)
        info = outInfo.GetInformationObject(0)
        srn = self.srn_file()
        config = self.settings[DecodeConfig]
        whole = self.output_geometry()
        extent = tuple(info.Get(SDDP.UPDATE_EXTENT())) if info.Has(SDDP.UPDATE_EXTENT()) else whole.extent
        piece = Geometry(extent, whole.origin, whole.spacing)
        step = requested_step(info, srn)
        fields = self.arrays.selected_fields(srn)
        arrays = {}
        for done, index in enumerate(fields):
            def progress(fraction: float, done: int = done) -> None:
                self.UpdateProgress((done + fraction) / len(fields))

            arrays[srn.fields[index].name] = decode(srn, piece, field=index, step=step, device=config.device,
                                                    precision=config.precision, threads=config.threads,
                                                    progress=progress)
        active = next(iter(arrays), None)
        output.GetPointData().Initialize()  # arrays deselected since the last run must not linger
        fill_image(output, piece, arrays, active=active)
        add_field_data(output, {**srn.stats, "source_array": active or "", **bound_fields(srn, piece)})
        stamp_time(output, srn, step)
        return 1


install_setters(SRNReader, (DecodeConfig,), report_error)


def bound_fields(srn: SRNFile, output: Geometry) -> dict[str, object]:
    """Field data on a file's error bound: max_error where it holds on this output (points on the source
    lattice), else only a note saying why not."""
    if srn.bound is None:
        return {}
    if bound_applies(srn, output):
        return {"max_error": srn.bound.max_error, "error_bound": "holds at every point of this output"}
    return {"error_bound": "does not apply: this grid is resampled, its points are not on the source lattice"}
