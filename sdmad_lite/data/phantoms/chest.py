"""Frontal (PA) chest radiograph phantoms and the chest sign primitives.

The radiograph is drawn as a map of X-ray *attenuation* (higher = whiter) made of additive
layers: soft tissue (``body``), bone (ribs, clavicles, spine), the aerated lungs (``air``,
subtracted), lung vessel markings and the density added by signs (``lesion``). Patient
coordinates: ``u`` left to right of the image (the patient's right lung is on the image
left, ``u < 0``), ``v`` top to bottom. ``side = -1`` is the image-left lung, ``+1`` the
image-right lung (the side of the heart).
"""
from __future__ import annotations

import math

import numpy as np

from .primitives import (
    F32,
    Frame,
    Scene,
    SignDrawer,
    blur,
    bump,
    ellipse_d,
    full_mask,
    inside,
    site,
    smooth_noise,
    smoothstep,
    white_noise,
)


# ---------------------------------------------------------------------------------------
# Anatomy
# ---------------------------------------------------------------------------------------
def sample_anatomy(rng: np.random.Generator, size: int) -> tuple[Frame, dict]:
    """Pose and body habitus of one patient."""
    frame = Frame(
        size,
        cx=float(rng.normal(0, 0.03)),
        cy=float(rng.normal(0.0, 0.03)),
        scale=float(rng.uniform(0.88, 1.0)),
        angle=float(rng.normal(0, 0.035)),
    )
    w = float(rng.uniform(0.78, 0.86))  # half-width of the rib cage
    dome = float(rng.uniform(0.36, 0.50))
    a = dict(
        cage_w=w,
        body_w=w + float(rng.uniform(0.10, 0.22)),
        apex=float(rng.uniform(-0.86, -0.76)),
        widest=float(rng.uniform(-0.15, 0.05)),
        dome={-1: dome, 1: dome + float(rng.uniform(0.02, 0.07))},
        dome_rise=float(rng.uniform(0.20, 0.30)),  # CP angle below the dome top
        shift=0.0,
        heart=dict(
            cu=float(rng.uniform(0.12, 0.17)),
            cv=float(rng.uniform(0.24, 0.30)),
            ru=float(rng.uniform(0.33, 0.37)),
            rv=float(rng.uniform(0.24, 0.27)),
            tilt=float(rng.uniform(-0.45, -0.25)),
            ra_u=float(rng.uniform(-0.12, -0.07)),
            scale=1.0,
            apex_du=0.0,
            apex_dv=0.0,
        ),
        med_w=float(rng.uniform(0.13, 0.17)),
        rib_v0=float(rng.uniform(-0.86, -0.80)),
        rib_s0=float(rng.uniform(0.125, 0.145)),
        rib_rate={-1: 1.0, 1: 1.0},
        rib_crowd_v={-1: 9.0, 1: 9.0},
        hilum_v=float(rng.uniform(-0.12, -0.02)),
        vessel_phase=rng.uniform(0, 2 * math.pi, 6).tolist(),
        vessel_gain=float(rng.uniform(0.8, 1.2)),
        upper_vessels=0.0,
        breast=float(rng.uniform(0, 1)) < 0.45,
        breast_v=float(rng.uniform(0.35, 0.55)),
        gastric=float(rng.uniform(0, 1)) < 0.6,
        air_depth=float(rng.uniform(0.50, 0.62)),
        soft=float(rng.uniform(0.85, 1.1)),
        window=(float(rng.uniform(0.12, 0.28)), float(rng.uniform(1.05, 1.35))),
        gamma=float(rng.uniform(0.8, 1.25)),
        noise_sd=float(rng.uniform(0.012, 0.03)),
        exposure=rng.normal(0, 0.04, 3).tolist(),
        arms=float(rng.uniform(0, 1)) < 0.6,
    )
    return frame, a


def dome_v(a: dict, u: np.ndarray, side: int) -> np.ndarray:
    """Diaphragm dome height (a ``v`` value) under the lung on ``side``, as a function of ``u``."""
    w = a["cage_w"]
    t = np.clip((np.abs(u) - 0.42 * w) / (0.60 * w), -1.0, 1.3)
    return F32(a["dome"][side]) + F32(a["dome_rise"]) * np.maximum(t, 0) ** 2 + F32(0.2) * np.minimum(t, 0) ** 2


def lung_outer(a: dict, v: np.ndarray) -> np.ndarray:
    """Lateral lung border |u| at height ``v`` (rounded apex, widest at ``widest``)."""
    top, mid, w = a["apex"], a["widest"], a["cage_w"]
    t = np.clip((v - F32(top)) / F32(mid - top), 0.0, 1.0)
    return F32(w) * np.sqrt(np.clip(1.0 - (1.0 - t) ** 2, 0.0, 1.0)) * F32(0.97) + F32(0.03 * w)


def heart_d(a: dict, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Normalised radius of the cardiac silhouette: a smooth union of the left ventricle and
    the right atrium, so that the borders run into each other as on a radiograph."""
    h = a["heart"]
    s, du = h["scale"], a["shift"]
    lv = ellipse_d(u, v, h["cu"] + du + 0.05 * (s - 1) + h["apex_du"], h["cv"] + h["apex_dv"],
                   h["ru"] * s * (1 + 0.6 * h["apex_du"]), h["rv"] * (1 + 0.5 * (s - 1)), h["tilt"])
    ra = ellipse_d(u, v, h["ra_u"] + du - 0.2 * (s - 1), h["cv"] - 0.03, 0.18 * (1 + 0.7 * (s - 1)), 0.27)
    k = F32(7.0)
    return -np.log(np.exp(-k * lv) + np.exp(-k * ra)) / k + F32(0.08)


def mediastinum(a: dict, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Soft indicator of the superior mediastinum, aortic knob and heart (central shadow)."""
    du = a["shift"]
    half = F32(a["med_w"]) + F32(0.05) * np.clip(v + 0.3, 0, 1)
    band = smoothstep(np.abs(u - F32(du) - F32(0.015)), half + 0.03, half - 0.03) * smoothstep(v, -1.1, -0.9)
    knob = inside(ellipse_d(u, v, 0.13 + du, -0.33, 0.075, 0.06), 0.15)
    return np.maximum(np.maximum(band, knob), inside(heart_d(a, u, v), 0.05))


def lung_field(a: dict, u: np.ndarray, v: np.ndarray, side: int) -> np.ndarray:
    """Soft indicator of one aerated lung (before the central shadow is removed)."""
    su = u * F32(side)
    outer = lung_outer(a, v)
    lat = smoothstep(su, outer + 0.015, outer - 0.015)
    med = smoothstep(su, 0.04, 0.09)
    apex = F32(a["apex"]) + F32(0.9) * (su - F32(0.36)) ** 2  # rounded apex over the lung
    top = smoothstep(v - apex, -0.02, 0.03)
    bot = smoothstep(v - dome_v(a, u, side), 0.01, -0.02)
    return lat * med * top * bot


def lungs(a: dict, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    med = mediastinum(a, u, v)
    return (lung_field(a, u, v, -1) + lung_field(a, u, v, 1)) * (1 - med)


def rib_phase(a: dict, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Continuous rib index of posterior ribs (integer + 0.5 = the middle of a rib)."""
    au = np.abs(u)
    vp = v + F32(0.05) * au - F32(0.5) * au * au - F32(a["rib_v0"])
    rate = np.where(u < 0, F32(a["rib_rate"][-1]), F32(a["rib_rate"][1]))
    cv = np.where(u < 0, F32(a["rib_crowd_v"][-1]), F32(a["rib_crowd_v"][1]))
    vp = np.where(vp > cv, cv + (vp - cv) * rate, vp)
    g = F32(0.45)
    return np.log1p(g * np.maximum(vp, 0)) / (g * F32(a["rib_s0"]))


def ribs(a: dict, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Posterior ribs (cortical rim brighter), faint anterior ribs, within the rib cage."""
    p = rib_phase(a, u, v)
    f = p - np.floor(p)
    body = bump(f - F32(0.5), 0.24)
    rim = bump(np.abs(f - F32(0.5)) - F32(0.19), 0.05)
    post = (F32(0.5) * body + F32(0.6) * rim) * (p < 10.6) * (p > 0.3)
    au = np.abs(u)
    cage = smoothstep(au, a["cage_w"] + 0.06, a["cage_w"] - 0.02) * smoothstep(au, 0.05, 0.1)
    va = v - F32(0.5) * (F32(a["cage_w"]) - au) - F32(a["rib_v0"]) + F32(0.1)
    fa = va / F32(a["rib_s0"] * 1.3)
    fa = fa - np.floor(fa)
    ant = bump(fa - F32(0.5), 0.22) * smoothstep(au, 0.2, 0.45) * (va > 0) * (va < 0.8)
    return (post + F32(0.45) * ant) * cage


def clavicles(a: dict, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    au = np.abs(u)
    t = np.clip((au - 0.08) / 0.62, 0, 1)
    cv = F32(a["apex"] + 0.09) - F32(0.16) * t + F32(0.035) * np.sin(F32(math.pi) * t)
    return bump(v - cv, 0.045) * smoothstep(au, 0.06, 0.1) * smoothstep(au, 0.78, 0.7)


def spine(a: dict, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vertebral column behind the mediastinum: bodies, end plates and pedicles."""
    x = u - F32(a["shift"] * 0.2)
    col = smoothstep(np.abs(x), 0.085, 0.06)
    f = (v + F32(1.0)) / F32(0.085)
    f = f - np.floor(f)
    plates = bump(f - F32(0.08), 0.08) + bump(f - F32(0.92), 0.08)
    ped = bump(ellipse_d(np.abs(x), f, 0.058, 0.45, 0.018, 0.2), 1.0)
    return col * (F32(0.55) + F32(0.25) * plates) + F32(0.35) * ped


def _pow(x: np.ndarray, k: int) -> np.ndarray:
    """``max(x, 0) ** k`` for k = 4m by repeated squaring (much faster than ``**``)."""
    y = np.maximum(x, F32(0))
    y *= y
    y *= y
    out = y.copy()
    for _ in range(k // 4 - 1):
        out *= y
    return out


def vessels(a: dict, u: np.ndarray, v: np.ndarray, upper: float = 0.0) -> np.ndarray:
    """Branching vascular markings radiating from both hila, tapering to the periphery."""
    out = np.zeros_like(u)
    ph = a["vessel_phase"]
    warp = F32(0.12) * a["vessel_warp"] if a.get("vessel_warp") is not None else F32(0)
    for i, side in enumerate((-1, 1)):
        hu, hv = side * 0.24 + a["shift"] * 0.5, a["hilum_v"]
        du, dv = u - F32(hu), v - F32(hv)
        r = np.sqrt(du * du + dv * dv) + F32(1e-3)
        th = np.arctan2(dv, du * F32(side)) + warp
        lr = np.log(r)
        s1 = np.cos(F32(9.0) * th + F32(2.5) * lr + F32(ph[3 * i]))
        s2 = np.cos(F32(15.0) * th - F32(3.5) * lr + F32(ph[3 * i + 1]))
        s3 = np.cos(F32(23.0) * th + F32(5.0) * lr + F32(ph[3 * i + 2]))
        lines = _pow(s1, 12) + F32(0.8) * _pow(s2, 16) + F32(0.6) * _pow(s3, 20)
        taper = np.exp(-r / F32(0.38))
        w = F32(1.0) + F32(upper) * smoothstep(v, a["hilum_v"] + 0.05, a["hilum_v"] - 0.25)
        out += lines * taper * w * (r > 0.03)
    return out


def draw_anatomy(s: Scene) -> None:
    """Fill ``s.layers`` with the normal chest (after structural signs changed ``s.anat``)."""
    a, n = s.anat, s.size
    u, v = s.frame.uv()
    rng = np.random.default_rng([s.seed, 11])
    au = np.abs(u)
    # Soft tissue: trunk widening from the neck to the shoulders, arms, abdomen, breasts.
    bw = F32(a["body_w"]) + F32(0.05) * np.clip(v, -1, 1) + F32(0.45) * smoothstep(v, -0.45, -0.95)
    trunk = smoothstep(au, bw + 0.03, bw - 0.05)
    if a["arms"]:
        arm = smoothstep(au, bw + 0.05, bw + 0.11) * smoothstep(v, 0.5, 0.1)
        trunk = np.maximum(trunk, F32(0.85) * arm)
    body = trunk * F32(a["soft"]) * (F32(0.85) + F32(0.15) * smoothstep(au, bw, 0.0))
    abdomen = np.where(u < 0, smoothstep(v - dome_v(a, u, -1), -0.02, 0.04), smoothstep(v - dome_v(a, u, 1), -0.02, 0.04))
    body = body + F32(0.15) * abdomen * trunk
    if a["breast"]:
        for side in (-1, 1):
            bd = ellipse_d(u, v, side * 0.5, a["breast_v"], 0.4, 0.26)
            body = body + F32(0.10) * inside(bd, 0.15) * smoothstep(v, a["breast_v"] - 0.15, a["breast_v"] + 0.1)
    med = mediastinum(a, u, v)
    lung = (lung_field(a, u, v, -1) + lung_field(a, u, v, 1)) * (1 - med)
    # Aerated lung: thickest (most lucent) in the mid zones, trachea as an air column.
    depth = F32(a["air_depth"]) * (F32(0.75) + F32(0.25) * smoothstep(np.abs(v - F32(a["widest"])), 0.9, 0.1))
    depth = depth * (F32(0.8) + F32(0.2) * smoothstep(au, 0.85, 0.35))
    trachea = bump(u - F32(a["shift"] * 0.8), 0.04) * smoothstep(v, -0.25, -0.4)
    bronchi = np.zeros_like(u)
    for side in (-1, 1):
        t = np.clip((v + 0.3) / 0.14, 0, 1)
        bronchi += bump(u - F32(a["shift"] * 0.8) - F32(side * 0.11) * t, 0.025) * (v > -0.3) * (v < -0.14)
    tex = smooth_noise(rng, (n, n), max(6, n // 10))
    a["vessel_warp"] = smooth_noise(rng, (n, n), 5)
    s.layers.update(
        body=body + F32(0.03) * tex * trunk,
        bone=F32(0.15) * ribs(a, u, v) * (F32(1) - F32(0.5) * abdomen) + F32(0.22) * clavicles(a, u, v) + F32(0.22) * spine(a, u, v) * med,
        air=lung * depth + F32(0.22) * trachea + F32(0.15) * bronchi,
        lung=lung,
        markings=F32(0.13 * a["vessel_gain"]) * vessels(a, u, v, a["upper_vessels"]) + F32(0.015) * tex,
        lesion=np.zeros((n, n), F32),
        med=med,
    )


def compose(s: Scene, rng: np.random.Generator, noise: float) -> np.ndarray:
    """Attenuation -> display: blur, window, gamma, exposure gradient and quantum noise."""
    a, L, n = s.anat, s.layers, s.size
    d = L["body"] + L["bone"] - L["air"] + L["markings"] * L["lung"] + L["lesion"]
    d = blur(d, 0.7 * n / 224)
    lo, hi = a["window"]
    img = np.clip((d - F32(lo)) / F32(hi - lo), 0, 1) ** F32(a["gamma"])
    u, v = s.frame.uv()
    e = a["exposure"]
    img = img * (F32(1 + e[0]) + F32(e[1]) * u + F32(e[2]) * v)
    return img + F32(a["noise_sd"] * noise) * white_noise(rng, n)


# ---------------------------------------------------------------------------------------
# Helpers for placing signs
# ---------------------------------------------------------------------------------------
def lung_point(a: dict, rng: np.random.Generator, side: int, zone: tuple[float, float] = (0.2, 0.85),
               margin: float = 0.08) -> tuple[float, float]:
    """A point inside the lung on ``side``; ``zone`` is the height range as a fraction apex->dome."""
    top, bot = a["apex"], a["dome"][side]
    v = top + (bot - top) * float(rng.uniform(*zone))
    outer = float(lung_outer(a, np.float32(v))) - margin
    inner = 0.16 + margin
    if v > a["heart"]["cv"] - a["heart"]["rv"] - 0.05:
        inner = (0.28 if side < 0 else 0.46) + margin
    u = side * float(rng.uniform(inner, max(inner + 0.02, outer)))
    return u, v


def _side(scene: Scene, key: str) -> int:
    return int(site(scene, key + ":side", lambda r: int(r.choice([-1, 1]))))


# ---------------------------------------------------------------------------------------
# Structural signs (change the anatomy before it is drawn)
# ---------------------------------------------------------------------------------------
def elevated_hemidiaphragm(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    a = s.anat
    side = _side(s, "atelectasis")
    before = {**a, "dome": dict(a["dome"])}
    a["dome"] = {**a["dome"], side: a["dome"][side] - 0.10 * min(k, 1.6)}
    u, v = s.frame.uv()
    su = u * side
    lo, hi = dome_v(a, u, side), dome_v(before, u, side)
    return (su > 0.04) & (su < a["cage_w"] + 0.02) & (v > lo - 0.02) & (v < hi + 0.02)


def mediastinal_shift(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    a = s.anat
    toward_loss = "Atelectasis" in s.categories and not {"Effusion", "Mass", "Pneumothorax"} & set(s.categories)
    side = _side(s, "atelectasis" if toward_loss else "pleura")
    direction = side if toward_loss else -side
    u, v = s.frame.uv()
    before = mediastinum(a, u, v) > 0.5
    a["shift"] = a["shift"] + direction * 0.075 * min(k, 1.6)
    after = mediastinum(a, u, v) > 0.5
    trachea = (np.abs(u) < 0.2) & (v < -0.1)
    return before | after | trachea


def rib_crowding(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    a = s.anat
    side = _side(s, "atelectasis")
    cv = float(rng.uniform(0.25, 0.45))
    a["rib_rate"] = {**a["rib_rate"], side: 1.0 + 0.35 * min(k, 1.6)}
    a["rib_crowd_v"] = {**a["rib_crowd_v"], side: cv}
    u, v = s.frame.uv()
    au = np.abs(u)
    vp = v + 0.05 * au - 0.5 * au * au - a["rib_v0"]
    return (u * side > 0.03) & (au < a["cage_w"] + 0.08) & (vp > cv - 0.02) & (rib_phase(a, u, v) < 10.8)


def enlarged_cardiac_silhouette(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    a = s.anat
    a["heart"] = {**a["heart"], "scale": 1.0 + 0.3 * min(k, 1.6)}
    u, v = s.frame.uv()
    return heart_d(a, u, v) < 1.04


def displaced_cardiac_apex(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    a = s.anat
    u, v = s.frame.uv()
    before = heart_d(a, u, v) < 1.04
    a["heart"] = {**a["heart"], "apex_du": 0.07 * min(k, 1.6), "apex_dv": 0.06 * min(k, 1.6)}
    after = heart_d(a, u, v) < 1.04
    return (before ^ after) | (after & (u > a["heart"]["cu"] + a["shift"]))


def vascular_redistribution(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    a = s.anat
    a["upper_vessels"] = 1.8 * k
    u, v = s.frame.uv()
    return (lungs(a, u, v) > 0.3) & (v < a["hilum_v"] + 0.03)


# ---------------------------------------------------------------------------------------
# Local signs (paint into the layers after the anatomy)
# ---------------------------------------------------------------------------------------
def _add(s: Scene, patch, density: np.ndarray, key: str = "lesion") -> None:
    s.layers[key][patch] += density


def linear_band_opacity(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    a = s.anat
    side = _side(s, "atelectasis")
    cu, cv = lung_point(a, rng, side, (0.65, 0.8), 0.18)
    length, thick, ang = rng.uniform(0.18, 0.26), rng.uniform(0.016, 0.024), rng.normal(0, 0.15)
    p = s.frame.box_around(cu, cv, length + 0.05)
    u, v = s.frame.uv(p)
    ca, sa = math.cos(ang), math.sin(ang)
    x, y = ca * (u - cu) + sa * (v - cv), -sa * (u - cu) + ca * (v - cv)
    y = y - 0.03 * (x / length) ** 2
    prof = bump(y, thick * 1.6) * smoothstep(np.abs(x), length, length * 0.7)
    _add(s, p, F32(0.32 * k) * prof)
    return full_mask(s.size, p, prof > 0.04)


def costophrenic_blunting(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    a = s.anat
    side = _side(s, "pleura")
    w = a["cage_w"]
    h = 0.12 * min(k, 1.5) + 0.06
    p = s.frame.box(-w - 0.08 if side < 0 else w * 0.35, -w * 0.35 if side < 0 else w + 0.08, 0.1, 1.0)
    u, v = s.frame.uv(p)
    su = u * side
    floor = dome_v(a, u, side)
    cp = a["dome"][side] + a["dome_rise"]
    # Fluid fills the lateral recess up to a level that rises towards the chest wall.
    level = F32(cp - h) + F32(0.9 * h) * (1 - smoothstep(su, w * 0.98, w * 0.55))
    fluid = smoothstep(v - level, -0.01, 0.02) * smoothstep(su, w * 0.45, w * 0.7) * smoothstep(v - floor, 0.06, -0.01)
    fluid = fluid * smoothstep(su, w + 0.05, w)
    _add(s, p, F32(0.55 * min(k, 1.6)) * fluid)
    return full_mask(s.size, p, fluid > 0.1)


def meniscus_opacity(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    a = s.anat
    side = _side(s, "pleura")
    w = a["cage_w"]
    top, dome = a["apex"], a["dome"][side]
    level = dome - (dome - top) * float(rng.uniform(0.18, 0.35)) * min(1.4, 0.6 + 0.4 * k)
    p = s.frame.box(-w - 0.08 if side < 0 else 0.02, -0.02 if side < 0 else w + 0.08, level - 0.25, dome + 0.35)
    u, v = s.frame.uv(p)
    su = u * side
    # Meniscus: the upper border is concave, climbing along the lateral chest wall.
    rim = F32(level) - F32(0.22) * smoothstep(su, w * 0.45, w * 1.0) ** 2
    outer = lung_outer(a, v)
    fluid = smoothstep(v - rim, -0.015, 0.05) * smoothstep(su, 0.06, 0.14) * smoothstep(su, outer + 0.01, outer - 0.03)
    fluid = fluid * smoothstep(v - dome_v(a, u, side), 0.12, 0.0)
    fluid = fluid * (1 - s.layers["med"][p])  # fluid lies beside the heart, not on top of it
    grad = F32(0.45) + F32(0.55) * smoothstep(v - rim, 0.0, 0.25)
    _add(s, p, F32(0.4 * k) * fluid * grad)
    return full_mask(s.size, p, fluid > 0.1)


def patchy_airspace_opacity(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    a = s.anat
    side = _side(s, "airspace")
    cu, cv = site(s, "airspace", lambda r: lung_point(a, r, side, (0.35, 0.75), 0.12))
    r = float(rng.uniform(0.16, 0.22))
    p = s.frame.box_around(cu, cv, r * 1.1)
    u, v = s.frame.uv(p)
    shp = (p[0].stop - p[0].start, p[1].stop - p[1].start)
    blob = inside(ellipse_d(u, v, cu, cv, r, r * 0.85), 0.5)
    n = smooth_noise(rng, shp, max(3, int(shp[0] / 7)))
    op = np.clip(blob * (F32(0.6) + F32(0.5) * n) - F32(0.15), 0, 1) * (s.layers["lung"][p] > 0.2)
    op = op / max(float(op.max()), 1e-3)
    _add(s, p, F32(0.38 * k) * op)
    return full_mask(s.size, p, op > 0.12)


def reticular_pattern(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    a = s.anat
    side = _side(s, "airspace")
    cu, cv = lung_point(a, rng, side, (0.55, 0.8), 0.16)
    r = float(rng.uniform(0.18, 0.24))
    p = s.frame.box_around(cu, cv, r)
    u, v = s.frame.uv(p)
    shp = (p[0].stop - p[0].start, p[1].stop - p[1].start)
    warp = F32(0.02) * smooth_noise(rng, shp, 4)
    f = F32(rng.uniform(26, 34))
    net = np.maximum(bump(np.sin(f * (u + warp)), 0.35), bump(np.sin(f * (v - warp) + F32(1.0)), 0.35))
    region = inside(ellipse_d(u, v, cu, cv, r, r * 0.9), 0.35) * (s.layers["lung"][p] > 0.3)
    _add(s, p, F32(0.16 * k) * net * region)
    return full_mask(s.size, p, region > 0.2)


def _disk(s: Scene, cu: float, cv: float, r: float, density: float, edge: float) -> np.ndarray:
    r = max(r, 1.0 * s.frame.px)  # at least a pixel across, at any image size
    p = s.frame.box_around(cu, cv, r * (1 + edge) + 0.01)
    u, v = s.frame.uv(p)
    d = ellipse_d(u, v, cu, cv, r, r)
    prof = inside(d, edge) * (F32(0.8) + F32(0.2) * np.sqrt(np.clip(1 - d * d, 0, 1)))
    _add(s, p, F32(density) * prof)
    return full_mask(s.size, p, d < 1.0 + edge * 0.5)


def _mass_site(s: Scene) -> tuple[float, float, float]:
    a = s.anat
    side = _side(s, "mass")
    return site(s, "mass", lambda r: (*lung_point(a, r, side, (0.25, 0.6), 0.2), float(r.uniform(0.12, 0.16))))


def large_round_opacity(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    cu, cv, r = _mass_site(s)
    return _disk(s, cu, cv, r, 0.42 * k, 0.06)


def lobulated_margin(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    cu, cv, r = _mass_site(s)
    p = s.frame.box_around(cu, cv, r * 1.45)
    u, v = s.frame.uv(p)
    th = np.arctan2(v - F32(cv), u - F32(cu))
    ph = rng.uniform(0, 2 * math.pi, 3)
    rr = F32(r) * (F32(1.08) + F32(0.16) * np.maximum(np.cos(F32(5) * th + F32(ph[0])), 0)
                   + F32(0.10) * np.maximum(np.cos(F32(8) * th + F32(ph[1])), 0)
                   + F32(0.06) * np.cos(F32(3) * th + F32(ph[2])))
    d = np.sqrt((u - F32(cu)) ** 2 + (v - F32(cv)) ** 2) / rr
    lob = inside(d, 0.05)
    core = "large_round_opacity" in s.drawn
    ring = lob * (smoothstep(d * rr / F32(r), 0.93, 1.0) if core else F32(1.0))
    _add(s, p, F32(0.40 * k) * ring)
    return full_mask(s.size, p, (d < 1.03) & ((d * rr / F32(r) > 0.9) if core else True))


def small_round_opacity(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    a = s.anat
    side = _side(s, "nodule")
    cu, cv = lung_point(a, rng, side, (0.2, 0.8), 0.1)
    return _disk(s, cu, cv, float(rng.uniform(0.04, 0.055)), 0.42 * k, 0.1)


def multiple_small_opacities(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    a = s.anat
    m = np.zeros((s.size, s.size), bool)
    for _ in range(int(rng.integers(5, 10))):
        cu, cv = lung_point(a, rng, int(rng.choice([-1, 1])), (0.15, 0.85), 0.06)
        m |= _disk(s, cu, cv, float(rng.uniform(0.02, 0.032)), 0.38 * k, 0.12)
    return m


def calcified_focus(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    a = s.anat
    cu, cv = lung_point(a, rng, int(rng.choice([-1, 1])), (0.25, 0.8), 0.1)
    return _disk(s, cu, cv, float(rng.uniform(0.018, 0.026)), 0.8 * k, 0.05)


def _consolidation_site(s: Scene) -> tuple[int, str]:
    side = _side(s, "pneumonia")
    return side, site(s, "pneumonia:lobe", lambda r: str(r.choice(["upper", "lower"])))


def _lobe(s: Scene, side: int, lobe: str, p) -> np.ndarray:
    """Soft indicator of an upper (above a fissure) or lower lobe within the lung on ``side``."""
    a = s.anat
    u, v = s.frame.uv(p)
    lung = s.layers["lung"][p] * (u * side > 0)
    fissure = F32(a["hilum_v"] + 0.02) + F32(0.08) * (u * side - 0.4)
    if lobe == "upper":
        return lung * smoothstep(v - fissure, 0.01, -0.01)
    return lung * smoothstep(v - fissure - F32(0.12), -0.08, 0.12)


def lobar_consolidation(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    a = s.anat
    side, lobe = _consolidation_site(s)
    w = a["cage_w"]
    p = s.frame.box(-w - 0.05 if side < 0 else 0, 0 if side < 0 else w + 0.05, a["apex"] - 0.05, a["dome"][side] + a["dome_rise"] + 0.05)
    reg = _lobe(s, side, lobe, p)
    shp = reg.shape
    tex = F32(0.85) + F32(0.15) * smooth_noise(rng, shp, max(3, shp[0] // 10))
    _add(s, p, F32(0.45 * k) * reg * tex)
    return full_mask(s.size, p, reg > 0.25)


def air_bronchogram(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    """Branching air-filled bronchi inside a patch of consolidation (drawn with it if absent)."""
    a = s.anat
    side, lobe = _consolidation_site(s)
    cu, cv = lung_point(a, rng, side, (0.25, 0.4) if lobe == "upper" else (0.6, 0.8), 0.14)
    r = 0.13
    p = s.frame.box_around(cu, cv, r)
    u, v = s.frame.uv(p)
    region = inside(ellipse_d(u, v, cu, cv, r, r * 0.8), 0.3) * (s.layers["lung"][p] > 0.3)
    tubes = np.zeros_like(u)
    hu, hv = cu - side * 0.12, cv - 0.02  # bronchi branch out away from the hilum
    for j in range(4):
        ang = float(rng.normal(0, 0.5))
        x0, y0 = hu, hv + 0.03 * (j - 1.5)
        dx, dy = side * math.cos(ang), math.sin(ang)
        t = (u - x0) * dx + (v - y0) * dy
        dist = np.abs(-(u - x0) * dy + (v - y0) * dx)
        width = F32(0.011) * (1 - np.clip(t / 0.3, 0, 0.8))
        tubes = np.maximum(tubes, smoothstep(dist, width, width * 0.4) * (t > 0))
    if "lobar_consolidation" not in s.drawn:
        _add(s, p, F32(0.4 * k) * region)
    _add(s, p, F32(-0.30 * k) * tubes * region)
    return full_mask(s.size, p, region > 0.2)


def _ptx_site(s: Scene) -> tuple[int, float]:
    side = _side(s, "pleura")
    return side, float(site(s, "ptx:gap", lambda r: float(r.uniform(0.08, 0.14))))


def _ptx_geometry(s: Scene):
    a = s.anat
    side, gap = _ptx_site(s)
    w = a["cage_w"]
    p = s.frame.box(-w - 0.05 if side < 0 else 0.05, -0.05 if side < 0 else w + 0.05, a["apex"] - 0.05, a["widest"] + 0.45)
    u, v = s.frame.uv(p)
    outer = lung_outer(a, v)
    su = u * side
    # Distance inward from the chest wall; the apex gap follows the rounded top of the lung.
    dist = np.minimum(outer - su, (v - F32(a["apex"])) * F32(1.5))
    lower = smoothstep(v, a["widest"] + 0.45, a["widest"] + 0.25)
    return p, dist, F32(gap) * lower, s.layers["lung"][p]


def visceral_pleural_line(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    p, dist, gap, lung = _ptx_geometry(s)
    line = bump(dist - gap, 0.012) * (lung > 0.3) * (gap > 0.02)
    _add(s, p, F32(0.22 * k) * line)
    return full_mask(s.size, p, line > 0.05)


def absent_lung_markings(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    p, dist, gap, lung = _ptx_geometry(s)
    region = smoothstep(dist - gap, 0.006, -0.006) * (gap > 0.02) * lung
    s.layers["markings"][p] *= 1 - region
    _add(s, p, F32(-0.08 * k) * region)
    return full_mask(s.size, p, region > 0.05)


def deep_sulcus(s: Scene, rng: np.random.Generator, k: float) -> np.ndarray:
    a = s.anat
    side = _side(s, "pleura")
    w = a["cage_w"]
    cp = a["dome"][side] + a["dome_rise"]
    p = s.frame.box(-w - 0.05 if side < 0 else w * 0.4, -w * 0.4 if side < 0 else w + 0.05, cp - 0.15, cp + 0.3)
    u, v = s.frame.uv(p)
    su = u * side
    depth = 0.18 * min(k, 1.5)
    # A lucent wedge pointing down along the lateral chest wall, below the normal CP angle.
    floor = dome_v(a, u, side)
    wedge = smoothstep(v - floor, -0.02, 0.0) * smoothstep(v - floor - F32(depth) * smoothstep(su, w * 0.5, w * 0.98), 0.01, -0.01)
    wedge = wedge * smoothstep(su, w + 0.04, w - 0.01) * smoothstep(su, w * 0.45, w * 0.65)
    _add(s, p, F32(-0.32 * min(k, 1.6)) * wedge)
    return full_mask(s.size, p, wedge > 0.1)


SIGNS: dict[str, SignDrawer] = {
    f.__name__: SignDrawer(f.__name__, f, stage)
    for f, stage in [
        (linear_band_opacity, "local"),
        (elevated_hemidiaphragm, "structural"),
        (mediastinal_shift, "structural"),
        (rib_crowding, "structural"),
        (enlarged_cardiac_silhouette, "structural"),
        (displaced_cardiac_apex, "structural"),
        (vascular_redistribution, "structural"),
        (costophrenic_blunting, "local"),
        (meniscus_opacity, "local"),
        (patchy_airspace_opacity, "local"),
        (reticular_pattern, "local"),
        (large_round_opacity, "local"),
        (lobulated_margin, "local"),
        (small_round_opacity, "local"),
        (multiple_small_opacities, "local"),
        (lobar_consolidation, "local"),
        (air_bronchogram, "local"),
        (visceral_pleural_line, "local"),
        (absent_lung_markings, "local"),
        (deep_sulcus, "local"),
        (calcified_focus, "local"),
    ]
}
