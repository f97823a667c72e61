"""DICOM input: rescale slope/intercept, MONOCHROME1 inverted, window applied, 12/16-bit to uint8,
datasets that accept .dcm beside .png, and a clear error for a compressed file without its decoder."""
from __future__ import annotations

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid  # noqa: E402

from sdmad_lite.data.images import ImageLoadError, load_image  # noqa: E402


def write_dicom(path, pixels: np.ndarray, photometric="MONOCHROME2", slope=None, intercept=None, window=None,
                syntax=ExplicitVRLittleEndian, bits=12):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # digital x-ray
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits, bits - 1, 0
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def ramp(h=8, w=16, top=4095):
    return np.tile(np.linspace(0, top, w).round().astype(np.uint16), (h, 1))


def test_monochrome2_12_bit_to_uint8(tmp_path):
    img = load_image(write_dicom(tmp_path / "a.dcm", ramp()))
    assert img.dtype == np.uint8 and img.shape == (8, 16)
    assert img[0, 0] == 0 and img[0, -1] == 255 and (np.diff(img[0].astype(int)) >= 0).all()


def test_monochrome1_is_inverted(tmp_path):
    a = load_image(write_dicom(tmp_path / "m2.dcm", ramp()))
    b = load_image(write_dicom(tmp_path / "m1.dcm", ramp(), photometric="MONOCHROME1"))
    np.testing.assert_array_equal(b, 255 - a)  # bright stays bright: MONOCHROME1 stores white as low


def test_rescale_slope_and_intercept_and_window(tmp_path):
    raw = ramp(top=2000)
    plain = load_image(write_dicom(tmp_path / "p.dcm", raw))
    neg = load_image(write_dicom(tmp_path / "r.dcm", raw, slope=-1.0, intercept=0.0))
    np.testing.assert_array_equal(neg, 255 - plain)  # a negative slope reverses the values
    win = load_image(write_dicom(tmp_path / "w.dcm", raw, window=(1000, 400)))  # only 800..1200 spans the range
    assert win[0, 0] == 0 and win[0, -1] == 255
    mid = (raw[0] > 850) & (raw[0] < 1150)
    assert (win[0, mid] > 0).all() and (win[0, mid] < 255).all()
    assert (win[0, raw[0] < 750] == 0).all() and (win[0, raw[0] > 1250] == 255).all()


def test_a_dicom_without_suffix_is_read(tmp_path):
    p = write_dicom(tmp_path / "x.dcm", ramp())
    q = tmp_path / "noext"
    q.write_bytes(p.read_bytes())
    np.testing.assert_array_equal(load_image(q), load_image(p))


def test_compressed_pixels_without_a_decoder_name_the_package(tmp_path, monkeypatch):
    from pydicom.encaps import encapsulate

    from sdmad_lite.data import images

    monkeypatch.setattr(images, "_decoders_installed", lambda: False)  # as without the dicom extra's decoders

    p = write_dicom(tmp_path / "j.dcm", ramp())
    ds = pydicom.dcmread(p)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit  # JPEG pixels that no installed decoder reads
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = encapsulate([b"\xff\xd8 not a real jpeg stream \xff\xd9"])
    ds.save_as(p, enforce_file_format=True)
    with pytest.raises(ImageLoadError, match=r"compressed \(JPEG Baseline.*pip install 'sdmad-lite\[dicom\]' \(pylibjpeg"):
        load_image(p)


def test_an_unsupported_mode_is_not_called_corrupt(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "ok.png")
    with pytest.raises(ValueError, match="mode must be 'L' or 'RGB', got 'CMYK'"):
        load_image(tmp_path / "ok.png", mode="CMYK")


def test_chestxray14_folder_of_dicom(tmp_path):
    """A ChestX-ray14 folder whose images are .dcm files with the list's names."""
    from sdmad_lite.data.datasets import ChestXray14Dataset
    from sdmad_lite.io import RESOURCES

    import csv

    rows = list(csv.DictReader(open(RESOURCES / "samples" / "chestxray14" / "labels.csv")))[:3]
    for r in rows:
        write_dicom(tmp_path / r["image"].replace(".png", ".dcm"), ramp())
    ds = ChestXray14Dataset(tmp_path, split="all", images_subdir=None, skip_missing=True, drop_other_findings=False)
    assert len(ds) == 3 and ds[0]["image"].dtype == np.uint8
