"""srnvtk's own time series: a mixing layer stirred by a turbulence-like flow, generated, no downloads.

What it models: a heavy fluid below a light one (`density`, kg/m^3), a `temperature` field (K) with hot
pockets that slowly lose their heat, and the flow that stirs both (`velocity`, m/s, three components), in a
box whose longest axis spans one metre, sampled at equal times. All three are float32 point arrays, as a
simulation writes them.

How, and why this way rather than a flow solve:
- The velocity is a *kinematic simulation* of turbulence: a sum of a few thousand divergence-free Fourier
  modes (integer wave vectors up to K_MAX box periods) with a von Karman energy spectrum (k^4 at large
  scales, k^-5/3 in the inertial range, a Gaussian cut-off before the grid scale), each mode's phase turning
  at its own frequency, growing as k^(2/3) like an eddy's turnover rate. It is exactly divergence-free,
  periodic in every axis, and its large eddies change slowly while small ones change faster, as in real
  turbulence. A grid evaluation is one inverse real FFT per component (modes the grid cannot resolve are
  left out, so a small grid holds a low-pass version of the same flow).
- The scalars are passive, carried by that flow: the departure map (where each point's fluid sat at time 0)
  is built by backward semi-Lagrangian steps, d_new(x) = dt u(x) + d(x - dt u(x)), trilinear interpolation of
  the previous displacement (periodic in x and y, clamped in z where fluid enters through the top and
  bottom), and each scalar is its initial analytic field evaluated at the departure points. Advecting the
  scalars themselves would smear their fronts a little with every step (trilinear semi-Lagrangian is
  diffusive); interpolating the smoother map and evaluating the initial fields exactly keeps fronts sharp, so
  chaotic stirring folds the interface into ever finer filaments, the fine structure real mixing data has.
- A small incompressible solve (pseudo-spectral Navier-Stokes) would be more faithful but needs nine FFTs and
  several sub-steps per output step, well over a minute at 128^3 x 20 steps on one core; this takes tens of
  seconds, and its fields have what matters for compression: fronts and filaments, vortical motion, and
  steps that differ smoothly (structure advects and deforms; temperature also decays, a change advection
  alone would not make).

Before the first output the flow stirs for SPINUP_SUBSTEPS sub-steps, so step 0 already holds rolled-up
structure. Deterministic: the same shape, step count and seed always give the same arrays (in a given
environment: numpy's PCG64, torch's CPU FFT and grid sampling); the seed draws the modes, the interface's
perturbation and the hot pockets. A shorter series is the first steps of a longer one.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .datasets import _check_shape, default_geometry
from .errors import SettingsError
from .volume import Geometry

SERIES_ARRAYS = ("density", "temperature", "velocity")
DEFAULT_SERIES_SHAPE = (128, 128, 128)
DEFAULT_SERIES_STEPS = 20
MAX_SERIES_STEPS = 10_000

TIME_STEP = 0.1  # seconds between output steps
SUBSTEPS = 2  # semi-Lagrangian sub-steps per output step
SPINUP_SUBSTEPS = 24  # stirring before step 0 (at the same sub-step)
START_TIME = SPINUP_SUBSTEPS * TIME_STEP / SUBSTEPS

# Flow: modes up to K_MAX box periods; spectrum peak near K_PEAK, Gaussian cut-off at K_CUT; RMS speed of one
# component (m/s); mode frequency 2 pi FREQUENCY (k / 1)^(2/3), each mode's scaled by a random factor.
K_MAX = 12
K_PEAK = 2.0
K_CUT = 8.0
U_RMS = 0.15
FREQUENCY = 0.25

# Scalars: the densities either side of the interface and its width (m); temperatures (K).
DENSITY_LIGHT, DENSITY_HEAVY = 1.0, 3.0
INTERFACE_WIDTH = 0.02
INTERFACE_MODES = 6  # sine modes of the interface's initial height, up to this many box periods
AMBIENT_TEMPERATURE = 300.0
STRATIFICATION = 20.0  # K warmer at the bottom than at the top
HOT_POCKETS = 5
POCKET_EXCESS = (30.0, 60.0)  # K above ambient at time 0
COOLING_TIME = 4.0  # s: the pockets' excess decays as exp(-t / COOLING_TIME)

ProgressCallback = Callable[[float, str], None]


def series_times(steps: int) -> tuple[float, ...]:
    """The output times (s) of a generated series of this many steps."""
    _check_steps(steps)
    return tuple(round(START_TIME + n * TIME_STEP, 10) for n in range(steps))


def generate_series(
    shape: tuple[int, int, int] = DEFAULT_SERIES_SHAPE,
    steps: int = DEFAULT_SERIES_STEPS,
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> Iterator[tuple[float, dict[str, np.ndarray]]]:
    """Yield (time, arrays) per step; arrays: 'density' and 'temperature' as float32 [z, y, x], 'velocity' as
    float32 [z, y, x, 3] (x, y, z components). Shape gives the point counts (nx, ny, nz) as VTK orders them.

    One step is computed at a time: memory stays a small multiple of one step's arrays whatever the count.
    """
    nx, ny, nz = _check_shape(shape)
    _check_steps(steps)
    if min(nx, ny, nz) < 2:
        raise SettingsError(f"a series needs at least 2 points along every axis, got {(nx, ny, nz)}")
    return _generate(default_geometry((nx, ny, nz)), steps, seed, progress)


def _generate(
    geometry: Geometry, steps: int, seed: int, progress: ProgressCallback | None
) -> Iterator[tuple[float, dict[str, np.ndarray]]]:
    rng = np.random.default_rng(seed)
    flow = _Flow(geometry, rng)
    scalars = _InitialScalars(geometry, rng)
    # Displacement (x, y, z components, metres) from each point back to where its fluid was at time 0.
    displacement = torch.zeros((3, *geometry.shape_zyx), dtype=torch.float32)
    dt = TIME_STEP / SUBSTEPS
    total = SPINUP_SUBSTEPS + (steps - 1) * SUBSTEPS + steps
    done = 0
    time = 0.0
    for n, t_out in enumerate(series_times(steps)):
        todo = SPINUP_SUBSTEPS if n == 0 else SUBSTEPS
        for _ in range(todo):
            displacement = flow.compose(displacement, time, dt)
            time += dt
            done += 1
            if progress is not None:
                progress(done / total, f"stirring (t = {time:.2f} s)")
        arrays = scalars.evaluate(displacement, t_out)
        arrays["velocity"] = np.ascontiguousarray(flow.velocity(t_out).permute(1, 2, 3, 0).numpy())
        done += 1
        if progress is not None:
            progress(done / total, f"step {n + 1} of {steps} (t = {t_out:.2f} s)")
        yield t_out, arrays


def _check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_SERIES_STEPS:
        raise SettingsError(f"steps must be an integer in [1, {MAX_SERIES_STEPS}], got {steps!r}")


class _Flow:
    """The kinematic-simulation velocity: divergence-free Fourier modes, each turning at its own frequency."""

    def __init__(self, geometry: Geometry, rng: np.random.Generator) -> None:
        self.geometry = geometry
        nz, ny, nx = geometry.shape_zyx
        self.periods = tuple(n * h for n, h in zip((nx, ny, nz), geometry.spacing, strict=True))
        r = np.arange(-K_MAX, K_MAX + 1)
        mz, my, mx = (a.reshape(-1) for a in np.meshgrid(r, r, np.arange(K_MAX + 1), indexing="ij"))
        m = np.stack([mx, my, mz], axis=1).astype(np.float64)  # mode numbers, x y z
        k_norm = np.linalg.norm(m, axis=1)
        # Half the wave vectors (mx >= 0) suffice for a real field; drop the mean and beyond K_MAX.
        keep = (k_norm >= 1) & (k_norm <= K_MAX) & ((mx > 0) | (my > 0) | ((my == 0) & (mz > 0)))
        m, k_norm = m[keep], k_norm[keep]
        # Every draw happens for every mode whatever the grid, so a coarser grid gets the same flow, low-passed.
        spectrum = k_norm**4 / (1.0 + (k_norm / K_PEAK) ** 2) ** (17.0 / 6.0) * np.exp(-((k_norm / K_CUT) ** 2))
        amplitude = np.sqrt(spectrum / (4 * np.pi * k_norm**2))
        vectors = rng.standard_normal((len(m), 3)) + 1j * rng.standard_normal((len(m), 3))
        wave = m / np.asarray(self.periods)  # cycles per metre; only the direction matters for the projection
        unit = wave / np.linalg.norm(wave, axis=1, keepdims=True)
        vectors -= unit * np.sum(vectors * unit, axis=1, keepdims=True)  # divergence-free: amplitude _|_ k
        vectors *= amplitude[:, None]
        self.omega = 2 * np.pi * FREQUENCY * k_norm ** (2.0 / 3.0) * rng.uniform(0.5, 1.5, len(m))
        # Scale so one component's RMS over the box is U_RMS for the full mode set (a real field of modes
        # 2 Re(a e^{ik.x}) has mean square 2 |a|^2 per mode).
        vectors *= U_RMS / math.sqrt(2.0 * np.sum(np.abs(vectors) ** 2) / 3.0)
        # Modes this grid resolves (strictly below its Nyquist number on every axis).
        limits = np.array([(n - 1) // 2 for n in (nx, ny, nz)])
        resolved = np.all(np.abs(m) <= limits, axis=1)
        # irfftn keeps only the real part of the mx = 0 plane's modes (their mirror images are not in the half
        # spectrum), half of the 2 Re(.) the others give: double them.
        self.vectors = vectors[resolved] * np.where(m[resolved, 0] == 0, 2.0, 1.0)[:, None]
        self.omega = self.omega[resolved]
        mi = m[resolved].astype(np.int64)
        self.index = (mi[:, 2] % nz, mi[:, 1] % ny, mi[:, 0])
        self.half_x = nx // 2 + 1
        self.scale = float(nx * ny * nz)  # irfftn divides by the point count (and adds the mirror modes)

    def velocity(self, time: float) -> torch.Tensor:
        """(3, z, y, x) float32 velocity on the grid at this time."""
        nz, ny, nx = self.geometry.shape_zyx
        spectrum = np.zeros((3, nz, ny, self.half_x), dtype=np.complex128)
        turned = self.vectors * np.exp(1j * self.omega * time)[:, None]
        iz, iy, ix = self.index
        for c in range(3):
            spectrum[c, iz, iy, ix] = turned[:, c]
        spectrum = torch.from_numpy(spectrum.astype(np.complex64))
        field = torch.fft.irfftn(spectrum, s=(nz, ny, nx), dim=(1, 2, 3))
        return field.mul_(self.scale).contiguous()

    def compose(self, displacement: torch.Tensor, time: float, dt: float) -> torch.Tensor:
        """The displacement map after one backward semi-Lagrangian sub-step from time to time + dt."""
        step = self.velocity(time + 0.5 * dt).mul_(dt)
        return step.add_(_sample(displacement, step, self.geometry))


def _sample(field: torch.Tensor, offset: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """field (C, z, y, x) read trilinearly at each grid point minus offset (3, z, y, x; x, y, z metres):
    periodic in x and y, clamped to the edge in z."""
    nz, ny, nx = geometry.shape_zyx
    hx, hy, hz = geometry.spacing
    # One wrapped plane more along x and y, so that a point between the last plane and the first interpolates.
    padded = torch.cat([field, field[:, :, :1]], dim=2)
    padded = torch.cat([padded, padded[:, :, :, :1]], dim=3)
    ix = torch.arange(nx, dtype=torch.float32).view(1, 1, nx)
    iy = torch.arange(ny, dtype=torch.float32).view(1, ny, 1)
    iz = torch.arange(nz, dtype=torch.float32).view(nz, 1, 1)
    fx = torch.remainder(ix - offset[0] / hx, nx)
    fy = torch.remainder(iy - offset[1] / hy, ny)
    fz = (iz - offset[2] / hz).clamp_(0, nz - 1)
    # grid_sample's normalised coordinates with align_corners: -1 and 1 are the first and last planes.
    where = torch.stack([fx * (2.0 / nx) - 1, fy * (2.0 / ny) - 1, fz * (2.0 / max(nz - 1, 1)) - 1], dim=-1)
    sampled = F.grid_sample(padded.unsqueeze(0), where.unsqueeze(0), mode="bilinear", padding_mode="border",
                            align_corners=True)
    return sampled[0]


class _InitialScalars:
    """Density and temperature at time 0, as functions of position, evaluated where each point's fluid began."""

    def __init__(self, geometry: Geometry, rng: np.random.Generator) -> None:
        nz, ny, nx = geometry.shape_zyx
        hx, hy, hz = geometry.spacing
        self.geometry = geometry
        self.periods = (nx * hx, ny * hy, nz * hz)
        self.height = 0.5 * (nz - 1) * hz
        # Interface height: sine modes over (x, y) with random phases, amplitude falling as 1 / k.
        self.modes = []
        for _ in range(INTERFACE_MODES * 2):
            kx, ky = (int(k) for k in rng.integers(0, INTERFACE_MODES + 1, size=2))
            if kx == ky == 0:
                kx = 1
            amplitude = float(0.03 * self.periods[2] / math.hypot(kx, ky) * rng.uniform(0.5, 1.0))
            self.modes.append((kx, ky, amplitude, float(rng.uniform(0, 2 * np.pi))))
        # Hot pockets: periodic bumps in x and y (von Mises), Gaussian in z.
        self.pockets = []
        for _ in range(HOT_POCKETS):
            centre = rng.uniform(0.0, 1.0, 3) * np.asarray(self.periods)
            centre[2] = rng.uniform(0.15, 0.85) * (nz - 1) * hz
            radius = float(rng.uniform(0.07, 0.14))
            self.pockets.append((centre, radius, float(rng.uniform(*POCKET_EXCESS))))

    def evaluate(self, displacement: torch.Tensor, time: float) -> dict[str, np.ndarray]:
        nz, ny, nx = self.geometry.shape_zyx
        hx, hy, hz = self.geometry.spacing
        x = (torch.arange(nx, dtype=torch.float32) * hx).view(1, 1, nx) - displacement[0]
        y = (torch.arange(ny, dtype=torch.float32) * hy).view(1, ny, 1) - displacement[1]
        z = (torch.arange(nz, dtype=torch.float32) * hz).view(nz, 1, 1) - displacement[2]
        lx, ly, lz = self.periods
        height = torch.full_like(x, self.height)
        for kx, ky, amplitude, phase in self.modes:
            height += amplitude * torch.sin(2 * np.pi * (kx * x / lx + ky * y / ly) + phase)
        # 0.5 (1 - tanh): heavy below the interface, light above.
        density = torch.tanh((z - height) / INTERFACE_WIDTH).mul_(-0.5 * (DENSITY_HEAVY - DENSITY_LIGHT))
        density += 0.5 * (DENSITY_HEAVY + DENSITY_LIGHT)
        temperature = AMBIENT_TEMPERATURE + STRATIFICATION * (0.5 - z / lz)
        cooling = math.exp(-time / COOLING_TIME)
        for (cx, cy, cz), radius, excess in self.pockets:
            # kappa (cos(2 pi s / L) - 1) ~ -s^2 / (2 r^2) near the centre, with kappa = (L / (2 pi r))^2.
            bump = (lx / (2 * np.pi * radius)) ** 2 * (torch.cos(2 * np.pi * (x - cx) / lx) - 1)
            bump += (ly / (2 * np.pi * radius)) ** 2 * (torch.cos(2 * np.pi * (y - cy) / ly) - 1)
            bump -= (z - cz).square() / (2 * radius**2)
            temperature += (excess * cooling) * torch.exp(bump)
        return {"density": density.numpy().astype(np.float32, copy=False),
                "temperature": temperature.numpy().astype(np.float32, copy=False)}


def write_generated_series(
    path: str | os.PathLike,
    shape: tuple[int, int, int] = DEFAULT_SERIES_SHAPE,
    steps: int = DEFAULT_SERIES_STEPS,
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> Geometry:
    """Generate the series and write it as path (.pvd) plus one .vti per step (srnvtk.series.write_series:
    all or nothing); returns its geometry. Needs VTK."""
    from .series import write_series

    geometry = default_geometry(_check_shape(shape))

    def generation(fraction: float, message: str) -> None:
        if progress is not None:
            progress(fraction * steps / (steps + 1), message)

    series = generate_series(shape, steps, seed, generation)
    write_series(path, geometry, series_times(steps), (arrays for _time, arrays in series))
    if progress is not None:
        progress(1.0, f"wrote {path}")
    return geometry
