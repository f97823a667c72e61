"""Drawing primitives shared by the phantom renderers.

Everything here is vectorised NumPy on ``float32`` images. A phantom is drawn in *patient
coordinates* ``(u, v)``: ``u`` runs left to right and ``v`` top to bottom, both roughly in
``[-1, 1]``. A :class:`Frame` maps pixels to patient coordinates with a per-patient scale,
shift and rotation, so that one anatomy description gives every patient a different pose.
Signs draw only inside the pixel bounding box of their region (:meth:`Frame.box`), which
keeps a phantom at a few milliseconds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from ...seeding import rng as derive

F32 = np.float32
Patch = tuple[slice, slice]


# ---------------------------------------------------------------------------------------
# Pixel grids and the patient frame
# ---------------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(y, x)`` scaled to ``[-1, 1]`` (read-only, cached)."""
    c = ((np.arange(size, dtype=F32) + 0.5) / size * 2.0 - 1.0).astype(F32)
    y, x = np.meshgrid(c, c, indexing="ij")
    y.setflags(write=False)
    x.setflags(write=False)
    return y, x


@dataclass
class Frame:
    """Affine map from pixels to patient coordinates: ``(u, v) = R(angle) @ ((x, y) - centre) / scale``.

    ``aspect`` stretches ``u`` (``u`` is divided by it), e.g. to mimic a wide OCT scan
    squeezed into a square image.
    """

    size: int
    cx: float = 0.0
    cy: float = 0.0
    scale: float = 1.0
    angle: float = 0.0  # radians
    aspect: float = 1.0
    _uv: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def uv(self, patch: Patch | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Patient coordinates of every pixel (or of a patch)."""
        if self._uv is None:
            y, x = pixel_grid(self.size)
            ca, sa = math.cos(self.angle), math.sin(self.angle)
            xs = (x - F32(self.cx)) / F32(self.scale)
            ys = (y - F32(self.cy)) / F32(self.scale)
            u = (F32(ca) * xs + F32(sa) * ys) / F32(self.aspect)
            v = F32(-sa) * xs + F32(ca) * ys
            self._uv = (u.astype(F32), v.astype(F32))
        if patch is None:
            return self._uv
        return self._uv[0][patch], self._uv[1][patch]

    def to_pixel(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel (row, col) of patient points (floating point)."""
        u = np.asarray(u, dtype=float) * self.aspect
        v = np.asarray(v, dtype=float)
        ca, sa = math.cos(self.angle), math.sin(self.angle)
        xs = ca * u - sa * v
        ys = sa * u + ca * v
        x = xs * self.scale + self.cx
        y = ys * self.scale + self.cy
        return (y + 1.0) * self.size / 2.0 - 0.5, (x + 1.0) * self.size / 2.0 - 0.5

    def box(self, u0: float, u1: float, v0: float, v1: float, pad: int = 2) -> Patch:
        """Pixel slices covering the patient rectangle ``[u0, u1] x [v0, v1]`` (plus ``pad``)."""
        r, c = self.to_pixel(np.array([u0, u1, u0, u1]), np.array([v0, v0, v1, v1]))
        n = self.size
        r0 = int(np.clip(math.floor(r.min()) - pad, 0, n))
        r1 = int(np.clip(math.ceil(r.max()) + pad + 1, 0, n))
        c0 = int(np.clip(math.floor(c.min()) - pad, 0, n))
        c1 = int(np.clip(math.ceil(c.max()) + pad + 1, 0, n))
        return slice(r0, max(r0, r1)), slice(c0, max(c0, c1))

    def box_around(self, cu: float, cv: float, ru: float, rv: float | None = None, pad: int = 2) -> Patch:
        rv = ru if rv is None else rv
        return self.box(cu - ru, cu + ru, cv - rv, cv + rv, pad)

    @property
    def px(self) -> float:
        """Size of one pixel in patient units."""
        return 2.0 / (self.size * self.scale)


# ---------------------------------------------------------------------------------------
# Shapes (return float maps; <= 1 inside) and soft edges
# ---------------------------------------------------------------------------------------
def ellipse_d(u: np.ndarray, v: np.ndarray, cu: float, cv: float, ru: float, rv: float, angle: float = 0.0) -> np.ndarray:
    """Normalised elliptic radius: 1 on the outline, < 1 inside."""
    du, dv = u - F32(cu), v - F32(cv)
    if angle:
        ca, sa = F32(math.cos(angle)), F32(math.sin(angle))
        du, dv = ca * du + sa * dv, -sa * du + ca * dv
    return np.sqrt((du / F32(ru)) ** 2 + (dv / F32(rv)) ** 2)


def smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """0 below ``lo``, 1 above ``hi``, a cubic ramp between (works for ``lo > hi`` too)."""
    t = np.subtract(x, F32(lo), dtype=F32)
    t *= F32(1.0 / (hi - lo))
    np.minimum(t, F32(1.0), out=t)
    np.maximum(t, F32(0.0), out=t)
    return t * t * (F32(3.0) - F32(2.0) * t)


def inside(d: np.ndarray, edge: float = 0.08) -> np.ndarray:
    """Soft indicator of ``d < 1`` for a normalised radius ``d`` (``edge``: relative softness)."""
    return smoothstep(d, 1.0 + edge, 1.0 - edge)


def bump(x: np.ndarray, width: float) -> np.ndarray:
    """A smooth bump ``max(0, 1 - (x/width)^2)^2`` (compact Gaussian-like profile)."""
    t = np.clip(F32(1.0) - (x / F32(width)) ** 2, 0.0, 1.0)
    return t * t


# ---------------------------------------------------------------------------------------
# Filters and textures
# ---------------------------------------------------------------------------------------
def blur(img: np.ndarray, sigma: float | tuple[float, float]) -> np.ndarray:
    """Separable Gaussian blur (``sigma`` in pixels, per axis if a pair)."""
    sy, sx = (sigma, sigma) if np.isscalar(sigma) else sigma
    out = img
    if sy > 0.05:
        out = ndi.gaussian_filter1d(out, sy, axis=0, output=F32, truncate=3.0)
    if sx > 0.05:
        out = ndi.gaussian_filter1d(out, sx, axis=1, output=F32, truncate=3.0)
    return out if out is not img else img.copy()


def upsample(low: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of a small float map to ``shape`` (rows, cols)."""
    im = Image.fromarray(np.ascontiguousarray(low, dtype=F32), mode="F")
    return np.asarray(im.resize((shape[1], shape[0]), Image.BICUBIC), dtype=F32)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: tuple[int, int] | int) -> np.ndarray:
    """Zero-mean, unit-ish smooth random field with about ``cells`` blobs per axis."""
    cy, cx = (cells, cells) if isinstance(cells, int) else cells
    low = rng.standard_normal((max(2, cy) + 3, max(2, cx) + 3)).astype(F32)
    big = upsample(low, (shape[0] + 2 * shape[0] // max(2, cy), shape[1] + 2 * shape[1] // max(2, cx)))
    oy, ox = shape[0] // max(2, cy), shape[1] // max(2, cx)
    return big[oy : oy + shape[0], ox : ox + shape[1]]


@lru_cache(maxsize=8)
def _noise_tile(size: int) -> np.ndarray:
    t = np.random.default_rng(20250516).standard_normal((2 * size, 2 * size)).astype(F32)
    t.setflags(write=False)
    return t


def white_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """Unit Gaussian noise, ``size x size``: a random window of a cached tile, randomly flipped.

    Much faster than drawing fresh normals and, for image noise, indistinguishable.
    """
    tile = _noise_tile(size)
    oy, ox, k = rng.integers(0, size), rng.integers(0, size), rng.integers(0, 8)
    w = tile[oy : oy + size, ox : ox + size]
    if k & 1:
        w = w[::-1]
    if k & 2:
        w = w[:, ::-1]
    if k & 4:
        w = w.T
    return w


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Clip a ``[0, 1]`` float image and quantise it to ``uint8``."""
    return (np.clip(img, 0.0, 1.0) * F32(255.0) + F32(0.5)).astype(np.uint8)


# ---------------------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------------------
def full_mask(size: int, patch: Patch, local: np.ndarray) -> np.ndarray:
    """Place a patch-sized boolean mask into a ``size x size`` one."""
    m = np.zeros((size, size), dtype=bool)
    m[patch] = local
    return m


def bbox(mask: np.ndarray) -> list[int] | None:
    """``[x0, y0, x1, y1]`` (inclusive, pixels) of a boolean mask, ``None`` if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return [int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])]


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation with a square of half-width ``radius`` pixels."""
    if radius <= 0:
        return mask.copy()
    return ndi.maximum_filter(mask, size=2 * radius + 1)


# ---------------------------------------------------------------------------------------
# Signs and scenes
# ---------------------------------------------------------------------------------------
@dataclass
class Scene:
    """What a sign function may read and modify while one phantom is drawn.

    ``anat`` holds the anatomy parameters (``structural`` signs change them before the
    anatomy is drawn); ``layers`` holds the named float maps (``local`` signs add to them).
    ``sites`` shares lesion locations between signs of one category (e.g. a mass and its
    lobulated margin), each drawn from its own seeded generator.
    """

    frame: Frame
    anat: dict
    seed: int
    categories: tuple[str, ...] = ()
    drawn: tuple[str, ...] = ()
    layers: dict[str, np.ndarray] = field(default_factory=dict)
    sites: dict[str, object] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.frame.size


SignFn = Callable[[Scene, np.random.Generator, float], np.ndarray]


@dataclass(frozen=True)
class SignDrawer:
    """A sign primitive: ``draw(scene, rng, strength) -> bool mask``.

    ``stage="structural"`` signs change anatomy parameters and run before the anatomy is
    drawn (one may return a function that computes its mask once every structural sign is
    drawn); ``stage="local"`` signs paint into the layers afterwards.
    """

    id: str
    draw: SignFn
    stage: str = "local"


def site(scene: Scene, key: str, sampler: Callable[[np.random.Generator], object]) -> object:
    """A lesion location shared by the signs of one finding, drawn once per phantom.

    The generator depends only on ``(seed, key)``, so a sign lands in the same place whether
    or not its sibling signs are drawn.
    """
    if key not in scene.sites:
        scene.sites[key] = sampler(derive(scene.seed, "site", key))
    return scene.sites[key]
