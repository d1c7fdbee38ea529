"""The SRN Reader's time steps and array selection, as VTK's and ParaView's own readers do them.

Time: a file of many parts (format 6) advertises its steps' times as TIME_STEPS and TIME_RANGE, so ParaView's
animation toolbar steps through them; a request for time t (UPDATE_TIME_STEP) decodes the step at or below t
(the first step for an earlier t), the way readers of discrete time steps answer times between them, and the
output carries that step's time as DATA_TIME_STEP. A single-network file has no time: it stays a static dataset.

Arrays: a vtkDataArraySelection of the file's fields (ParaView's PointArrayStatus; in plain VTK
Get/SetPointArrayStatus or GetPointDataArraySelection). Every field starts enabled; a reader decodes only the
enabled ones. Changing the selection marks the reader modified, so the pipeline re-executes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vtkmodules.vtkCommonCore import vtkDataArraySelection
from vtkmodules.vtkCommonDataModel import vtkDataObject
from vtkmodules.vtkCommonExecutionModel import vtkStreamingDemandDrivenPipeline

if TYPE_CHECKING:
    from vtkmodules.vtkCommonCore import vtkInformation
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkCommonExecutionModel import vtkAlgorithm

    from .fileformat import SRNFile

SDDP = vtkStreamingDemandDrivenPipeline
# A requested time counts as a step's own time within this fraction of the file's time span (or of 1):
# ParaView's animation hands back the advertised doubles, but a time typed in or computed may differ slightly.
TIME_TOLERANCE = 1e-9


class ReaderArrays:
    """The point arrays offered by a reader and which of them are enabled."""

    def __init__(self, algorithm: vtkAlgorithm) -> None:
        self.selection = vtkDataArraySelection()
        self._algorithm = algorithm
        self._offering = False
        self.selection.AddObserver("ModifiedEvent", self._changed)

    def _changed(self, *_args: object) -> None:
        if not self._offering:
            self._algorithm.Modified()

    def offer(self, names: list[str]) -> None:
        """A newly read file's fields become the choices: a name set before keeps its status (say, from a saved
        state), a new one starts enabled."""
        old = {self.selection.GetArrayName(i): self.selection.GetArraySetting(i)
               for i in range(self.selection.GetNumberOfArrays())}
        self._offering = True  # the file's own arrays are not a user's change
        try:
            self.selection.RemoveAllArrays()
            for name in names:
                self.selection.AddArray(name)
                if not old.get(name, 1):
                    self.selection.DisableArray(name)
        finally:
            self._offering = False

    def set_status(self, name: str, status: int) -> None:
        if status:
            self.selection.EnableArray(name)
        else:
            self.selection.DisableArray(name)

    def selected_fields(self, srn: SRNFile) -> list[int]:
        """The indices of the file's fields that are enabled, in the file's order."""
        return [i for i, f in enumerate(srn.fields) if self.selection.ArrayIsEnabled(f.name)]


def series_times(srn: SRNFile) -> tuple[float, ...]:
    """The times a reader advertises: a file of many parts has them; a single network has none."""
    return tuple(srn.times) if srn.model is None else ()


def advertise_times(info: vtkInformation, srn: SRNFile) -> None:
    times = series_times(srn)
    if times:
        info.Set(SDDP.TIME_STEPS(), times, len(times))
        info.Set(SDDP.TIME_RANGE(), (times[0], times[-1]), 2)
    else:
        info.Remove(SDDP.TIME_STEPS())
        info.Remove(SDDP.TIME_RANGE())


def requested_step(info: vtkInformation, srn: SRNFile) -> int:
    """The step for the requested time: the last one at or below it (the first for an earlier time, and when
    no time is requested)."""
    times = series_times(srn)
    if not times or not info.Has(SDDP.UPDATE_TIME_STEP()):
        return 0
    wanted = info.Get(SDDP.UPDATE_TIME_STEP())
    tolerance = TIME_TOLERANCE * max(times[-1] - times[0], 1.0)
    step = 0
    for index, t in enumerate(times):
        if t <= wanted + tolerance:
            step = index
    return step


def stamp_time(output: vtkImageData, srn: SRNFile, step: int) -> None:
    """The output's time (DATA_TIME_STEP), for a file with times."""
    if series_times(srn):
        output.GetInformation().Set(vtkDataObject.DATA_TIME_STEP(), srn.times[step])
