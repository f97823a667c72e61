"""SD-MAD's pieces on hand-computed cases, and a run end to end on a tiny phantom task."""
import math

import numpy as np
import pytest
import torch

from sdmad_lite import losses as L
from sdmad_lite import selection as S
from sdmad_lite.config import ExperimentConfig, LossConfig
from sdmad_lite.models.adapters import Adapter
from sdmad_lite.models.sdmad import TextBank


def test_adapter_formula():
    a = Adapter(2, 1, lam=0.8)
    with torch.no_grad():
        a.fc1.weight[:] = torch.tensor([[1.0, -1.0]])
        a.fc2.weight[:] = torch.tensor([[2.0], [0.5]])
    f = torch.tensor([[3.0, 1.0]])
    # W1 f = 2 -> σ = 2 -> W2 = [4, 1] -> σ = [4, 1]; 0.8 f + 0.2 [4, 1]
    assert torch.allclose(a(f), torch.tensor([[0.8 * 3 + 0.2 * 4, 0.8 * 1 + 0.2 * 1]]))
    with pytest.raises(ValueError, match="λ"):
        Adapter(2, 1, lam=1.5)


def test_alignment_and_anchor_losses():
    logits = torch.tensor([[0.0, 2.0]])
    y = torch.tensor([[1, 0]])
    want = (math.log(2) + math.log(1 + math.e**2)) / 2
    assert L.alignment_loss(logits, y).item() == pytest.approx(want, rel=1e-6)
    assert L.anchor_loss(torch.tensor([0.0, 0.0]), torch.tensor([[1, 0], [0, 0]])).item() == pytest.approx(math.log(2))


def test_discrepancy_loss_hand_case():
    # one image, two categories; positive for c=0 only. S[0,0,0]=0.5 (own), S[0,0,1]=0.45 (other)
    cross = torch.tensor([[[0.5, 0.45], [0.1, 0.9]]])
    y = torch.tensor([[1, 0]])
    # relu(0.1 + 0.45 - 0.5) = 0.05 ; the row of c=1 is not positive
    assert L.discrepancy_loss(cross, y, margin=0.1).item() == pytest.approx(0.05, abs=1e-6)
    assert L.discrepancy_loss(cross, y, margin=0.0).item() == pytest.approx(0.0)
    assert L.discrepancy_loss(cross, torch.zeros(1, 2), margin=0.1).item() == 0.0


def test_intra_loss_hand_case():
    sims = torch.tensor([[[0.2, 0.4, 9.0], [0.0, 0.0, 0.0]]])  # third sign of c=0 inactive
    active = torch.tensor([[True, True, False], [True, True, True]])
    y = torch.tensor([[1, 0]])
    assert L.intra_loss(sims, active, y).item() == pytest.approx(0.01, abs=1e-7)  # var of [0.2, 0.4]


def test_total_loss_switches_terms_off():
    terms = {"align": torch.tensor(1.0), "discrepancy": torch.tensor(2.0), "intra": torch.tensor(3.0), "anchor": torch.tensor(4.0)}
    w = LossConfig(align=1.0, discrepancy=0.0, intra=0.5, anchor=1.0)
    assert float(L.total_loss(terms, w)) == pytest.approx(1 + 1.5 + 4)


def test_outlier_rule_drops_the_misaligned_sign():
    d = torch.tensor([0.30, 0.28, 0.31, -0.05])
    keep = S.outlier_keep(d, z_threshold=1.0)
    assert keep.tolist() == [True, True, True, False]
    assert S.outlier_keep(torch.tensor([-0.2, -0.1]), 1.0).tolist() == [False, True]  # the best is always kept


def test_select_rules_and_precision_recall():
    cand = np.array([1, 1, 1, 1, 0], bool)
    expert = np.array([1, 0, 1, 1, 0], bool)
    d = torch.tensor([0.3, 0.5, 0.29, -0.2, 0.0])
    assert S.select("none", d, expert, expert, cand).tolist() == expert.tolist()
    assert S.select("all", d, expert, expert, cand).tolist() == cand.tolist()
    assert S.select("auto", d, expert, expert, cand).tolist() == [True, False, True, False, False]
    assert S.select("topk", d, cand, expert, cand, top_k=2).tolist() == [True, True, False, False, False]
    with pytest.raises(ValueError, match="unknown selection rule"):
        S.select("magic", d, expert, expert, cand)
    p, r = S.precision_recall(np.array([1, 0, 1, 0, 0], bool), np.array([1, 1, 0, 0, 0], bool), cand)
    assert (p, r) == (0.5, 0.5)


def test_textbank_refuses_empty_selection_and_nan():
    signs = torch.nn.functional.normalize(torch.randn(2, 3, 4), dim=-1)
    tb = TextBank(signs, torch.ones(2, 3, dtype=torch.bool), signs[0, 0], signs[1, 1])
    with pytest.raises(ValueError, match="no sign"):
        tb.with_active(torch.tensor([[1, 0, 0], [0, 0, 0]]))
    bad = signs.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        TextBank(bad, torch.ones(2, 3, dtype=torch.bool), signs[0, 0], signs[1, 1])


# ----------------------------------------------------------------------------- end to end (tiny)
def tiny_config(tmp_path, **over) -> ExperimentConfig:
    d = {"seed": 3, "k_shot": 2, "model": {"pretrained": None, "adapter_hidden": 16},
         "data": {"n_test": 40, "n_pool": 400, "image_size": 64}, "train": {"epochs": 12, "patience": 50},
         "tuning": {"max_epochs": 12, "patience": 4}}
    for k, v in over.items():
        d.setdefault(k, {}) if isinstance(v, dict) else None
        d[k] = {**d.get(k, {}), **v} if isinstance(v, dict) else v
    return ExperimentConfig.from_dict(d)


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SDMAD_CACHE", str(tmp_path / "cache"))


@pytest.mark.slow
def test_run_is_deterministic_and_complete(tmp_path, cache):
    from sdmad_lite.run import run

    cfg = tiny_config(tmp_path)
    a = run(cfg, tmp_path / "a")
    b = run(cfg, tmp_path / "b")
    for key in ("integrated.subset_accuracy", "integrated.hamming_score", "integrated.macro_auroc",
                "per-anomaly.mean_auroc", "open-set.auroc_only_held_out"):
        assert key in a
        assert a[key] == b[key] or (np.isnan(a[key]) and np.isnan(b[key]))
    for f in ("metrics.json", "config.yaml", "split.json"):
        assert (tmp_path / "a" / f).is_file(), f
    assert a["predictor"] == "fold models" and a["support_scores"] == "out-of-fold"  # tuned: the fold models predict
    untuned = run(tiny_config(tmp_path, tuning={"folds": 0}, protocols=["integrated"]), tmp_path / "u")
    for f in ("checkpoint.pt", "history.json"):  # one model trained through the training loop: its checkpoint, its history
        assert (tmp_path / "u" / f).is_file(), f
    assert untuned["predictor"] == "one model" and untuned["support_scores"] == "in-sample"
    c = run(tiny_config(tmp_path, seed=4), tmp_path / "c")
    assert (tmp_path / "a" / "split.json").read_text() != (tmp_path / "c" / "split.json").read_text()
    assert c["integrated.macro_auroc"] != a["integrated.macro_auroc"]


@pytest.mark.slow
def test_existing_run_is_not_overwritten(tmp_path, cache):
    from sdmad_lite.run import RunExistsError, run

    cfg = tiny_config(tmp_path, protocols=["integrated"])
    run(cfg, tmp_path / "r")
    before = (tmp_path / "r" / "metrics.json").read_text()
    with pytest.raises(RunExistsError, match="--overwrite"):
        run(cfg, tmp_path / "r")
    assert (tmp_path / "r" / "metrics.json").read_text() == before
    run(cfg, tmp_path / "r", overwrite=True)


@pytest.mark.slow
def test_interrupted_training_resumes_to_the_same_result(tmp_path, cache):
    from sdmad_lite.methods.heads import train_head
    from sdmad_lite.task import get_task

    cfg = tiny_config(tmp_path)
    task = get_task(cfg)
    sup = task.draw_support(cfg.k_shot, cfg.seed, cfg.train.val_fraction)
    cols = list(range(len(task.categories)))
    args = (task, sup.train, cfg, task.text_columns(cols), cols, cfg.train.epochs)
    full = train_head(*args, held_out=sup.val)
    ck = tmp_path / "ck.pt"
    part = train_head(*args, held_out=sup.val, checkpoint=ck, checkpoint_every=5, stop_after=5)
    assert len(part.history) == 5 and ck.is_file()
    resumed = train_head(*args, held_out=sup.val, checkpoint=ck, checkpoint_every=5)
    assert resumed.resumed_from == 5
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    for (k1, v1), (k2, v2) in zip(full.head.state_dict().items(), resumed.head.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["always-normal", "label-prior", "zeroshot-names", "zeroshot-signs", "sdmad-init",
                                    "linear-probe", "generic-prompt-adapters", "learned-context"])
def test_baselines_run(tmp_path, cache, method):
    from sdmad_lite.methods import config_for
    from sdmad_lite.run import run

    row = run(config_for(method, tiny_config(tmp_path, protocols=["integrated"])))
    assert 0.0 <= row["integrated.subset_accuracy"] <= 1.0 and row["method"] == method


@pytest.mark.slow
def test_residual_variant_runs(tmp_path, cache):
    from sdmad_lite.run import run

    row = run(tiny_config(tmp_path, model={"adapter_mode": "residual", "pretrained": None, "adapter_hidden": 16},
                          train={"epochs": 3}, protocols=["integrated"]))
    assert 0.0 <= row["integrated.hamming_score"] <= 1.0


@pytest.mark.slow
def test_real_dataset_path_on_a_tiny_medmnist_file(tmp_path, cache):
    """The colab profile's data path (ChestMNIST npz → task → run), on a file the test writes."""
    from sdmad_lite.run import run

    rng = np.random.default_rng(0)

    def part(n):
        y = (rng.random((n, 14)) < 0.15).astype(np.uint8)
        y[:14] = np.eye(14, dtype=np.uint8)  # every finding present at least once...
        y[14:28] = np.eye(14, dtype=np.uint8)  # ...twice
        y[-6:] = 0  # some normals
        return rng.integers(0, 255, (n, 32, 32), dtype=np.uint8), y

    (tri, trl), (tei, tel) = part(60), part(40)
    np.savez(tmp_path / "chestmnist_224.npz", train_images=tri, train_labels=trl, val_images=tei[:2],
             val_labels=tel[:2], test_images=tei, test_labels=tel)
    cfg = tiny_config(tmp_path, data={"dataset": "chestmnist", "root": str(tmp_path), "n_test": 0, "n_pool": 0},
                      k_shot=1, protocols=["integrated", "per-anomaly"])
    row = run(cfg)
    assert row["data.dataset"] == "chestmnist" and row["integrated.n_images"] == 40


def _reference_branch_features(head, backbone, taps, mode):
    """The adapters written the plain way: one Adapter module per (branch, block), one branch at a time."""
    import torch.nn.functional as F

    blocks, per_branch = head.blocks, []
    for b in range(head.adapters.n_branches):
        ads = {blk: head.adapters.as_adapter(b, blk) for blk in blocks}
        if mode == "side":
            out = {blk: ads[blk](taps[blk]) for blk in blocks}
        else:
            stream = ads[blocks[0]](taps[blocks[0]])
            hook = lambda i, x: ads[i](x) if i in ads else x  # noqa: E731
            _, out = backbone.forward_image(None, taps=blocks[1:], hook=hook, start_block=blocks[0], stream=stream)
            out[blocks[0]] = stream
        per_branch.append(torch.stack([F.normalize(backbone.to_joint(out[blk][:, 0]), dim=-1) for blk in blocks], 1))
    return torch.stack(per_branch, 1)


@pytest.mark.parametrize("mode", ["side", "residual"])
def test_stacked_adapters_equal_one_adapter_per_branch(mode):
    """The batched computation (all branches, all blocks at once) is the paper's per-branch adapter."""
    from sdmad_lite.models.backbone import load
    from sdmad_lite.models.sdmad import SDMADHead

    torch.manual_seed(0)
    bb = load("phantomclip-tiny")
    blocks = [2, 3, 5, 6]
    head = SDMADHead(3, blocks, bb.width, hidden=8)
    with torch.no_grad():  # move the weights off their init so λ-mixing is visible
        for p in head.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randint(0, 255, (5, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        _, taps = bb.forward_image(bb.prepare(x), taps=blocks)
        got = head(taps, bb, mode)
        want = _reference_branch_features(head, bb, taps, mode)
    assert got.shape == (5, 4, 4, bb.embed_dim)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()


def test_stacked_adapters_draw_the_same_init_as_linear_layers():
    from sdmad_lite.models.adapters import BranchAdapters

    torch.manual_seed(3)
    ba = BranchAdapters(2, [1, 2], width=6, hidden=4, lam=0.8)
    torch.manual_seed(3)
    plain = [[Adapter(6, 4) for _ in range(2)] for _ in range(2)]
    for b in range(2):
        for j, blk in enumerate([1, 2]):
            assert torch.equal(ba.as_adapter(b, blk).fc1.weight, plain[b][j].fc1.weight)
            assert torch.equal(ba.as_adapter(b, blk).fc2.weight, plain[b][j].fc2.weight)


@pytest.mark.slow
def test_run_many_in_parallel_gives_the_rows_of_one_by_one(tmp_path, cache, monkeypatch):
    from sdmad_lite import methods, sweep
    from sdmad_lite import executor as R
    from sdmad_lite.processes import default_workers
    from sdmad_lite.task import get_task

    # the shipped weights: with random ones (pretrained None) every process would draw its own backbone
    cfgs = [methods.config_for(m, tiny_config(tmp_path, seed=s, protocols=["integrated"], train={"epochs": 3},
                                        model={"pretrained": "shipped"}))
            for s, m in ((0, "sdmad"), (1, "sdmad"), (1, "linear-probe"))]
    get_task(cfgs[0])  # features and text bank into the disk cache, which the workers read
    par = R.run_many(cfgs, workers=2)  # two spawned processes, results into the cache
    assert [(r["method"], r["seed"]) for r in par] == [(c.method, c.seed) for c in cfgs]  # input order
    monkeypatch.setenv("SDMAD_NO_RESULT_CACHE", "1")
    seq = R.run_many(cfgs, workers=1)  # recomputed here, one after the other
    def same(a, b):  # NaN (a category with no positive test image) equals NaN
        return a == b or (isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b))

    for a, b in zip(par, seq):
        assert a.keys() == b.keys() and all(same(a[k], b[k]) for k in a if k != "wall_time_s")
    # the sweep's local process pool (the same spawned pool) gives the same rows
    swept = sweep.sweep(cfgs[0], ["sdmad"], [0, 1], [cfgs[0].k_shot], tmp_path / "sweep.csv", workers=2)
    by_seed = {r["seed"]: r for r in swept}
    for want in par[:2]:
        got = by_seed[want["seed"]]
        assert {k: got[k] for k in ("integrated.subset_accuracy", "integrated.macro_auroc")} == \
               {k: want[k] for k in ("integrated.subset_accuracy", "integrated.macro_auroc")}
    monkeypatch.setenv("SDMAD_WORKERS", "two")
    with pytest.raises(ValueError, match="SDMAD_WORKERS"):
        default_workers()


def test_discrepancy_margins_refuse_a_stack_of_heads():
    """A tuned run's fold models are a stack; the margin function measures one head and says so (it used to
    read the stack's first model silently)."""
    from sdmad_lite.methods.heads import discrepancy_margins
    from sdmad_lite.models.backbone import load
    from sdmad_lite.models.sdmad import SDMADHead

    bb = load("phantomclip-tiny")
    stack = SDMADHead(3, [2, 4], bb.width, hidden=8, n_models=2)
    with pytest.raises(ValueError, match="one head"):
        discrepancy_margins(stack, None, None, np.zeros((1, 3)))
