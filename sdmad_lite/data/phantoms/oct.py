"""Retinal OCT B-scan phantoms (through the fovea) and the OCT sign primitives.

A B-scan is a stack of retinal layers, each a band between two boundary curves that depend
only on the column. The anatomy is therefore a list of per-column *thickness* arrays,
stacked upwards from Bruch's membrane (the fixed reference) and downwards into the choroid.
Structural signs change the thicknesses (fluid under the retina, material under the RPE,
a thickened retina); local signs paint into the reflectivity map (cysts, bright foci).
Display is log-like: reflectivity in ``[0, 1]`` plus speckle, as in OCT2017, whose wide
scans were resized to square images.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .primitives import F32, Frame, Scene, SignDrawer, blur, bump, full_mask, pixel_grid, smooth_noise, smoothstep, white_noise

# Layers above Bruch's membrane, bottom to top, with their display reflectivity.
LAYERS_UP = ("deposit", "rpe", "shrm", "fluid", "iz", "ez", "myoid", "elm", "onl", "opl", "inl", "ipl", "gcl", "nfl")
REFLECT = dict(vitreous=0.04, nfl=0.78, gcl=0.45, ipl=0.56, inl=0.24, opl=0.52, onl=0.17, elm=0.42, myoid=0.22,
               ez=0.78, iz=0.40, fluid=0.02, shrm=0.82, rpe=0.95, deposit=0.55, choroid=0.50, sclera=0.50)
ORDER = ("vitreous",) + LAYERS_UP[::-1] + ("choroid", "sclera")  # top to bottom
LUT = np.array([REFLECT[k] for k in ORDER], F32)
OUTER = ("iz", "ez", "myoid", "elm")  # photoreceptor complex: rides on the RPE


def _cols(size: int) -> np.ndarray:
    return pixel_grid(size)[1][0].copy()  # u of each column


def sample_anatomy(rng: np.random.Generator, size: int) -> tuple[Frame, dict]:
    """One eye: retina position, tilt, curvature, foveal pit, layer thicknesses, contrast."""
    u = _cols(size)
    uf = float(rng.uniform(-0.25, 0.25))
    pit_w = float(rng.uniform(0.11, 0.16))
    g = np.exp(-(((u - uf) / pit_w) ** 2)).astype(F32)  # foveal weight
    nasal = float(rng.choice([-1, 1]))
    bruch = (float(rng.uniform(-0.05, 0.35)) + float(rng.uniform(-0.22, 0.22)) * u
             + float(rng.uniform(-0.15, 0.35)) * u * u).astype(F32)
    inner = F32(rng.uniform(1.1, 1.45)) * (1 - F32(rng.uniform(0.88, 0.97)) * g)
    nfl_side = 1 + 0.8 * np.clip(nasal * (u - uf), 0, 1) / 1.0
    t = {
        "deposit": np.zeros_like(u), "rpe": np.full_like(u, rng.uniform(0.028, 0.036)),
        "shrm": np.zeros_like(u), "fluid": np.zeros_like(u),
        "iz": np.full_like(u, 0.016), "ez": np.full_like(u, 0.014) + F32(0.006) * g, "myoid": np.full_like(u, 0.012),
        "elm": np.full_like(u, 0.008), "onl": (F32(rng.uniform(0.055, 0.075)) + F32(0.06) * g).astype(F32),
        "opl": F32(0.022) * inner, "inl": F32(0.035) * inner, "ipl": F32(0.035) * inner,
        "gcl": F32(0.03) * inner * (1 + F32(0.5) * np.exp(-(((np.abs(u - uf) - 0.2) / 0.12) ** 2))),
        "nfl": (F32(0.012) + F32(0.035) * nfl_side * (1 - g)) * inner,
    }
    t = {k: np.asarray(x, F32) for k, x in t.items()}
    wedge = float(rng.uniform(0, 1)) < 0.35
    a = dict(
        u=u, bruch=bruch, thick=t, uf=uf, pit_w=pit_w, g=g,
        choroid=(F32(rng.uniform(0.14, 0.24)) * (1 + F32(0.2) * np.cos(F32(3) * u + F32(rng.uniform(0, 6))))).astype(F32),
        deposit_tex=0.0, shrm_tex=0.0,
        gain=float(rng.uniform(0.8, 1.15)), offset=float(rng.uniform(-0.05, 0.05)), gamma=float(rng.uniform(0.8, 1.2)),
        speckle=float(rng.uniform(0.2, 0.3)), floor_sd=float(rng.uniform(0.04, 0.08)),
        depth_decay=float(rng.uniform(0.25, 0.45)),
        shadows=[(float(rng.uniform(-1, 1)), float(rng.uniform(0.006, 0.015)), float(rng.uniform(0.2, 0.5)))
                 for _ in range(int(rng.integers(2, 7)))],
        wedge=(float(rng.choice([-1, 1])) * float(rng.uniform(0.06, 0.16)), float(rng.uniform(0.85, 1.0))) if wedge else None,
    )
    return Frame(size), a


def boundaries(a: dict) -> dict[str, np.ndarray]:
    """Top boundary (``v``) of every layer, per column, stacked up from Bruch's membrane."""
    top = {}
    level = a["bruch"].copy()
    for k in LAYERS_UP:
        level = level - a["thick"][k]
        top[k] = level
    top["choroid"] = a["bruch"]
    top["sclera"] = a["bruch"] + a["choroid"]
    return top


def _lift(a: dict, h: np.ndarray, below: str, keep_ilm: float = 0.97) -> None:
    """Make room of height ``h`` below layer ``below``: the photoreceptor complex rides up and
    the outer nuclear layer (then the inner layers) is compressed, so the inner surface bulges
    only a little (``1 - keep_ilm`` of ``h``, more where the compression runs out)."""
    t = a["thick"]
    t[below] = t[below] + h.astype(F32)
    absorb = keep_ilm * h
    for k, floor in (("onl", 0.15), ("opl", 0.5), ("inl", 0.5)):
        take = np.minimum(absorb, t[k] * (1 - floor))
        t[k] = (t[k] - take).astype(F32)
        absorb = absorb - take


def _dome(u: np.ndarray, c: float, w: float, h: float, p: float = 1.5) -> np.ndarray:
    return (F32(h) * np.clip(1 - ((u - F32(c)) / F32(w)) ** 2, 0, 1) ** F32(p)).astype(F32)


def _column_mask(s: Scene, cols: np.ndarray, top: np.ndarray, bottom: np.ndarray, pad: float = 0.0) -> np.ndarray:
    """Pixels of columns ``cols`` between the curves ``top`` and ``bottom`` (``v``)."""
    y, _ = pixel_grid(s.size)
    return cols[None, :] & (y >= (top - pad)[None, :]) & (y <= (bottom + pad)[None, :])


def _mask_after(s: Scene, cols: np.ndarray, top: str, bottom: str) -> Callable[[], np.ndarray]:
    """A structural sign's mask, computed once every structural sign is drawn (a later one can lift it):
    columns ``cols`` between the top boundaries of layers ``top`` and ``bottom`` as they end up. The signs
    under the retina start at ``elm``, the top of the photoreceptor complex that rides on them;
    ``bottom="choroid"`` is Bruch's membrane."""
    def mask() -> np.ndarray:
        b = boundaries(s.anat)
        return _column_mask(s, cols, b[top], b[bottom])
    return mask


def _near_fovea(a: dict, rng: np.random.Generator, spread: float = 0.15) -> float:
    return float(np.clip(a["uf"] + rng.normal(0, spread), -0.8, 0.8))


# ---------------------------------------------------------------------------------------
# Structural signs
# ---------------------------------------------------------------------------------------
def subretinal_fluid(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    a, u = s.anat, s.anat["u"]
    h = _dome(u, _near_fovea(a, rng, 0.08), float(rng.uniform(0.18, 0.32)), 0.09 * min(k, 1.6) + 0.03, 1.2)
    _lift(a, h, "fluid")
    return _mask_after(s, h > s.frame.px * 0.5, "elm", "shrm")


def fibrovascular_ped(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    a, u = s.anat, s.anat["u"]
    c, w = _near_fovea(a, rng, 0.1), float(rng.uniform(0.14, 0.24))
    irregular = 1 + 0.25 * np.sin(u * F32(rng.uniform(25, 40)) + F32(rng.uniform(0, 6)))
    h = _dome(u, c, w, (0.15 * min(k, 1.6) + 0.06), 0.8) * irregular.astype(F32)
    _lift(a, h, "deposit")
    a["deposit_tex"] = max(a["deposit_tex"], 0.25)
    return _mask_after(s, h > s.frame.px * 0.5, "elm", "choroid")


def sub_rpe_deposits(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    a, u = s.anat, s.anat["u"]
    h = np.zeros_like(u)
    for _ in range(int(rng.integers(3, 7))):
        h = np.maximum(h, _dome(u, _near_fovea(a, rng, 0.2), float(rng.uniform(0.05, 0.09)),
                                max(float(rng.uniform(0.06, 0.1)) * min(k, 1.6), 1.5 * s.frame.px), 0.8))
    _lift(a, h, "deposit")
    return _mask_after(s, h > s.frame.px * 0.5, "elm", "choroid")


def rpe_undulation(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    a, u = s.anat, s.anat["u"]
    c, w = _near_fovea(a, rng, 0.15), float(rng.uniform(0.2, 0.35))
    f = F32(rng.uniform(35, 55))
    wave = np.maximum(np.sin(f * u + F32(rng.uniform(0, 6))), 0) ** 2
    h = (F32(max(0.04 * min(k, 1.6) + 0.01, 1.2 * s.frame.px)) * wave * _dome(u, c, w, 1.0, 0.5)).astype(F32)
    _lift(a, h, "deposit")  # the RPE itself is folded up over tiny deposits
    return _mask_after(s, h > s.frame.px * 0.3, "elm", "choroid")


def subretinal_hyperreflective_material(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    a, u = s.anat, s.anat["u"]
    c, w = _near_fovea(a, rng, 0.08), float(rng.uniform(0.08, 0.14))
    lumpy = 1 + 0.3 * np.sin(u * F32(rng.uniform(40, 70)) + F32(rng.uniform(0, 6)))
    h = _dome(u, c, w, 0.08 * min(k, 1.6) + 0.03, 0.7) * lumpy.astype(F32)
    _lift(a, h, "shrm")
    a["shrm_tex"] = 0.3
    return _mask_after(s, h > s.frame.px * 0.5, "elm", "rpe")


def retinal_thickening(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    a, u = s.anat, s.anat["u"]
    w = float(rng.uniform(0.3, 0.5))
    prof = _dome(u, a["uf"] + float(rng.normal(0, 0.05)), w, 1.0, 1.0)
    t = a["thick"]
    gain = 1.4 * min(k, 1.6)
    before = boundaries(a)["nfl"]
    t["inl"] = t["inl"] + F32(0.05 * gain) * prof
    t["opl"] = t["opl"] + F32(0.02 * gain) * prof
    t["onl"] = t["onl"] + F32(0.05 * gain) * prof * (1 - a["g"] * F32(0.5))
    t["ipl"] = t["ipl"] + F32(0.02 * gain) * prof * a["g"]  # the foveal pit fills in
    b = boundaries(a)
    return _mask_after(s, (before - b["nfl"]) > s.frame.px * 0.5, "nfl", "choroid")


# ---------------------------------------------------------------------------------------
# Anatomy -> reflectivity -> display
# ---------------------------------------------------------------------------------------
def draw_anatomy(s: Scene) -> None:
    a, n = s.anat, s.size
    y, _ = pixel_grid(n)
    b = boundaries(a)
    idx = np.zeros((n, n), np.uint8)
    for name in ORDER[1:]:
        idx += y > b[name][None, :]
    R = LUT[idx]
    rng = np.random.default_rng([s.seed, 23])
    # Horizontally elongated texture in the layers; vessels and stroma in the choroid.
    tex = smooth_noise(rng, (n, n), (max(4, n // 6), max(3, n // 24)))
    below = np.clip((y - a["bruch"][None, :]) / np.maximum(a["choroid"], 0.05)[None, :], 0, 3)
    chor = idx >= ORDER.index("choroid")
    vessels = smooth_noise(rng, (n, n), (max(4, n // 14), max(4, n // 12)))
    R = R * (F32(1) + F32(0.12) * tex)
    R = np.where(chor, R * (F32(0.75) + F32(0.45) * smoothstep(vessels, -0.4, 0.6)) * np.exp(-F32(a["depth_decay"] * 4.0) * below), R)
    for name, amp in (("deposit", a["deposit_tex"]), ("shrm", a["shrm_tex"])):
        if amp:
            R = np.where(idx == ORDER.index(name), R * (F32(1) + F32(2 * amp) * tex), R)
    # Shadows of the large retinal vessels, cast through the outer retina.
    col = np.ones(n, F32)
    for c, w, d in a["shadows"]:
        col -= F32(d) * bump(a["u"] - F32(c), w)
    R = np.where(y > b["ipl"][None, :], R * np.clip(col, 0.3, 1)[None, :], R)
    s.layers.update(R=R, idx=idx)
    s.sites["boundaries"] = b


def compose(s: Scene, rng: np.random.Generator, noise: float) -> np.ndarray:
    a, n = s.anat, s.size
    R = blur(s.layers["R"], (0.6 * n / 224, 0.4 * n / 224))
    R = np.clip(R * F32(a["gain"]) + F32(a["offset"]), 0, 1) ** F32(a["gamma"])
    n1, n2 = white_noise(rng, n), white_noise(rng, n)
    img = R * (F32(1) + F32(a["speckle"] * noise) * n1) + F32(a["floor_sd"] * noise) * np.abs(n2) * F32(0.8)
    if a["wedge"] is not None:  # registration borders of OCT2017: white where the scan was rotated
        slope, h = a["wedge"]
        y, x = pixel_grid(n)
        img = np.where(np.abs(y - F32(slope) * x) > F32(h) + F32(abs(slope)), F32(1.0), img)
    return img


# ---------------------------------------------------------------------------------------
# Local signs
# ---------------------------------------------------------------------------------------
def intraretinal_cysts(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    a, b = s.anat, s.sites["boundaries"]
    m = np.zeros((s.size, s.size), bool)
    cols = a["u"]
    for _ in range(int(rng.integers(4, 9))):
        cu = _near_fovea(a, rng, 0.12)
        j = int(np.clip(np.searchsorted(cols, cu), 0, s.size - 1))
        top, bot = float(b["inl"][j]), float(b["elm"][j])
        rv = max(0.5 * (bot - top) * float(rng.uniform(0.6, 1.0)), 1.2 * s.frame.px)
        cv = float(rng.uniform(top + rv * 0.8, max(top + rv, bot - rv * 0.8)))
        ru = rv * float(rng.uniform(0.9, 1.8))
        p = s.frame.box_around(cu, cv, ru, rv)
        u, v = s.frame.uv(p)
        d = np.sqrt(((u - F32(cu)) / F32(ru)) ** 2 + ((v - F32(cv)) / F32(rv)) ** 2)
        inside = smoothstep(d, 1.05, 0.8)
        R = s.layers["R"]
        R[p] = R[p] * (1 - inside * F32(min(1.0, 0.95 * k))) + F32(0.25) * bump(d - 1.0, 0.15) * F32(min(k, 1.5))
        m |= full_mask(s.size, p, d < 1.15)
    return m


def hyperreflective_foci(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    a, b = s.anat, s.sites["boundaries"]
    m = np.zeros((s.size, s.size), bool)
    cols = a["u"]
    r = max(0.018, 1.2 * s.frame.px)
    for _ in range(int(rng.integers(5, 12))):
        cu = _near_fovea(a, rng, 0.25)
        j = int(np.clip(np.searchsorted(cols, cu), 0, s.size - 1))
        top, bot = float(b["ipl"][j]), float(b["elm"][j])
        cv = float(rng.uniform(top, max(top + 1e-3, bot)))
        p = s.frame.box_around(cu, cv, 2.5 * r)
        u, v = s.frame.uv(p)
        d = np.sqrt((u - F32(cu)) ** 2 + (v - F32(cv)) ** 2) / F32(r)
        R = s.layers["R"]
        R[p] = np.maximum(R[p], F32(min(1.0, 0.95 * k)) * smoothstep(d, 1.3, 0.6))
        m |= full_mask(s.size, p, d < 1.4)
    return m


SIGNS: dict[str, SignDrawer] = {
    f.__name__: SignDrawer(f.__name__, f, stage)
    for f, stage in [
        (subretinal_hyperreflective_material, "structural"),
        (fibrovascular_ped, "structural"),
        (subretinal_fluid, "structural"),
        (intraretinal_cysts, "local"),
        (retinal_thickening, "structural"),
        (hyperreflective_foci, "local"),
        (rpe_undulation, "structural"),
        (sub_rpe_deposits, "structural"),
    ]
}
