"""The feature cache keeps only the tokens a method reads (issue 17, item 5): class tokens unless the
method reads patches; the scores do not change; a method that needs patches it was not given says so."""
import numpy as np
import pytest
import torch

from sdmad_lite import features as F
from sdmad_lite import methods
from sdmad_lite.config import ExperimentConfig
from sdmad_lite.models.backbone import PHANTOMCLIP, load, vision_geometry


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SDMAD_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "features"


@pytest.fixture(scope="module")
def backbone():
    return load(PHANTOMCLIP)


def _images(n=5, size=64):
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (size, size), dtype=np.uint8) for _ in range(n)]
    return imgs, (lambda i: imgs[i])


def test_class_token_cache_equals_the_full_cache_sliced_and_is_smaller(cache, backbone):
    imgs, get = _images()
    taps = vision_geometry(PHANTOMCLIP)["taps"]
    cls = F.cached_features(backbone, {"d": "cls"}, get, len(imgs), taps, patches=[])
    full = F.extract(backbone, get, len(imgs), taps)
    assert cls.patch_blocks == [] and full.patch_blocks == taps
    for b in taps:
        assert cls.taps[b].shape == (len(imgs), 1, backbone.width)
        assert torch.equal(cls.taps[b], full.taps[b][:, :1])
    assert torch.equal(cls.pooled, full.pooled)
    folder = cache / F.cache_key(backbone.key, {"d": "cls"})
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"block{b}.cls.pt" for b in taps] + ["pooled.pt"])
    first = F.cached_features(backbone, {"d": "first"}, get, len(imgs), taps, patches=taps[:1])
    assert first.patch_blocks == taps[:1] and torch.equal(first.taps[taps[0]], full.taps[taps[0]])
    sizes = {k: sum(p.stat().st_size for p in (cache / F.cache_key(backbone.key, {"d": k})).iterdir())
             for k in ("cls", "first")}
    assert sizes["cls"] * 5 < sizes["first"]  # the patches are nearly all of it


def test_cache_bytes_follows_what_is_kept(backbone):
    g = vision_geometry(PHANTOMCLIP)
    imgs, get = _images(3, g["image_size"])
    for patches, tokens in (("none", "cls"), ("none", "none"), ("first", "first"), ("all", "all")):
        f = F.extract(backbone, get, 3, g["taps"], patches=F.patch_blocks(g["taps"], patches))
        stored = sum(t.numel() * t.element_size() for t in f.taps.values()) + f.pooled.numel() * f.pooled.element_size()
        assert stored == F.cache_bytes(3, g, tokens=tokens), patches
    assert F.cache_bytes(3, g, "first") - F.cache_bytes(3, g, "none") == 3 * (g["tokens"] - 1) * g["width"] * 2
    with pytest.raises(ValueError, match="patches must be one of none, first, all"):
        F.patch_blocks([1, 2], "some")


def test_a_class_token_request_reads_the_full_files_and_only_missing_blocks_are_extracted(cache, backbone, monkeypatch):
    imgs, get = _images()
    taps = vision_geometry(PHANTOMCLIP)["taps"]
    full = F.cached_features(backbone, {"d": "x"}, get, len(imgs), taps)  # every token of every tap on disk
    calls = []
    real = F.extract
    monkeypatch.setattr(F, "extract", lambda bb, g, n, t, **kw: calls.append((list(t), kw.get("patches"))) or real(bb, g, n, t, **kw))
    cls = F.cached_features(backbone, {"d": "x"}, get, len(imgs), taps, patches=[])
    assert calls == [] and all(torch.equal(cls.taps[b], full.taps[b][:, :1]) for b in taps)
    F.cached_features(backbone, {"d": "y"}, get, len(imgs), taps, patches=[])  # class tokens only on disk
    assert calls == [(taps, [])]
    calls.clear()
    again = F.cached_features(backbone, {"d": "y"}, get, len(imgs), taps, patches=taps[-1:])
    assert calls == [(taps[-1:], taps[-1:])]  # only the block whose patches were missing, no pooled recompute
    assert torch.equal(again.taps[taps[-1]], full.taps[taps[-1]])


def test_each_method_reads_the_patches_it_declares():
    base = ExperimentConfig()
    reads = {m: methods.patches_read(methods.config_for(m, base)) for m in ("zeroshot-signs", "linear-probe", "sdmad",
                                                                            "sdmad-residual", "mvfa", "anomalyclip")}
    assert reads == {"zeroshot-signs": "none", "linear-probe": "none", "sdmad": "none", "sdmad-residual": "first",
                     "mvfa": "all", "anomalyclip": "all"}
    assert set(methods.READS_PATCHES) == set(methods.FAMILIES)
    grid = ExperimentConfig.from_dict({"tuning": {"grid": {"model.adapter_mode": ["side", "residual"]}}})
    assert methods.patches_read(grid) == "first"


def _tiny():
    return ExperimentConfig.from_dict({"seed": 1, "k_shot": 2, "model": {"pretrained": "shipped", "adapter_hidden": 16},
                                       "data": {"n_test": 30, "n_pool": 300, "image_size": 64, "test_resample": False},
                                       "protocols": ["integrated"], "tuning": {"max_epochs": 8, "patience": 4}})


@pytest.mark.slow
def test_scores_are_the_same_from_the_smaller_cache_and_patch_readers_refuse_it(cache, monkeypatch):
    from sdmad_lite import task as T
    from sdmad_lite.task import get_task

    _TASKS: dict = {}
    monkeypatch.setattr(T, "_TASKS", _TASKS)  # not the tasks other tests of this process built (a larger one would serve)
    base = _tiny()
    tasks = {p: get_task(base, patches=p) for p in ("none", "first", "all")}
    assert tasks["none"].pool_feats.patch_blocks == [] and tasks["first"].pool_feats.patch_blocks == tasks["all"].blocks[:1]
    assert get_task(base, patches="none") is tasks["none"]  # built once; a larger one serves a smaller request
    key = [k for k in _TASKS if k[1] == "none" and _TASKS[k] is tasks["none"]][0]
    del _TASKS[key]
    assert get_task(base, patches="none") is tasks["first"]
    _TASKS[key] = tasks["none"]
    for name, small in (("sdmad", "none"), ("linear-probe", "none"), ("sdmad-residual", "first")):
        cfg = methods.config_for(name, base)
        cfg.tuning.folds, cfg.train.epochs = 0, 6
        a, b = tasks[small], tasks["all"]
        sup = a.draw_support(cfg.k_shot, cfg.seed, cfg.train.val_fraction)
        pa, _ = methods.predict(a, sup, cfg)
        pb, _ = methods.predict(b, sup, cfg)
        assert np.array_equal(pa.test_scores, pb.test_scores) and np.array_equal(pa.test_anchor, pb.test_anchor), name
    sup = tasks["none"].draw_support(2, 1, 0.25)
    with pytest.raises(F.MissingPatchesError, match=r"MVFA reads the patch tokens of blocks \[.*\], but these features "
                                                    r"keep only their class token; build the task"):
        methods.fit(tasks["none"], sup, methods.config_for("mvfa", base))
    with pytest.raises(F.MissingPatchesError, match="the residual placement reads the patch tokens"):
        methods.fit(tasks["none"], sup, methods.config_for("sdmad-residual", base))


def test_a_process_keeps_only_its_most_recently_used_tasks(monkeypatch):
    """A study walks through many worlds; a task with every patch token holds ~160 MB, so a process keeps
    ``MAX_TASKS`` of them, dropping the least recently used (and its noisy pools) first."""
    from types import SimpleNamespace

    from sdmad_lite import task as T

    built = []
    monkeypatch.setattr(T, "_TASKS", {})
    monkeypatch.setattr(T, "_NOISY", {})
    monkeypatch.setattr(T, "MAX_TASKS", 2)
    monkeypatch.setattr(T, "build_task", lambda cfg, bb, **kw: built.append(cfg.data.n_test) or SimpleNamespace(pool=None))
    monkeypatch.setattr(T, "check_feasible", lambda pool, cfg: None)

    def cfg(n):
        c = _tiny()
        c.data.n_test = n
        return c

    a = T.get_task(cfg(30))
    T.get_task(cfg(31))
    assert T.get_task(cfg(30)) is a  # a hit: 30 is now the most recently used, 31 the oldest
    b = next(t for t in T._TASKS.values() if t is not a)
    T._NOISY[(next(k for k in T._TASKS if T._TASKS[k] is b), 0.5, "undrawn", 1)] = noisy = SimpleNamespace()
    monkeypatch.setattr(T, "_DRAWS", {(id(b), 1): (b, None), (id(noisy), 1): (noisy, None), (id(a), 1): (a, None)})
    T.get_task(cfg(32))  # evicts 31 with its noisy pool and the test draws of both, keeps 30
    assert len(T._TASKS) == 2 and not T._NOISY and list(T._DRAWS) == [(id(a), 1)] and T.get_task(cfg(30)) is a
    T.get_task(cfg(31))
    assert built == [30, 31, 32, 31]
