"""Axial brain MRI phantoms (FLAIR-like contrast) and the brain sign primitives.

The slice is at the level of the lateral ventricles. Coordinates inside the head are
normalised by the head's semi-axes (``x = u / a``, ``y = v / b``; ``rho = 1`` is the brain
surface; the front of the head is at the top). FLAIR contrast: CSF (ventricles, sulci)
dark, grey matter a little brighter than white matter, scalp fat bright, cortical bone
dark, lesions bright. Layers: ``par`` (parenchyma), ``csf`` (CSF fraction inside the brain),
``outer`` (what lies outside the brain) and an over-composited lesion overlay (``P``, ``T``).
"""
from __future__ import annotations

import math

import numpy as np

from .primitives import F32, Frame, Scene, SignDrawer, blur, bump, full_mask, site, smooth_noise, smoothstep, white_noise

GM, WM, DEEP, CSF, FAT, BONE, MARROW = 0.64, 0.44, 0.58, 0.07, 0.78, 0.05, 0.40


def sample_anatomy(rng: np.random.Generator, size: int) -> tuple[Frame, dict]:
    frame = Frame(size, cx=float(rng.normal(0, 0.03)), cy=float(rng.normal(0, 0.03)),
                  scale=float(rng.uniform(0.86, 0.98)), angle=float(rng.normal(0, 0.08)))
    a = dict(
        ax=float(rng.uniform(0.70, 0.80)), by=float(rng.uniform(0.86, 0.95)),
        wobble=rng.normal(0, 0.015, 4).tolist(), wphase=rng.uniform(0, 2 * math.pi, 4).tolist(),
        skull=float(rng.uniform(0.05, 0.07)), scalp=float(rng.uniform(0.04, 0.07)),
        gyri=int(rng.integers(26, 34)), cortex=float(rng.uniform(0.10, 0.13)),
        vent=float(rng.uniform(0.8, 1.1)), vent_y=float(rng.uniform(-0.05, 0.05)),
        shift=0.0, shift_y=0.0, compress={-1: 1.0, 1: 1.0},
        gain=float(rng.uniform(0.85, 1.15)), gamma=float(rng.uniform(0.8, 1.2)),
        gm=GM + float(rng.normal(0, 0.02)), wm=WM + float(rng.normal(0, 0.02)),
        noise_sd=float(rng.uniform(0.025, 0.05)), bias=rng.normal(0, 0.08, 3).tolist(),
    )
    return frame, a


def head_coords(s: Scene, patch=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x, y, rho, theta)``: head-normalised coordinates; ``rho = 1`` on the brain surface."""
    a = s.anat
    u, v = s.frame.uv(patch)
    x, y = u / F32(a["ax"]), v / F32(a["by"])
    th = np.arctan2(y, x)
    r = np.sqrt(x * x + y * y)
    wob = F32(1.0)
    for i, (w, p) in enumerate(zip(a["wobble"], a["wphase"])):
        wob = wob + F32(w) * np.cos(F32(i + 2) * th + F32(p))
    return x, y, r / wob, th


def midline(a: dict, y: np.ndarray) -> np.ndarray:
    """``x`` of the falx at height ``y`` (bowed by mass effect)."""
    if not a["shift"]:
        return np.zeros_like(y)
    return F32(a["shift"]) * np.exp(-(((y - F32(a["shift_y"])) / F32(0.45)) ** 2))


def ventricles_d(a: dict, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Normalised radius of the lateral ventricles (frontal horns, bodies, atria)."""
    out = None
    for side in (-1, 1):
        k = a["vent"] * a["compress"][side]
        ox = side * (0.02 + 0.07 * k ** 0.5)
        xm = x - midline(a, y) * (0.9 if a["compress"][side] == 1.0 else 1.2)
        yy = y - F32(a["vent_y"])
        parts = (
            (ox + side * 0.005, -0.17, 0.05 * k, 0.13, -side * 0.35),
            (ox + side * 0.02, 0.05, 0.04 * k, 0.17, side * 0.12),
            (ox + side * 0.06, 0.26, 0.055 * k, 0.09, side * 0.5),
        )
        for cx, cy, rx, ry, ang in parts:
            d = _ell(xm, yy, cx, cy, rx, ry, ang)
            out = d if out is None else np.minimum(out, d)
    return out


def _ell(x, y, cx, cy, rx, ry, ang):
    dx, dy = x - F32(cx), y - F32(cy)
    ca, sa = F32(math.cos(ang)), F32(math.sin(ang))
    return np.sqrt(((ca * dx + sa * dy) / F32(rx)) ** 2 + ((-sa * dx + ca * dy) / F32(ry)) ** 2)


def _fissure(a: dict, x: np.ndarray, y: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """Interhemispheric fissure: a thin CSF line in front of and behind the ventricles."""
    line = bump(x - midline(a, y), 0.016) * (smoothstep(np.abs(y - F32(a["vent_y"])), 0.3, 0.42))
    return line * (rho < 1.0)


def draw_anatomy(s: Scene) -> None:
    a, n = s.anat, s.size
    x, y, rho, th = head_coords(s)
    rng = np.random.default_rng([s.seed, 31])
    warp = smooth_noise(rng, (n, n), 4)
    depth = np.clip(smooth_noise(rng, (n, n), 6), -1.5, 1.5)
    psi = F32(a["gyri"]) * th + F32(3.0) * warp + F32(4.0) * rho
    c = np.cos(psi)
    ctx = F32(1.0 - a["cortex"])
    # White matter reaches into the gyri (c < 0) and retreats under the sulci (c > 0).
    wm_edge = ctx - F32(0.04) * c + F32(0.02) * depth
    wm = smoothstep(rho, wm_edge + 0.015, wm_edge - 0.015)
    floor = ctx - F32(0.10) + F32(0.05) * depth
    sulci = smoothstep(c, 0.8, 0.97) * smoothstep(rho, floor, floor + 0.03)
    brain = smoothstep(rho, 1.0, 0.98)
    par = F32(a["gm"]) + (F32(a["wm"]) - F32(a["gm"])) * wm
    # Deep grey matter: caudate heads and lentiform nuclei.
    deep = np.zeros_like(x)
    for side in (-1, 1):
        deep = np.maximum(deep, smoothstep(_ell(x, y, side * 0.19, -0.1 + a["vent_y"], 0.06, 0.09, 0), 1.1, 0.9))
        deep = np.maximum(deep, smoothstep(_ell(x, y, side * 0.33, 0.02 + a["vent_y"], 0.06, 0.15, -side * 0.25), 1.1, 0.9))
    par = par + (F32(DEEP) - par) * deep * F32(0.8)
    par = par * (F32(1) + F32(0.03) * smooth_noise(rng, (n, n), max(8, n // 8)))
    vent = smoothstep(ventricles_d(a, x, y), 1.05, 0.9)
    csf = np.clip(np.maximum(np.maximum(sulci, vent), _fissure(a, x, y, rho)), 0, 1)
    # Outside the brain: CSF rim, inner table, diploe, outer table, scalp fat, skin, air.
    sk, sc = a["skull"], a["scalp"]
    outer = np.where(rho < 1.02, F32(CSF), F32(0.0))
    bone = smoothstep(rho, 1.02, 1.03) * smoothstep(rho, 1.02 + sk + 0.01, 1.02 + sk)
    marrow = bump(rho - F32(1.02 + sk / 2), sk * 0.3)
    scalp = smoothstep(rho, 1.02 + sk, 1.03 + sk) * smoothstep(rho, 1.02 + sk + sc + 0.01, 1.02 + sk + sc)
    outer = outer + bone * (F32(BONE) + F32(MARROW) * marrow) + scalp * F32(FAT) * (F32(0.9) + F32(0.1) * warp)
    s.layers.update(par=par, csf=csf, brain=brain, outer=outer, wm=wm, sulci=sulci,
                    P=np.zeros((n, n), F32), T=np.ones((n, n), F32))


def compose(s: Scene, rng: np.random.Generator, noise: float) -> np.ndarray:
    a, L, n = s.anat, s.layers, s.size
    inside = L["par"] * (1 - L["csf"]) + F32(CSF) * L["csf"]
    base = L["brain"] * inside + (1 - L["brain"]) * L["outer"]
    img = L["P"] + L["T"] * base
    img = blur(img, 0.6 * n / 224)
    u, v = s.frame.uv()
    b = a["bias"]
    img = img * F32(a["gain"]) * (F32(1) + F32(b[0]) * u + F32(b[1]) * v + F32(b[2]) * (u * u + v * v))
    sd = F32(a["noise_sd"] * noise)
    n1, n2 = white_noise(rng, n), white_noise(rng, n)
    img = np.sqrt((img + sd * n1) ** 2 + (sd * n2) ** 2)  # Rician magnitude noise
    return np.clip(img, 0, 1) ** F32(a["gamma"])


def paint(s: Scene, patch, value, alpha) -> None:
    """Over-composite ``value`` with opacity ``alpha`` onto the lesion overlay."""
    alpha = np.clip(alpha, 0, 1).astype(F32)
    P, T = s.layers["P"], s.layers["T"]
    P[patch] = alpha * value + (1 - alpha) * P[patch]
    T[patch] = (1 - alpha) * T[patch]


# ---------------------------------------------------------------------------------------
# Placement helpers
# ---------------------------------------------------------------------------------------
def _to_uv(a: dict, x: float, y: float) -> tuple[float, float]:
    return x * a["ax"], y * a["by"]


def _polar_point(rng: np.random.Generator, rho: tuple[float, float], avoid_mid: float = 0.25) -> tuple[float, float]:
    """A point at normalised radius in ``rho`` away from the midline (``x, y``)."""
    for _ in range(50):
        th = float(rng.uniform(-math.pi, math.pi))
        r = float(rng.uniform(*rho))
        x, y = r * math.cos(th), r * math.sin(th)
        if abs(x) > avoid_mid * r:
            return x, y
    return x, y


def _surgery(s: Scene) -> float:
    """Angle of the operated region (shared by post-treatment and craniotomy signs)."""
    return float(site(s, "surgery", lambda r: float(r.uniform(-math.pi, math.pi))))


def _mass(s: Scene) -> tuple[float, float, float]:
    return site(s, "mass", lambda r: (*_polar_point(r, (0.35, 0.55), 0.45), float(r.uniform(0.10, 0.15))))


def _patch_xy(s: Scene, x: float, y: float, rx: float, ry: float | None = None):
    a = s.anat
    cu, cv = _to_uv(a, x, y)
    ry = rx if ry is None else ry
    return s.frame.box_around(cu, cv, rx * a["ax"] * 1.05 + 0.01, ry * a["by"] * 1.05 + 0.01)


def _sector_patch(s: Scene, th0: float, half: float, r0: float, r1: float):
    a = s.anat
    ths = np.linspace(th0 - half, th0 + half, 9)
    xs = np.concatenate([r0 * np.cos(ths), r1 * np.cos(ths)]) * a["ax"]
    ys = np.concatenate([r0 * np.sin(ths), r1 * np.sin(ths)]) * a["by"]
    return s.frame.box(xs.min(), xs.max(), ys.min(), ys.max(), pad=3)


def _angdiff(th: np.ndarray, th0: float) -> np.ndarray:
    return np.angle(np.exp(1j * (th - th0))).astype(F32)


# ---------------------------------------------------------------------------------------
# Structural signs
# ---------------------------------------------------------------------------------------
def ventriculomegaly(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    a = s.anat
    a["vent"] = a["vent"] * (1.45 + 0.3 * min(k, 1.6))
    x, y, _, _ = head_coords(s)
    return ventricles_d(a, x, y) < 1.08


def mass_effect(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    a = s.anat
    mx, my, _ = _mass(s)
    side = 1 if mx > 0 else -1
    x, y, rho, _ = head_coords(s)
    before = (ventricles_d(a, x, y) < 1.08) | (np.abs(x - midline(a, y)) < 0.04)
    a["shift"] = -side * 0.09 * min(k, 1.6)
    a["shift_y"] = my * 0.5
    a["compress"] = {**a["compress"], side: 0.55}
    after = (ventricles_d(a, x, y) < 1.08) | (np.abs(x - midline(a, y)) < 0.04)
    return (before | after) & (rho < 1.0)


# ---------------------------------------------------------------------------------------
# Local signs
# ---------------------------------------------------------------------------------------
def punctate_wm_hyperintensities(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    m = np.zeros((s.size, s.size), bool)
    r = max(0.018, 1.3 * s.frame.px / s.anat["ax"])
    for _ in range(int(rng.integers(5, 12))):
        x, y = _polar_point(rng, (0.35, 0.75), 0.35)
        p = _patch_xy(s, x, y, 2 * r)
        px, py, _, _ = head_coords(s, p)
        d = np.sqrt((px - F32(x)) ** 2 + (py - F32(y)) ** 2) / F32(r * float(rng.uniform(0.8, 1.3)))
        paint(s, p, F32(0.95), F32(min(1.0, 0.9 * k)) * smoothstep(d, 1.2, 0.5))
        m |= full_mask(s.size, p, d < 1.3)
    return m


def periventricular_hyperintensity(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    a = s.anat
    p = _patch_xy(s, 0.0, a["vent_y"] + 0.05, 0.55, 0.65)
    x, y, _, _ = head_coords(s, p)
    d = ventricles_d(a, x, y)
    caps = F32(0.55) + F32(0.45) * smoothstep(np.abs(y - F32(a["vent_y"] + 0.05)), 0.1, 0.25)
    rim = smoothstep(d, 0.95, 1.05) * smoothstep(d, 1.55, 1.25) * caps
    paint(s, p, F32(0.92), F32(min(1.0, 0.85 * k)) * rim)
    return full_mask(s.size, p, rim > 0.1)


def confluent_wm_hyperintensity(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    m = np.zeros((s.size, s.size), bool)
    for _ in range(int(rng.integers(2, 4))):
        x, y = _polar_point(rng, (0.3, 0.6), 0.4)
        r = float(rng.uniform(0.08, 0.13))
        p = _patch_xy(s, x, y, r * 1.3)
        px, py, _, _ = head_coords(s, p)
        d = np.sqrt((px - F32(x)) ** 2 + (py - F32(y)) ** 2) / F32(r)
        blob = np.clip(smoothstep(d, 1.2, 0.4) + F32(0.35) * smooth_noise(rng, d.shape, 3) - F32(0.15), 0, 1)
        paint(s, p, F32(0.9), F32(min(1.0, 0.85 * k)) * blob)
        m |= full_mask(s.size, p, blob > 0.1)
    return m


def _cavity(s: Scene) -> tuple[float, float, float, float]:
    th = _surgery(s)
    return site(s, "cavity", lambda r: (0.68 * math.cos(th), 0.68 * math.sin(th), float(r.uniform(0.12, 0.17)), float(r.uniform(0.08, 0.12))))


def _cavity_d(s: Scene, p) -> np.ndarray:
    cx, cy, rx, ry = _cavity(s)
    x, y, _, _ = head_coords(s, p)
    return _ell(x, y, cx, cy, rx, ry, math.atan2(cy, cx) + math.pi / 2)


def resection_cavity(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    cx, cy, rx, _ = _cavity(s)
    p = _patch_xy(s, cx, cy, rx * 1.1)
    d = _cavity_d(s, p)
    paint(s, p, F32(CSF + 0.03), F32(min(1.0, 0.95 * k)) * smoothstep(d, 1.05, 0.9))
    return full_mask(s.size, p, d < 1.05)


def gliotic_rim(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    cx, cy, rx, _ = _cavity(s)
    p = _patch_xy(s, cx, cy, rx * 1.6)
    d = _cavity_d(s, p)
    irregular = F32(1) + F32(0.5) * smooth_noise(rng, d.shape, 4)
    rim = smoothstep(d, 0.95, 1.05) * smoothstep(d, 1.3 + 0.15 * irregular, 1.1) * np.clip(irregular, 0.2, 1.5)
    paint(s, p, F32(0.9), F32(min(1.0, 0.75 * k)) * rim)
    return full_mask(s.size, p, rim > 0.08)


def skull_defect(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    a = s.anat
    th0, half = _surgery(s), 0.22
    r0, r1 = 1.0, 1.03 + a["skull"] + 0.01
    p = _sector_patch(s, th0, half, r0, r1)
    _, _, rho, th = head_coords(s, p)
    sector = smoothstep(np.abs(_angdiff(th, th0)), half, half - 0.04)
    band = smoothstep(rho, 1.015, 1.025) * smoothstep(rho, 1.03 + a["skull"], 1.02 + a["skull"])
    paint(s, p, F32(0.38), sector * band * F32(min(1.0, k)))
    return full_mask(s.size, p, (sector > 0.1) & (band > 0.1))


def scalp_swelling(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    a = s.anat
    th0, half = _surgery(s), 0.35
    base = 1.02 + a["skull"] + a["scalp"]
    thick = max(0.06 * min(k, 1.6) + 0.02, 2.0 * s.frame.px)
    p = _sector_patch(s, th0, half, base - 0.03, base + thick + 0.02)
    _, _, rho, th = head_coords(s, p)
    prof = np.clip(1 - (_angdiff(th, th0) / F32(half)) ** 2, 0, 1)
    top = F32(base) + F32(thick) * prof
    tissue = smoothstep(rho, base - 0.03, base - 0.02) * smoothstep(rho, top + 0.005, top - 0.005) * (prof > 0)
    paint(s, p, F32(0.6) + F32(0.1) * smooth_noise(rng, rho.shape, 3), tissue)
    return full_mask(s.size, p, tissue > 0.1)


def extra_axial_collection(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    th0, half = _surgery(s) + float(rng.normal(0, 0.15)), float(rng.uniform(0.4, 0.6))
    t0 = 0.045 * min(k, 1.6) + 0.02
    p = _sector_patch(s, th0, half, 1.0 - t0 - 0.02, 1.03)
    _, _, rho, th = head_coords(s, p)
    lens = F32(t0) * np.clip(1 - (_angdiff(th, th0) / F32(half)) ** 2, 0, 1)
    cres = smoothstep(rho, 1.0 - lens - 0.003, 1.0 - lens + 0.003) * smoothstep(rho, 1.025, 1.015) * (lens > 0.004)
    paint(s, p, F32(0.82), cres * F32(min(1.0, 0.9 * k)))
    return full_mask(s.size, p, cres > 0.1)


def space_occupying_lesion(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    x, y, r = _mass(s)
    p = _patch_xy(s, x, y, r * 1.25)
    px, py, _, _ = head_coords(s, p)
    d = np.sqrt((px - F32(x)) ** 2 + (py - F32(y)) ** 2) / F32(r)
    d = d * (F32(1) + F32(0.12) * smooth_noise(rng, d.shape, 3))
    core = F32(0.3) + F32(0.15) * smooth_noise(rng, d.shape, 4)
    val = core + (F32(0.92) - core) * bump(d - F32(0.85), 0.2)
    paint(s, p, val, smoothstep(d, 1.05, 0.92) * F32(min(1.0, 0.95 * k)))
    return full_mask(s.size, p, d < 1.05)


def vasogenic_edema(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    x, y, r = _mass(s)
    R = r * 2.6
    p = _patch_xy(s, x, y, R)
    px, py, rho, _ = head_coords(s, p)
    d = np.sqrt((px - F32(x)) ** 2 + (py - F32(y)) ** 2) / F32(R)
    d = d * (F32(1) + F32(0.25) * smooth_noise(rng, d.shape, 3))
    wm = s.layers["wm"][p]
    ed = smoothstep(d, 1.0, 0.6) * smoothstep(wm, 0.3, 0.9) * (rho < 0.97)  # finger-like: follows the white matter
    paint(s, p, F32(0.85), ed * F32(min(1.0, 0.8 * k)))
    return full_mask(s.size, p, ed > 0.1)


def sulcal_effacement(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    x, y, _ = _mass(s)
    th0, half = math.atan2(y, x) + float(rng.normal(0, 0.2)), float(rng.uniform(0.5, 0.8))
    p = _sector_patch(s, th0, half, 0.7, 1.0)
    _, _, rho, th = head_coords(s, p)
    w = smoothstep(np.abs(_angdiff(th, th0)), half, half * 0.6) * smoothstep(rho, 0.72, 0.8) * smoothstep(rho, 1.0, 0.97)
    w = w * F32(min(1.0, 0.9 * k))
    L = s.layers
    L["csf"][p] = L["csf"][p] * (1 - w * L["sulci"][p])
    mean = F32(0.5 * (s.anat["gm"] + s.anat["wm"]) + 0.03)
    L["par"][p] = L["par"][p] + (mean - L["par"][p]) * w
    return full_mask(s.size, p, w > 0.1)


SIGNS: dict[str, SignDrawer] = {
    f.__name__: SignDrawer(f.__name__, f, stage)
    for f, stage in [
        (punctate_wm_hyperintensities, "local"),
        (periventricular_hyperintensity, "local"),
        (resection_cavity, "local"),
        (gliotic_rim, "local"),
        (skull_defect, "local"),
        (scalp_swelling, "local"),
        (space_occupying_lesion, "local"),
        (mass_effect, "structural"),
        (vasogenic_edema, "local"),
        (ventriculomegaly, "structural"),
        (confluent_wm_hyperintensity, "local"),
        (extra_axial_collection, "local"),
        (sulcal_effacement, "local"),
    ]
}
