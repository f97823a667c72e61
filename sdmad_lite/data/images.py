"""Robust image reading: any PNG/JPEG/TIFF or DICOM file a user may hold -> uint8 numpy array.

* DICOM (``.dcm``, read with pydicom): the stored values go through the modality LUT (rescale slope
  and intercept), then the VOI LUT or the window (centre/width) when the file has one; MONOCHROME1
  (white = low values) is inverted so that bone is bright, as in MONOCHROME2; the result is scaled
  by its range to 0..255. Colour becomes luminance, a palette image goes through its colour table. A
  compressed transfer syntax whose decoder is missing is an error naming the package to install (the
  ``dicom`` extra brings them); every other failure to decode says what is wrong.

* 8-bit grayscale: returned as is.
* 16-bit / 32-bit integer or float grayscale (DICOM exports, fastMRI slices): scaled by the
  image's own range, ``(v - min) / (max - min) * 255`` — never clipped (a 12-bit radiograph
  stored in 16 bits would otherwise be nearly black or saturated). A constant image maps to 0.
* Palette and RGB: converted to luminance (ITU-R 601-2, Pillow's ``L``).
* Alpha (LA, RGBA, palette with transparency): composited on black.
* Missing, empty, truncated or non-image files raise :class:`ImageLoadError` naming the file.
"""
from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from ..errors import SdmadError

_HELP = "see sdmad_lite/data_scripts/README.md for how to get and prepare the datasets"
#: file suffixes read as DICOM
DICOM_SUFFIXES = (".dcm", ".dicom")
#: image suffixes the datasets accept beside DICOM
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff") + DICOM_SUFFIXES


class ImageLoadError(SdmadError, OSError):
    """An image file is missing, empty, truncated or not an image."""


def _scale_to_uint8(a: np.ndarray) -> np.ndarray:
    """Scale an integer or float array to uint8 by its own range (constant -> zeros)."""
    a = np.asarray(a)
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    f = a.astype(np.float64)
    finite = np.isfinite(f)
    if not finite.any():
        return np.zeros(a.shape, np.uint8)
    lo, hi = float(f[finite].min()), float(f[finite].max())
    f = np.where(finite, f, lo)
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.round((f - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _composite_on_black(img: Image.Image) -> Image.Image:
    """RGBA/LA -> RGB/L with the colour multiplied by alpha (i.e. over a black background)."""
    rgba = img.convert("LA" if img.mode in ("LA", "La") else "RGBA")
    a = np.asarray(rgba, dtype=np.float64)
    alpha = a[..., -1:] / 255.0
    out = np.round(a[..., :-1] * alpha).astype(np.uint8)
    if out.shape[-1] == 1:
        return Image.fromarray(np.ascontiguousarray(out[..., 0]))
    return Image.fromarray(out)


def pil_to_array(img: Image.Image, mode: str = "L") -> np.ndarray:
    """Convert an opened PIL image to uint8 ``(H, W)`` (``mode="L"``) or ``(H, W, 3)`` (``"RGB"``)."""
    if mode not in ("L", "RGB"):
        raise ValueError(f"mode must be 'L' or 'RGB', got {mode!r}")
    m = img.mode
    if m == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        m = img.mode
    if m in ("RGBA", "LA", "La", "RGBa", "PA"):
        img = _composite_on_black(img)
        m = img.mode
    if m in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F", "I;32", "I;32B"):
        arr = np.asarray(img)
        if arr.ndim == 3:  # some multi-channel high bit-depth decoders
            arr = arr[..., 0]
        g = _scale_to_uint8(arr)
        return np.repeat(g[..., None], 3, axis=2) if mode == "RGB" else g
    if m == "1":
        img = img.convert("L")
    elif m not in ("L", "RGB"):
        img = img.convert("RGB")
    img = img.convert(mode)
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def load_dicom(path: str | os.PathLike) -> np.ndarray:
    """A DICOM file's pixels as uint8 ``(H, W)`` (see the module docstring for the steps).

    Colour (RGB, YBR) becomes luminance and a palette image goes through its colour table; a multi-frame
    file, a palette image without its table, RescaleSlope 0, a window of width ≤ 0 or one that lies outside
    the values, and a header that cannot describe an image (0 rows, BitsAllocated 12) are each an
    :class:`ImageLoadError` saying what is wrong; so is a file that fails to decode, by its cause (cut short,
    no decoder installed, damaged compressed data)."""
    p = Path(path)
    try:
        import pydicom  # the dicom extra: pip install 'sdmad-lite[dicom]'
        from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut
    except ImportError:
        raise ImageLoadError(f"{p} is DICOM, which needs pydicom 3: pip install 'sdmad-lite[dicom]'") from None
    try:
        ds = pydicom.dcmread(p)
    except Exception as e:  # noqa: BLE001 — pydicom raises several kinds
        raise ImageLoadError(f"not a readable DICOM file: {p} ({type(e).__name__}: {_first_line(e)}) — "
                             f"delete it and fetch it again ({_HELP})") from None
    if "PixelData" not in ds:
        raise ImageLoadError(f"{p}: the DICOM file holds no pixel data (a report, a structure set or a DICOMDIR?)")
    _check_dicom_header(ds, p)
    try:
        arr = ds.pixel_array
    except Exception as e:  # noqa: BLE001 — a missing decoder, data cut short, a damaged header
        raise ImageLoadError(_decode_problem(ds, p, e)) from None
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if photometric == "PALETTE COLOR":
        if not all(f"{c}PaletteColorLookupTableData" in ds or f"Segmented{c}PaletteColorLookupTableData" in ds
                   for c in ("Red", "Green", "Blue")):
            raise ImageLoadError(f"{p}: a PALETTE COLOR image without its colour table (Red/Green/Blue Palette Color "
                                 "Lookup Table Data): its values are indices into a table that is not there, not "
                                 "grey levels; re-export the image with its table, or as MONOCHROME2")
        arr = apply_color_lut(arr, ds)
        if arr.dtype != np.uint8:  # a 16-bit table: 0 … 65535 onto 0 … 255, as the colours were meant
            arr = np.round(arr.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
    if arr.ndim == 3:  # colour (RGB; pydicom already turned YBR into RGB): luminance
        return np.asarray(Image.fromarray(_scale_to_uint8(arr[..., :3])).convert("L"))
    values = np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
    if "VOILUTSequence" in ds or "WindowCenter" in ds:
        windowed = np.asarray(apply_voi_lut(values, ds), dtype=np.float64)
        if np.ptp(windowed) == 0 and np.ptp(values) > 0:
            where = ("its VOI LUT" if "VOILUTSequence" in ds else
                     f"its window (WindowCenter {_first(ds.WindowCenter):g}, WindowWidth {_first(ds.WindowWidth):g})")
            raise ImageLoadError(f"{p}: {where} lies outside its values ({values.min():g} … "
                                 f"{values.max():g}), so every pixel would be one grey; correct the window or remove "
                                 "WindowCenter/WindowWidth")
        values = windowed
    if photometric == "MONOCHROME1":
        values = values.max() - values
    return _scale_to_uint8(values)


def _first_line(e: BaseException, n: int = 160) -> str:
    """The first non-empty line of an exception's message, at most ``n`` characters."""
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    return (lines[0] if lines else type(e).__name__)[:n]


def _check_dicom_header(ds, p: Path) -> None:
    """The header describes one grey or colour image sdmad can read (each problem an :class:`ImageLoadError`)."""
    rows, cols = ds.get("Rows"), ds.get("Columns")
    if not rows or not cols:
        raise ImageLoadError(f"{p}: the DICOM header says {rows} rows × {cols} columns: no image to read; the file "
                             "is damaged, fetch or export it again")
    bits = ds.get("BitsAllocated")
    if bits not in (1, 8, 16, 32, 64):
        raise ImageLoadError(f"{p}: BitsAllocated {bits} is not a size DICOM stores pixels in (1, 8, 16, 32 or 64); "
                             "the header is damaged, export the file again")
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        raise ImageLoadError(f"{p}: NumberOfFrames {ds.get('NumberOfFrames')!r} is not a number; the header is "
                             "damaged") from None
    if frames > 1:
        raise ImageLoadError(f"{p} holds {frames} frames (a multi-frame DICOM: a volume or a cine loop); sdmad reads "
                             "one image per file: export the frame you mean as its own file")
    if "RescaleSlope" in ds and float(ds.RescaleSlope) == 0:
        raise ImageLoadError(f"{p}: RescaleSlope 0 makes every pixel the same value (the intercept); the header is "
                             "damaged: correct RescaleSlope (1 if unsure) or remove it")
    if "WindowWidth" in ds and "VOILUTSequence" not in ds:
        first = _first(ds.WindowWidth)
        if first <= 0:
            raise ImageLoadError(f"{p}: WindowWidth {first:g} is not a window (a width must be > 0); correct it or "
                                 "remove WindowCenter/WindowWidth")


def _first(value) -> float:
    """A DICOM number that may hold several values (a MultiValue): the first, the one applied."""
    return float(value[0] if isinstance(value, Sequence) and not isinstance(value, str) and len(value) else value)


def _decode_problem(ds, p: Path, e: BaseException) -> str:
    """Why the pixels of ``ds`` cannot be decoded, and what to do: cut short, no decoder, damaged data..."""
    text, detail = str(e), _first_line(e)
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is None:
        return f"{p}: its file meta has no Transfer Syntax UID, so its pixel data cannot be interpreted; export it again"
    if "less than expected" in text or "doesn't match the expected length" in text:
        return f"{p}: its pixel data is cut short ({detail}); the file is truncated: delete it and fetch it again"
    name = getattr(syntax, "name", str(syntax))
    if getattr(syntax, "is_compressed", False):
        if "missing dependencies" in text or not _decoders_installed():
            return (f"{p}: its pixels are compressed ({name}) and no installed decoder reads them; install the "
                    "decoders: pip install 'sdmad-lite[dicom]' (pylibjpeg with its libjpeg, openjpeg and rle plugins)")
        return (f"{p}: its {name} pixel data could not be decoded by the installed decoders ({detail}); the file is "
                "damaged or uses a variant they do not read: re-export it uncompressed")
    return f"{p}: its pixels cannot be read ({type(e).__name__}: {detail}); the DICOM header is damaged or unusual"


def _decoders_installed() -> bool:
    """The decoders of the dicom extra are importable (pylibjpeg and its JPEG, JPEG 2000 plugins)."""
    return all(importlib.util.find_spec(m) is not None for m in ("pylibjpeg", "libjpeg", "openjpeg"))


def load_image(path: str | os.PathLike, mode: str = "L") -> np.ndarray:
    """Read an image file as uint8: ``(H, W)`` for ``mode="L"`` (default), ``(H, W, 3)`` for ``"RGB"``.

    PNG, JPEG, TIFF through Pillow; ``.dcm`` through pydicom (:func:`load_dicom`). Raises
    :class:`ImageLoadError` with the file name and what to do when the file is missing, empty,
    truncated/corrupt or not an image; an unsupported ``mode`` is a ``ValueError`` (a bug of the caller).
    """
    if mode not in ("L", "RGB"):
        raise ValueError(f"mode must be 'L' or 'RGB', got {mode!r} (the file was not read)")
    p = Path(path)
    if not p.exists():
        raise ImageLoadError(f"image not found: {p} ({_HELP})")
    if p.is_dir():
        raise ImageLoadError(f"expected an image file but {p} is a directory")
    if p.stat().st_size == 0:
        raise ImageLoadError(
            f"image file is empty (0 bytes): {p} — probably an interrupted download or copy; "
            f"delete it and fetch it again ({_HELP})"
        )
    if p.suffix.lower() in DICOM_SUFFIXES or _is_dicom(p):
        g = load_dicom(p)
        return np.repeat(g[..., None], 3, axis=2) if mode == "RGB" else g
    try:
        with Image.open(p) as img:
            img.load()
            return pil_to_array(img, mode)
    except Image.DecompressionBombError as e:
        raise ImageLoadError(
            f"{p} is larger than Pillow opens ({e}); if the image is genuine, downscale it "
            "(or raise PIL.Image.MAX_IMAGE_PIXELS in your own code), else delete it"
        ) from None
    except UnidentifiedImageError as e:
        raise ImageLoadError(
            f"not an image Pillow can read: {p} — check that it is a PNG/JPEG/TIFF/DICOM file and not an "
            f"HTML error page or an archive that still needs extracting ({_HELP})"
        ) from e
    except (OSError, SyntaxError, ValueError) as e:  # truncated / corrupt data
        raise ImageLoadError(
            f"corrupt or truncated image: {p} ({e}) — delete it and fetch it again ({_HELP})"
        ) from e


def _is_dicom(p: Path) -> bool:
    """A DICOM file without its suffix: the "DICM" magic after the 128-byte preamble."""
    try:
        with open(p, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def to_pil(image: np.ndarray) -> Image.Image:
    """uint8 ``(H, W)`` or ``(H, W, 3)`` array (any other dtype is range-scaled) -> PIL image."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = _scale_to_uint8(a)
    if a.ndim == 2:
        return Image.fromarray(a)
    if a.ndim == 3 and a.shape[2] == 3:
        return Image.fromarray(a)
    if a.ndim == 3 and a.shape[2] == 1:
        return Image.fromarray(np.ascontiguousarray(a[..., 0]))
    raise ValueError(f"expected (H, W) or (H, W, 3) array, got shape {a.shape}")


def save_image(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an array as an image (format from the suffix), atomically (tmp file, then rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    to_pil(image).save(tmp, format=Image.registered_extensions().get(p.suffix.lower()))
    os.replace(tmp, p)
    return p
