"""The feature-cache size the costs page prints is computed from the model config; check it
against what extract() really stores, and the arithmetic against the issue's ViT-L figure."""
import numpy as np
import pytest

from sdmad_lite.features import cache_bytes, extract
from sdmad_lite.models.backbone import PHANTOMCLIP, BackboneError, load, vision_geometry


def test_cache_bytes_equals_what_extract_stores():
    bb = load(PHANTOMCLIP)
    g = vision_geometry(PHANTOMCLIP)
    assert g["n_blocks"] == bb.n_blocks and g["width"] == bb.width and g["embed_dim"] == bb.embed_dim
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (g["image_size"], g["image_size"]), dtype=np.uint8) for _ in range(3)]
    f = extract(bb, lambda i: imgs[i], 3, g["taps"])
    stored = sum(t.numel() * t.element_size() for t in f.taps.values()) + f.pooled.numel() * f.pooled.element_size()
    assert stored == cache_bytes(3, g)
    assert all(t.shape[1] == g["tokens"] for t in f.taps.values())


def test_paper_backbone_arithmetic():
    g = vision_geometry("ViT-L-14-336")
    assert (g["tokens"], g["width"], g["taps"]) == (577, 1024, [6, 12, 18, 24])
    # 16,806 images × 4 taps × 577 tokens × 1024 (+ 768 pooled) in float32: the ~159 GB of issue 17
    assert cache_bytes(16806, g, bytes_per_value=4) / 1e9 == pytest.approx(158.9, abs=0.1)
    assert cache_bytes(16806, g) * 2 == cache_bytes(16806, g, bytes_per_value=4)
    assert cache_bytes(16806, g, tokens="cls") < cache_bytes(16806, g) / 300
    with pytest.raises(ValueError, match="tokens must be"):
        cache_bytes(1, g, tokens="patches")
    with pytest.raises(BackboneError, match="no ViT model config"):
        vision_geometry("no-such-model")


def test_the_result_caches_key_ignores_documentation_but_not_code_or_data(tmp_path):
    """``cache._code``: a docstring or a YAML comment leaves the key alone; a changed statement or a
    changed YAML value moves it (so a stale result is never read back)."""
    from sdmad_lite.cache import CONSUMERS, _code

    py, yml = tmp_path / "m.py", tmp_path / "t.yaml"
    py.write_text('def f():\n    """Doc."""\n    return 1  # note\n')
    yml.write_text("# a comment\nanchor:\n  - a chest x-ray with normal findings\n")
    k_py, k_yml = _code(py), _code(yml)
    py.write_text('def f():\n    """Other doc."""\n    return 1\n')
    yml.write_text("# another comment, longer\nanchor:   [a chest x-ray with normal findings]\n")
    assert (_code(py), _code(yml)) == (k_py, k_yml)
    py.write_text('def f():\n    """Doc."""\n    return 2\n')
    yml.write_text("anchor:\n  - a chest x-ray with no abnormal findings\n")
    assert _code(py) != k_py and _code(yml) != k_yml
    assert "plots.py" in CONSUMERS and "analysis.py" in CONSUMERS  # drawing and reading never change a result
