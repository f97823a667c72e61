"""The regime of the phantom sandbox (DESIGN.md, "The regime the sandbox must be in"): the shipped
oracle and partial PhantomCLIP checkpoints tell normal from abnormal phantoms (the anchor is not
inverted), and every knob of the pretraining recipe changes the captions or the recipe as documented."""
import json
import shlex

import numpy as np
import pytest

from sdmad_lite.models import captions as C
from sdmad_lite.models.pool import _render_chunk
from sdmad_lite.models.pretrain import PretrainConfig, sign_captioned

NORMAL = []  # a normal image: no sign
SIGNS = ["costophrenic_blunting", "meniscus_opacity", "mediastinal_shift"]


def _captions(style, signs, n=200, modality="chest", seed=0):
    rng = np.random.default_rng(seed)
    return [C.caption(modality, signs, rng, style) for _ in range(n)]


# ----------------------------------------------------------------------------- the anchor fix
def test_default_captions_never_negate():
    texts = _captions(C.CaptionStyle(), NORMAL) + _captions(C.CaptionStyle(), SIGNS)
    assert not any(" no " in f" {t} " or "without" in t for t in texts)
    old = _captions(C.CaptionStyle(negated=True), NORMAL)
    assert any(t.endswith("with no abnormal finding") for t in old)


def test_without_normal_anatomy_the_old_recipes_random_numbers_are_drawn():
    """Removing the negation only rewords the first normal template: same draws, same captions otherwise."""
    plain = C.CaptionStyle(normal_anatomy=False)
    new, old = _captions(plain, NORMAL, seed=3), _captions(C.CaptionStyle(negated=True, normal_anatomy=False), NORMAL, seed=3)
    for a, b in zip(new, old):
        assert a == b or (a.startswith("a healthy ") and b.endswith(" with no abnormal finding"))
    assert _captions(C.CaptionStyle(), SIGNS, seed=4) == _captions(C.CaptionStyle(negated=True, normal_anatomy=False), SIGNS, seed=4)


def test_normal_anatomy_describes_normals_in_positive_words():
    texts = _captions(C.CaptionStyle(normal_anatomy=True), NORMAL)
    anatomy = [t for t in texts if any(p in t for p in C.NORMAL_ANATOMY["chest"])]
    assert 0.3 < len(anatomy) / len(texts) < 0.7
    assert not any(p in t for t in _captions(C.CaptionStyle(normal_anatomy=False), NORMAL) for p in C.NORMAL_ANATOMY["chest"])


# ----------------------------------------------------------------------------- the vocabulary knob
def _phrases(texts, table, signs=SIGNS):
    return sum(p in t for t in texts for s in signs for p in table[s])


def test_radiological_share_picks_the_vocabulary():
    radio = _captions(C.CaptionStyle(radiological_share=1.0), SIGNS)
    lay = _captions(C.CaptionStyle(radiological_share=0.0), SIGNS)
    mixed = _captions(C.CaptionStyle(radiological_share=0.5), SIGNS)
    assert _phrases(lay, C.SIGN_PHRASES) == 0 and _phrases(lay, C.LAY_PHRASES) == 3 * len(lay)
    assert _phrases(radio, C.LAY_PHRASES) == 0 and _phrases(radio, C.SIGN_PHRASES) == 3 * len(radio)
    share = _phrases(mixed, C.SIGN_PHRASES) / (3 * len(mixed))
    assert 0.4 < share < 0.6
    with pytest.raises(ValueError):
        C.CaptionStyle(radiological_share=1.5)


def test_lay_vocabulary_is_not_the_sign_banks_wording():
    from sdmad_lite.signs.bank import SignBank

    C.check_no_category_names()  # lay phrases included
    lay = {p.lower() for ps in C.LAY_PHRASES.values() for p in ps}
    radiological = {p.lower() for ps in C.SIGN_PHRASES.values() for p in ps}
    assert not lay & radiological
    for modality in ("chest", "oct", "brain"):
        bank = SignBank.load(f"phantom_{modality}")
        texts = {s.text.lower() for c in bank.categories for s in bank.candidates(c)}
        assert not lay & texts
        # the bank's radiological terms never appear in a lay phrase
        for term in ("opacity", "costophrenic", "cardiac", "hyperreflective", "rpe", "hyperintens", "edema", "fluid"):
            assert not any(term in p for p in lay), term


# ----------------------------------------------------------------------------- what is captioned
def test_extra_uncaptioned_signs_are_never_described():
    cfg = PretrainConfig(extra_uncaptioned=("air_bronchogram",))
    style = cfg.style()
    assert style.uncaptioned == C.UNCAPTIONED | {"air_bronchogram"}
    texts = _captions(style, ["air_bronchogram", "lobar_consolidation"])
    assert _phrases(texts, C.SIGN_PHRASES, ["air_bronchogram"]) == 0
    assert _phrases(texts, C.SIGN_PHRASES, ["lobar_consolidation"]) == len(texts)
    assert C.caption_key("chest", ["air_bronchogram"], style.uncaptioned) == ("chest", frozenset({"<abnormal>"}))
    with pytest.raises(ValueError):
        PretrainConfig(extra_uncaptioned=("no_such_sign",))


def test_sign_caption_share_is_a_fixed_seeded_subset():
    assert sign_captioned(PretrainConfig(), 500).all()
    a = sign_captioned(PretrainConfig(sign_caption_share=0.4), 2000)
    assert 0.35 < a.mean() < 0.45 and (a == sign_captioned(PretrainConfig(sign_caption_share=0.4), 2000)).all()
    plain = [C.plain_caption("chest", np.random.default_rng(i)) for i in range(20)]
    assert all("normal" not in t and "abnormal" not in t for t in plain)
    assert not any(p in t for t in plain for ps in C.SIGN_PHRASES.values() for p in ps)


def test_pretraining_scanner_moves_the_images_and_zero_is_the_task_style():
    from sdmad_lite.data.phantoms.world import PhantomDataset

    job = ("chest", 2, 7, 64, 64, 0.3, 0, 2)
    plain, shifted = _render_chunk(job + ((0.0, 0),)), _render_chunk(job + ((0.8, 1),))
    ds = PhantomDataset("chest", 2, seed=7, size=64, normal_fraction=0.3)
    assert np.array_equal(plain["images"][0], ds[0]["image"])
    assert not np.array_equal(plain["images"], shifted["images"]) and plain["signs"] == shifted["signs"]


# ----------------------------------------------------------------------------- the recipe and its command
def test_defaults_are_the_first_recipe_with_the_anchor_fix():
    d = PretrainConfig()
    assert (d.steps, d.batch_size, d.lr, d.pool_per_modality, d.aux_weight, d.seed) == (1200, 128, 5e-4, 2500, 1.0, 1234)
    assert (d.radiological_share, d.sign_caption_share, d.extra_uncaptioned, d.scanner_shift) == (1.0, 1.0, (), 0.0)
    assert not d.negated_captions and d.normal_anatomy  # the anchor fix


def test_the_card_command_rebuilds_the_recipe():
    """Every knob is spelled out in the command, and the CLI parses it back to the same recipe."""
    import argparse
    from dataclasses import asdict

    from sdmad_lite.cli import models as cli

    import sdmad_lite.cli.models as mod

    parser = argparse.ArgumentParser()
    cli.add_subcommands(parser.add_subparsers())
    recipes = [PretrainConfig(steps=300, pool_per_modality=900, aux_weight=0.5, radiological_share=0.2,
                              sign_caption_share=0.6, extra_uncaptioned=("air_bronchogram", "calcified_focus"),
                              scanner_shift=0.3, scanner_seed=5, normal_anatomy=False, plain_captions=False, warmup=40),
               PretrainConfig(steps=40, aux_weight=0.0, radiological_share=0.3, image_from="shipped-oracle")]
    assert "--image-from" not in recipes[0].command() and "--image-from shipped-oracle" in recipes[1].command()
    for cfg in recipes:
        args = parser.parse_args(shlex.split(cfg.command(threads=1))[1:])
        captured = {}
        real = mod.pretrain
        mod.pretrain = lambda c, out, snapshots=(): captured.setdefault("cfg", c)
        try:
            args.func(args)
        finally:
            mod.pretrain = real
        assert asdict(captured["cfg"]) == asdict(cfg) and args.threads == 1
    default = PretrainConfig().command()
    assert "--no-negated-captions --normal-anatomy" in default and "--radiological-share 1.0" in default


def test_zeroshot_report_development_world_is_disjoint():
    from sdmad_lite.data import build
    from sdmad_lite.reports import REPORT_SEED_BASE

    dev = {REPORT_SEED_BASE["development"] + s for s in range(100)}
    book = {REPORT_SEED_BASE["evaluation"] + s for s in range(100)}
    assert not dev & book
    assert not dev & {build.TEST_SEED, build.POOL_SEED, build.DEV_TEST_SEED, build.DEV_POOL_SEED}


# ----------------------------------------------------------------------------- the shipped regime checkpoints
@pytest.mark.parametrize("name", ["shipped-oracle", "shipped-partial"])
@pytest.mark.parametrize("modality", ["chest", "oct", "brain"])
def test_shipped_regime_checkpoints_have_a_working_anchor(name, modality):
    from sdmad_lite import metrics as M
    from sdmad_lite.io import sha256_file
    from sdmad_lite.models import backbone as bb
    from sdmad_lite.models.checkpoints import SHIPPED, SHIPPED_ALIASES
    from sdmad_lite.reports import REPORT_SEED_BASE, report_phantoms
    from sdmad_lite.signs.bank import SignBank

    pt, card_file = SHIPPED[SHIPPED_ALIASES.get(name, name)]
    card = json.loads(card_file.read_text())
    assert sha256_file(pt) == card["sha256"] and not card["recipe"]["negated_captions"]
    assert card["command"].startswith("sdmad pretrain-phantomclip ") and card["wall_time_s"] > 0
    model = bb.load("phantomclip-tiny", name)
    images, y, _ = report_phantoms(modality, 60, REPORT_SEED_BASE["development"] + 99)
    a = SignBank.load(f"phantom_{modality}").anchor_prompts()
    v = model.encode_images(images)
    score = (v @ model.mean_text(a["abnormal"]) - v @ model.mean_text(a["normal"])).numpy()
    auc = M.binary_auroc((y.sum(1) > 0).astype(int), score)
    assert auc > 0.5, f"{name}: the anchor is inverted on {modality} phantoms (AUROC {auc:.2f})"


def test_without_plain_captions_only_sign_captioned_images_are_contrasted(tmp_path):
    """``--no-plain-captions``: the images captioned with the modality alone leave the contrastive loss (they
    would all share one caption key and be pulled together); with it, every image of the batch is in."""
    import torch

    from sdmad_lite.models.pretrain import contrastive_rows, pretrain

    has = torch.tensor([True, False, True, False, False])
    assert contrastive_rows(PretrainConfig(plain_captions=False), has) == [0, 2]
    assert contrastive_rows(PretrainConfig(), has) == [0, 1, 2, 3, 4]
    kw = dict(steps=2, batch_size=4, pool_per_modality=2, render_size=64, workers=1, warmup=1,
              sign_caption_share=0.0, plain_captions=False)  # no image in the contrastive loss: the tag loss alone
    ckpt = pretrain(PretrainConfig(**kw), tmp_path, log=lambda *a: None)
    card = json.loads((tmp_path / "phantomclip-tiny.card.json").read_text())
    assert ckpt.exists() and "--no-plain-captions" in card["command"] and card["sign_captioned_images"] == 0
    got, init = torch.load(ckpt, weights_only=True), _initial_weights(PretrainConfig(**kw).seed)
    text = [k for k in init if not k.startswith("visual.")]  # the text tower and logit scale: in no loss, untouched
    assert text and all(torch.equal(got[k], init[k]) for k in text)
    assert not all(torch.equal(got[k], init[k]) for k in init if k.startswith("visual."))  # the tag loss trained it
    with pytest.raises(ValueError, match="nothing would train"):
        PretrainConfig(sign_caption_share=0.0, plain_captions=False, aux_weight=0.0)


def _initial_weights(seed: int) -> dict:
    """The float16 state of the model ``pretrain`` starts from with ``seed`` (as it saves them)."""
    import torch

    from sdmad_lite.models import backbone as bb
    from sdmad_lite.seeding import seed_everything

    seed_everything(seed)
    return {k: (v.half() if torch.is_floating_point(v) else v) for k, v in bb.load(bb.PHANTOMCLIP, pretrained=None).model.state_dict().items()}


def test_locked_image_tuning_keeps_the_image_tower_and_trains_the_text_tower(tmp_path):
    """``image_from``: the image tower is the given checkpoint's, unchanged by training; the text tower is trained;
    the card names the source and its checksum, and its command rebuilds the recipe."""
    import torch

    from sdmad_lite.io import sha256_file
    from sdmad_lite.models.checkpoints import PHANTOMCLIP_ORACLE
    from sdmad_lite.models.pretrain import pretrain

    with pytest.raises(ValueError, match="aux_weight 0"):
        PretrainConfig(image_from="shipped-oracle", aux_weight=1.0)
    kw = dict(steps=3, batch_size=6, pool_per_modality=2, render_size=64, workers=1, warmup=1, aux_weight=0.0,
              image_from="shipped-oracle")
    ckpt = pretrain(PretrainConfig(**kw), tmp_path, log=lambda *a: None)
    got, src = torch.load(ckpt, weights_only=True), torch.load(PHANTOMCLIP_ORACLE, weights_only=True)
    visual = [k for k in src if k.startswith("visual.")]
    assert visual and all(torch.equal(got[k], src[k]) for k in visual)
    init = _initial_weights(PretrainConfig(**kw).seed)
    text = [k for k in src if k.startswith("transformer.")]
    assert not any(torch.equal(got[k], src[k]) for k in text if got[k].ndim == 2)  # a fresh text tower, not the oracle's
    assert not all(torch.equal(got[k], init[k]) for k in text)  # ... and trained
    few = dict(kw, steps=2, sign_caption_share=0.2, plain_captions=False)  # batches with < 2 captioned images: no step
    assert pretrain(PretrainConfig(**few), tmp_path / "few", log=lambda *a: None).exists()
    card = json.loads((tmp_path / "phantomclip-tiny.card.json").read_text())
    assert card["image_from"] == {"checkpoint": "shipped-oracle", "sha256": sha256_file(PHANTOMCLIP_ORACLE)}
    assert "--image-from shipped-oracle" in card["command"] and card["recipe"]["image_from"] == "shipped-oracle"


def test_stop_after_equals_the_snapshot_of_the_long_run(tmp_path):
    """``stop_after`` N trains the first N steps of the schedule: the weights a ``snapshots`` run writes after step N."""
    import torch

    from sdmad_lite.models.pool import render_pool
    from sdmad_lite.models.pretrain import pretrain

    kw = dict(steps=4, batch_size=4, pool_per_modality=2, render_size=64, workers=1, warmup=1, sign_caption_share=0.5)
    pool = render_pool(PretrainConfig(**kw), 128)
    pretrain(PretrainConfig(**kw), tmp_path / "long", log=lambda *a: None, pool=pool, snapshots=(2,))
    pretrain(PretrainConfig(**kw, stop_after=2), tmp_path / "short", log=lambda *a: None, pool=pool)
    a = torch.load(tmp_path / "long" / "phantomclip-tiny-step2.pt", weights_only=True)
    b = torch.load(tmp_path / "short" / "phantomclip-tiny.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    card = json.loads((tmp_path / "short" / "phantomclip-tiny.card.json").read_text())
    assert "--stop-after 2" in card["command"] and card["recipe"]["stop_after"] == 2
    with pytest.raises(ValueError):
        PretrainConfig(steps=4, stop_after=5)


def test_calibration_append_keeps_the_other_checkpoints_rows_and_every_run(tmp_path):
    """``calibrate_regime.py --append`` (the recipe search's file): a checkpoint measured again replaces its
    rows, the others' rows stay, and the meta keeps the command of every run that wrote rows."""
    import argparse
    import importlib.util
    from pathlib import Path

    import pandas as pd

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "calibrate_regime.py"
    spec = importlib.util.spec_from_file_location("calibrate_regime", path)
    cal = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cal)
    out = tmp_path / "search.csv"

    def run(checkpoints, value, argv):
        df = pd.DataFrame([{"checkpoint": ck, "modality": "chest", "zs_names": value} for ck in checkpoints])
        df, earlier = cal.appended(out, df, checkpoints)
        df.to_csv(out, index=False)
        cal._write_meta(out, argv, df, argparse.Namespace(), 0.0, {}, earlier, checkpoints if earlier is not None else None)

    run(["shipped", "/x/a.pt"], 1.0, ["--checkpoints", "shipped,/x/a.pt"])
    run(["/x/a.pt", "/x/b.pt"], 2.0, ["--checkpoints", "/x/a.pt,/x/b.pt", "--append"])
    df, meta = pd.read_csv(out), json.loads(out.with_suffix(".meta").read_text())
    assert dict(zip(df.checkpoint, df.zs_names)) == {"shipped": 1.0, "/x/a.pt": 2.0, "/x/b.pt": 2.0}
    assert [r["command"].split("--checkpoints ")[1] for r in meta["runs"]] == ["shipped,/x/a.pt", "/x/a.pt,/x/b.pt --append"]
    assert set(meta["checkpoints"]) == {"shipped", "/x/a.pt", "/x/b.pt"} and meta["checkpoints"]["shipped"]["sha256"]


@pytest.mark.parametrize("modality", ["chest", "oct", "brain"])
def test_no_anchor_prompt_is_negated_and_the_anchor_cause_table_puts_the_negated_one_back(modality):
    """A CLIP text tower reads words, not negation: no anchor prompt says "no ..." or "without ..." (normal #3
    is "... with normal findings" since issue 24). The anchor-cause table measures the first prompts with the
    negated normal #3 put back; its "shipped" subset is exactly the bank's prompts."""
    import importlib.util
    import re
    from pathlib import Path

    from sdmad_lite.signs.bank import SignBank

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "calibrate_regime.py"
    spec = importlib.util.spec_from_file_location("calibrate_regime", path)
    cal = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cal)
    bank = SignBank.load(f"phantom_{modality}")
    anchors = bank.anchor_prompts()
    for side, qs in anchors.items():
        assert len(qs) == 5 and not [q for q in qs if re.search(r"\b(no|not|without)\b", q)], (side, qs)
    old = cal.negated_anchors(bank)
    assert old["normal"][2] == f"a {bank.obj} with no abnormal findings" and old["abnormal"] == anchors["abnormal"]
    assert [q for q, o in zip(anchors["normal"], old["normal"]) if q != o] == [f"a {bank.obj} with normal findings"]
    assert cal.ANCHOR_SUBSETS["normal #3 in positive words (shipped)"] == ((0, 1, 2, 3, 4), (0, 1, 2, 3, 4), False)
    assert all(neg for name, (_, _, neg) in cal.ANCHOR_SUBSETS.items() if "shipped" not in name)


def _calibrate_regime():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "calibrate_regime.py"
    spec = importlib.util.spec_from_file_location("calibrate_regime", path)
    cal = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cal)
    return cal


def test_the_shots_curve_skips_a_k_the_pool_cannot_supply(monkeypatch):
    """``calibrate_regime.py --shots-curve``: one row per k × method the pool supplies; a larger k is skipped
    (with the reason logged), not fatal, and the smaller ones are kept."""
    from sdmad_lite.data.fewshot import PoolTooSmallError

    cal = _calibrate_regime()

    def fake_runs(ck, modality, k, seeds, method, workers=1):
        if k > 8:
            raise PoolTooSmallError(f"k_shot = {k} cannot be drawn from the pool; use a smaller k")
        v = 0.6 + 0.01 * k + (0.0 if method == cal.FROZEN else 0.05)
        return [{cal.ANOMALY_COLUMNS: v + 0.001 * s, "per-anomaly.mean_auroc": v} for s in seeds]

    monkeypatch.setattr(cal, "runs", fake_runs)
    logged = []
    df = cal.shots_curve(["shipped"], ["oct"], [4, 8, 16], [1, 2, 3], ["linear-probe", cal.FROZEN], logged.append)
    assert sorted(set(df.k_shot)) == [4, 8] and len(df) == 4
    assert df.set_index(["k_shot", "method"]).loc[(8, "linear-probe"), "anomaly_columns"] == pytest.approx(100 * (0.6 + 0.08 + 0.05 + 0.002), abs=0.05)
    assert any("k = 16: skipped" in m for m in logged)


def test_the_shipped_shots_curve_repeats_the_calibrations_k4_runs():
    """``shots_curve.csv`` (chapter 5) and ``calibration.csv`` measure the default on the same development
    draws: at k = 4 the linear probe and the frozen sign prompts must agree (else one file is stale)."""
    import pandas as pd

    from sdmad_lite import studies
    from sdmad_lite.results import read_meta

    sc = pd.read_csv(studies.RESULTS / "shots_curve.csv")
    cal = pd.read_csv(studies.RESULTS / "calibration.csv")
    meta, cmeta = read_meta(studies.RESULTS / "shots_curve.csv"), read_meta(studies.RESULTS / "calibration.csv")
    assert "--shots-curve" in meta["command"] and meta["settings"]["seeds"] == cmeta["settings"]["seeds"]
    for m in ("chest", "oct", "brain"):
        c = cal[(cal.checkpoint == "shipped") & (cal.modality == m)].iloc[0]
        for method in ("linear-probe", "zeroshot-signs"):
            r = sc[(sc.checkpoint == "shipped") & (sc.modality == m) & (sc.method == method) & (sc.k_shot == 4)].iloc[0]
            assert r.anomaly_columns == pytest.approx(c[f"k4_{method}"], abs=0.05), (m, method)


def test_a_band_says_whether_a_value_is_inside_and_how_far_outside():
    from sdmad_lite.io import RESOURCES
    from sdmad_lite.reports import BANDS, Band

    for band, text, inside, outside, by in ((Band(50, 60), "[50, 60]", (50, 55, 60), (49, 61.5), (1, 1.5)),
                                            (Band(None, 65), "<= 65", (10, 65), (65.5,), (0.5,)),
                                            (Band(50, None), "> 50", (50.1, 99), (50, 40), (0, 10))):
        assert str(band) == text
        assert all(band.contains(x) and band.outside_by(x) == 0 for x in inside)
        assert [band.contains(x) for x in outside] == [False] * len(outside)
        assert [band.outside_by(x) for x in outside] == pytest.approx(list(by))
    # the shipped calibration was judged against the bands the library holds now (the chapters read reports.BANDS)
    meta = json.loads((RESOURCES / "results" / "calibration.meta").read_text())
    assert meta["bands"] == {m: {src: str(b) for src, b in bb.items()} for m, bb in BANDS.items()}


def test_recipe_seeds_reuse_a_build_of_the_same_recipe_and_stop_when_the_cards_seed_drifts(tmp_path, monkeypatch):
    """``calibrate_regime.py --recipe-seeds``: a folder whose card holds the default's recipe with that seed is
    reused (nothing is built); the card's own seed must give the shipped weights within the tolerance, else the
    run stops before any other seed is read."""
    import dataclasses
    import shutil

    import torch

    from sdmad_lite.models.checkpoints import SHIPPED
    from sdmad_lite.models import pretrain as P

    cal = _calibrate_regime()
    card = json.loads(SHIPPED["shipped"][1].read_text())
    seed = card["recipe"]["seed"]
    d = tmp_path / f"seed{seed}"
    d.mkdir()
    shutil.copy(SHIPPED["shipped"][0], d / "phantomclip-tiny.pt")
    recipe = json.loads(json.dumps(dataclasses.asdict(P.PretrainConfig(**card["recipe"]))))
    (d / "phantomclip-tiny.card.json").write_text(json.dumps({"recipe": recipe}))
    monkeypatch.setattr(P, "pretrain", lambda *a, **k: pytest.fail("a build of the same recipe must be reused"))
    logged = []
    built, vs_shipped = cal.build_recipe_seeds([seed], tmp_path, logged.append)
    assert built == {seed: str(d / "phantomclip-tiny.pt")} and vs_shipped == {"sha256_equal": True, "max_abs_diff": 0.0}
    assert any("largest tensor difference 0" in m for m in logged)
    state = torch.load(d / "phantomclip-tiny.pt", map_location="cpu", weights_only=True)
    state["text_projection"] += 10 * cal.REBUILD_TOLERANCE  # drifted further than float rounding
    torch.save(state, d / "phantomclip-tiny.pt")
    with pytest.raises(SystemExit, match="no longer rebuilds the default"):
        cal.build_recipe_seeds([seed], tmp_path, logged.append)
    # a folder holding another recipe is neither reused nor overwritten
    (d / "phantomclip-tiny.card.json").write_text(json.dumps({"recipe": {**recipe, "lr": 1.0}}))
    with pytest.raises(SystemExit, match="holds a build of another recipe"):
        cal.build_recipe_seeds([seed], tmp_path, logged.append)
    assert (d / "phantomclip-tiny.pt").is_file()
    # --recipe-change: its own folder, a changed recipe, and no drift check against the shipped file
    changes = cal.parse_changes("lr=0.0002,stop_after=40")
    assert changes == {"lr": 0.0002, "stop_after": 40} and cal.recipe_folder(seed, changes) == f"seed{seed}-lr0.0002-stop_after40"
    with pytest.raises(SystemExit, match="FIELD=VALUE"):
        cal.parse_changes("seed=3")
    made = []
    monkeypatch.setattr(P, "pretrain", lambda cfg, out, log: made.append(cfg) or _fake_build(cfg, out))
    assert cal.build_recipe_seeds([seed], tmp_path, logged.append, changes)[1] is None
    assert made[0].lr == 0.0002 and made[0].stop_after == 40 and made[0].seed == seed


def _fake_build(cfg, out):
    import dataclasses

    import torch

    from sdmad_lite.models.checkpoints import SHIPPED

    out.mkdir(parents=True, exist_ok=True)
    state = torch.load(SHIPPED["shipped"][0], map_location="cpu", weights_only=True)
    state["text_projection"] += 1.0  # far from the shipped weights: no drift check may run on a changed recipe
    torch.save(state, out / "phantomclip-tiny.pt")
    (out / "phantomclip-tiny.card.json").write_text(json.dumps({"recipe": json.loads(json.dumps(dataclasses.asdict(cfg)))}))
