"""Noisy sign pools (signs/noise.py): the expert signs of each category replaced, with ground truth."""
import numpy as np
import pytest

from sdmad_lite import config as C
from sdmad_lite import studies
from sdmad_lite.data.phantoms.catalogue import get_modality
from sdmad_lite.models.captions import UNCAPTIONED
from sdmad_lite.signs.bank import SignBank
from sdmad_lite.signs.noise import KINDS, is_drawn, noisy_selection, realized_fraction, renderer_sign

BANK = SignBank.load("phantom_chest")


def test_zero_noise_is_the_expert_selection_and_full_noise_replaces_every_sign():
    for c in BANK.categories:
        assert [s.id for s in noisy_selection(BANK, c, 0.0, "undrawn", 0)] == [s.id for s in BANK.selected(c)]
        for kind in ("undrawn", "other-category"):
            pool = noisy_selection(BANK, c, 1.0, kind, 0)
            assert len(pool) == len(BANK.selected(c)) and len({s.id for s in pool}) == len(pool)
            assert realized_fraction(BANK, c, pool) == 1.0
            assert not any(is_drawn(BANK, c, s.id) for s in pool)  # every replacement is wrong for the category


@pytest.mark.parametrize("kind", KINDS)
def test_the_fraction_replaced_and_the_kind_of_replacement(kind):
    for c in BANK.categories:
        expert = {s.id for s in BANK.selected(c)}
        pool = noisy_selection(BANK, c, 0.5, kind, 4)
        assert pool == noisy_selection(BANK, c, 0.5, kind, 4)  # deterministic
        new = [s for s in pool if s.id not in expert]
        assert len(new) == round(0.5 * len(expert))
        for s in new:
            if kind == "undrawn":
                assert s.id in {x.id for x in BANK.candidates(c)} and not is_drawn(BANK, c, s.id)
            elif kind == "uncaptioned":
                assert renderer_sign(BANK, s.id) in UNCAPTIONED
            else:
                assert any(s.id in {x.id for x in BANK.selected(o)} for o in BANK.categories if o != c)
    seeds = {tuple(s.id for s in noisy_selection(BANK, "Mass", 0.5, kind, seed)) for seed in range(12)}
    assert len(seeds) > 1  # which signs are replaced, and by what, depends on the seed


def test_ground_truth_follows_the_renderer():
    chest = get_modality("chest")
    assert is_drawn(BANK, "Effusion", "blunted_cp_angle") and not is_drawn(BANK, "Effusion", "subpulmonic")
    # Nodule's "scattered nodules" draws multiple small opacities, which Infiltration draws too
    assert "multiple_small_opacities" in chest.category_signs["Infiltration"]
    assert is_drawn(BANK, "Infiltration", "scattered_nodules")


def test_noisy_tasks_share_the_images_and_mark_the_pool():
    import torch

    from sdmad_lite.task import build_text_bank, with_sign_noise

    class Backbone:  # a text encoder that tells prompts apart (the task's image side is not needed)
        name, pretrained = "stub", None  # not PhantomCLIP: the default uncaptioned signs

        def mean_text(self, prompts):
            g = torch.Generator().manual_seed(hash(prompts[0]) % (2**31))
            return torch.nn.functional.normalize(torch.randn(8, generator=g), dim=0)

    cats = list(BANK.categories)
    text, ids, expert, drawn, known = build_text_bank(BANK, Backbone(), cats)
    for i, c in enumerate(cats):
        assert sorted(np.array(ids[i])[expert[i]]) == sorted(s.id for s in BANK.selected(c))
        assert all(drawn[i, j] == is_drawn(BANK, c, s) for j, s in enumerate(ids[i]) if s)
        assert all(known[i, j] <= drawn[i, j] for j in range(len(ids[i])))
    from dataclasses import fields

    from sdmad_lite.task import Task

    base = Task(**{f.name: None for f in fields(Task)})
    base.bank, base.backbone, base.categories, base.pool_feats = BANK, Backbone(), cats, object()
    noisy = with_sign_noise(base, 1.0, "other-category", 0)
    assert noisy.pool_feats is base.pool_feats  # features shared, not copied
    assert noisy.expert.sum() == sum(len(BANK.selected(c)) for c in cats)
    assert not (noisy.drawn & noisy.expert).any()  # every pool sign is wrong
    assert noisy.text.active.numpy().tolist() == noisy.expert.tolist()


def test_bad_noise_settings_are_refused(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("selection: {noise: 1.5}\n")
    with pytest.raises(C.ConfigError, match=r"selection\.noise.*in \[0, 1\]"):
        C.load_config(p)
    p.write_text("selection: {noise: 0.5, noise_kind: typo}\n")
    with pytest.raises(C.ConfigError, match=r"selection\.noise_kind: unknown value 'typo'; choose one of undrawn"):
        C.load_config(p)
    p.write_text("selection: {noise: 0.5, pool: all}\n")
    with pytest.raises(C.ConfigError, match="set selection.pool to expert"):
        C.load_config(p)
    p.write_text(f"data: {{dataset: chestmnist, root: {tmp_path}}}\nselection: {{noise: 0.5}}\n")
    with pytest.raises(C.ConfigError, match="ground truth"):
        C.load_config(p)
    with pytest.raises(ValueError, match="real bank"):
        noisy_selection(SignBank.load("chestxray14"), "Effusion", 0.5, "undrawn", 0)


def test_the_study_crosses_fraction_kind_variant_and_conspicuity():
    cfgs = studies.sign_noise(seeds=(0, 1))
    keys = {(c.selection.noise, c.selection.noise_kind, c.method, c.data.conspicuity, c.seed) for c in cfgs}
    assert len(keys) == len(cfgs)  # no run twice
    assert {c.selection.noise for c in cfgs} == set(studies.NOISE_FRACTIONS)
    assert {c.selection.noise_kind for c in cfgs if c.selection.noise} == set(KINDS)
    assert {c.method for c in cfgs} == set(studies.NOISE_METHODS)
    assert {c.data.conspicuity for c in cfgs} == set(studies.NOISE_CONSPICUITY)
