"""The SRN Encoder over several arrays and every time step, the way ParaView's writers write all time steps.

Two additions to the encoder (srnvtk.vtkalgorithms.SRNEncoder), both off by default so that it keeps compressing
the one Scalars array of the current step into a single-network file:
  Arrays (`GetEncodeArraySelection`, a vtkDataArraySelection; in ParaView an array list with checkboxes): the
      point arrays to compress into one file of many parts (srnvtk.series_encode). Checking any turns this on.
  AllTimeSteps: collect every time step the input advertises (TIME_STEPS), one pipeline pass per step: each
      pass asks the input for the next time (UPDATE_TIME_STEP in RequestUpdateExtent) and keeps the pipeline
      executing (CONTINUE_EXECUTING) until the last step has arrived; then trains the whole series into one
      file. Without Arrays checked it compresses the Scalars array.
The collected steps' arrays are held in memory until training starts (one copy of the selected arrays of every
step). One progress bar covers both: collecting the steps takes COLLECT_SHARE of it, training the rest; abort
(ParaView's) is asked between and within trainings. The output is the file's reconstruction of the selected
arrays at the last step, with the file's statistics as field data. A file name is required in this mode.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from vtkmodules.util import numpy_support
from vtkmodules.vtkCommonCore import vtkDataArraySelection
from vtkmodules.vtkCommonExecutionModel import vtkStreamingDemandDrivenPipeline

from .errors import InputError, SettingsError

if TYPE_CHECKING:
    from vtkmodules.vtkCommonCore import vtkInformation
    from vtkmodules.vtkCommonDataModel import vtkImageData

SDDP = vtkStreamingDemandDrivenPipeline
COLLECT_SHARE = 0.05  # of the progress bar: asking the input for every step


class SeriesRequest:
    """The encoder's series state: which arrays, whether all time steps, and the steps collected so far."""

    def __init__(self, algorithm: Any) -> None:
        self.selection = vtkDataArraySelection()
        self.selection.AddObserver("ModifiedEvent", lambda *_: algorithm.Modified())
        self.all_time_steps = False
        self.times: tuple[float, ...] = ()
        self._next = 0
        self._steps: list[dict[str, np.ndarray]] = []
        self._geometry = None

    def names(self) -> list[str]:
        return [self.selection.GetArrayName(i) for i in range(self.selection.GetNumberOfArrays())
                if self.selection.GetArraySetting(i)]

    @property
    def active(self) -> bool:
        """The series path: arrays checked, or all time steps asked for."""
        return self.all_time_steps or bool(self.names())

    def read_times(self, input_info: vtkInformation) -> None:
        """The input's time steps (none: the current step only)."""
        has = self.all_time_steps and input_info.Has(SDDP.TIME_STEPS())
        self.times = tuple(input_info.Get(SDDP.TIME_STEPS())) if has else ()

    def request_time(self, input_info: vtkInformation) -> None:
        """Ask the input for the next step to collect."""
        if self.times:
            input_info.Set(SDDP.UPDATE_TIME_STEP(), self.times[self._next])

    def collect(self, image: vtkImageData, names: list[str], request: vtkInformation,
                progress: Any) -> bool:
        """Keep this step's arrays; True once every step is in (and the pipeline may stop executing)."""
        from .vtkio import geometry_of

        if self._next == 0:
            self._steps, self._geometry = [], geometry_of(image)
        elif geometry_of(image) != self._geometry:
            raise InputError(f"time step {self._next} lies on another grid than step 0")
        self._steps.append({name: step_array(image, name) for name in names})
        self._next += 1
        total = max(len(self.times), 1)
        progress(COLLECT_SHARE * self._next / total)
        if self._next < len(self.times):
            request.Set(SDDP.CONTINUE_EXECUTING(), 1)
            return False
        request.Remove(SDDP.CONTINUE_EXECUTING())
        self._next = 0
        return True

    def series(self, current_time: float | None):
        """The collected steps as a srnvtk.series.Series (one step at the current time when not all steps)."""
        from .series import series_from_arrays

        times = self.times or (current_time if current_time is not None else 0.0,)
        steps, self._steps = self._steps, []
        return series_from_arrays(self._geometry, times, steps)

    def reset(self) -> None:
        """Start collecting from the first step again (after a failure or abort)."""
        self._next, self._steps = 0, []


def step_array(image: vtkImageData, name: str) -> np.ndarray:
    """A point array of the image as [z, y, x] or [z, y, x, components] (a copy: the pipeline reuses its
    buffers from step to step)."""
    array = image.GetPointData().GetArray(name)
    if array is None:
        have = [image.GetPointData().GetArrayName(i) for i in range(image.GetPointData().GetNumberOfArrays())]
        raise InputError(f"the input has no point array '{name}' (it has: {', '.join(have) or 'none'})")
    nx, ny, nz = image.GetDimensions()
    values = numpy_support.vtk_to_numpy(array).copy()
    components = array.GetNumberOfComponents()
    return values.reshape((nz, ny, nx) if components == 1 else (nz, ny, nx, components))


def check_file_name(file_name: str) -> None:
    if not file_name:
        raise SettingsError("compressing several arrays or all time steps writes one file: set a file name")
