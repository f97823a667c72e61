"""The shift placement (the paper's Shift Adapter): the image-side formula, the text side exact from cached
end-of-text states, the head at initialisation at the frozen scores, a stack equal to its heads one at a time,
the block inputs in the task's features, and a tuned run end to end."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sdmad_lite.config import ExperimentConfig
from sdmad_lite.models.sdmad import SDMADHead, TextBank
from sdmad_lite.models.shift import PromptStates, TextShift

PROMPTS = ["a chest x-ray with a blunted costophrenic angle", "a chest x-ray with an enlarged cardiac silhouette",
           "a chest x-ray with no abnormal finding"]


@pytest.fixture(scope="module")
def backbone():
    from sdmad_lite.models.backbone import load

    return load("phantomclip-tiny")


def _perturb(module: torch.nn.Module, scale: float = 0.3) -> None:
    """Move the weights off their near-identity init, so that the adapters' part is visible."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


def _full_forward_with_adapter(bb, text: str, down: torch.Tensor, up: torch.Tensor, lam: float) -> torch.Tensor:
    """The text embedding with a parallel adapter on the last text layer applied to every token by hand:
    the whole text transformer run, no cached state."""
    m = bb.model
    tok = bb.tokenizer([text])
    x = m.token_embedding(tok) + m.positional_embedding
    blocks = m.transformer.resblocks
    for block in blocks[:-1]:
        x = block(x, attn_mask=m.attn_mask)
    ada = F.leaky_relu(F.leaky_relu(x @ down) @ up)
    x = lam * blocks[-1](x, attn_mask=m.attn_mask) + (1 - lam) * ada
    x = m.ln_final(x)[0, int(tok[0].argmax())]
    return F.normalize(x @ m.text_projection, dim=-1)


def test_the_cached_eot_path_is_the_full_text_forward(backbone):
    """Adapted embeddings from the cached end-of-text states equal a full forward with the adapter by hand
    (the 77-token padded forward, not the trimmed one), and at λ = 1 the frozen embeddings."""
    torch.manual_seed(0)
    order = PROMPTS + PROMPTS[:1]  # two signs, then the two anchors
    groups = [[p] for p in order]
    states = PromptStates.of(backbone, groups, (1, 2))
    shift = TextShift(states, hidden=8, lam=0.7)
    _perturb(shift)
    with torch.no_grad():
        signs, normal, abnormal = shift()
        got = torch.cat([signs[0, 0], normal, abnormal])
        want = torch.cat([_full_forward_with_adapter(backbone, p, shift.down[0], shift.up[0], 0.7)[None]
                          for p in order])
        assert torch.allclose(got, want, atol=2e-5), (got - want).abs().max()
        frozen = TextShift(states, hidden=8, lam=1.0)
        _perturb(frozen)
        s1, n1, a1 = frozen()
        enc = backbone.encode_text(order)
        assert torch.allclose(torch.cat([s1[0, 0], n1, a1]), enc, atol=1e-5)
        assert not torch.allclose(got, enc, atol=1e-3)  # the adapter does change the text at λ < 1


def test_a_sign_is_the_normalised_mean_of_its_adapted_prompts(backbone):
    torch.manual_seed(1)
    groups = [PROMPTS[:2], [], [PROMPTS[2]], [PROMPTS[0]]]  # sign 0 has two prompts; sign 1 is padding
    shift = TextShift(PromptStates.of(backbone, groups, (1, 2)), hidden=8, lam=0.6)
    _perturb(shift)
    with torch.no_grad():
        signs, _, _ = shift()
        each = [_full_forward_with_adapter(backbone, p, shift.down[0], shift.up[0], 0.6) for p in PROMPTS[:2]]
    assert torch.allclose(signs[0, 0, 0], F.normalize(each[0] + each[1], dim=0), atol=2e-5)
    assert torch.equal(signs[0, 0, 1], torch.zeros_like(signs[0, 0, 1]))


def test_the_image_side_mixes_the_adapter_of_a_blocks_input_with_its_output():
    torch.manual_seed(2)
    taps = {b: torch.randn(4, 5, 16) for b in (1, 2, 3)}
    head = SDMADHead(2, [2, 3], 16, hidden=8, init="default")
    proj = torch.randn(16, 6)
    u = head.branch_features(taps, lambda x: x @ proj, shift=True)  # (B, 3 branches, 2 blocks, D)
    for b in range(3):
        for j, blk in enumerate([2, 3]):
            a = head.adapters.as_adapter(b, blk)
            want = 0.8 * taps[blk][:, 0] + 0.2 * a.act(a.fc2(a.act(a.fc1(taps[blk - 1][:, 0]))))
            assert torch.allclose(u[:, b, j], F.normalize(want @ proj, dim=-1), atol=1e-5)


def _synthetic_states(c: int, k: int, width: int = 12, embed: int = 6) -> PromptStates:
    g = torch.Generator().manual_seed(5)
    n = c * k * 2 + 2 * 2  # two prompts per slot
    proj = torch.randn(width, embed, generator=g)
    slot = torch.arange(c * k + 2).repeat_interleave(2)
    return PromptStates(torch.randn(n, width, generator=g), torch.randn(n, width, generator=g), slot, (c, k),
                        lambda h: F.layer_norm(h, h.shape[-1:]) @ proj)


def test_a_stack_of_shift_heads_scores_as_each_head_alone():
    """Image and text adapters of M heads stacked: logits, sign similarities and every loss term per model
    equal to the heads run one at a time."""
    from sdmad_lite.methods.heads import loss_terms

    torch.manual_seed(3)
    states = _synthetic_states(3, 2)
    taps = {b: torch.randn(5, 4, 16) for b in (0, 1, 2)}
    one = [SDMADHead(3, [1, 2], 16, hidden=8, text_states=states) for _ in range(2)]
    for h in one:
        _perturb(h)
    stack = SDMADHead(3, [1, 2], 16, hidden=8, n_models=2, text_states=states)
    with torch.no_grad():
        stack.adapters.down.copy_(torch.cat([h.adapters.down for h in one], 2))
        stack.adapters.up.copy_(torch.cat([h.adapters.up for h in one], 1))
        stack.shift_text.down.copy_(torch.cat([h.shift_text.down for h in one]))
        stack.shift_text.up.copy_(torch.cat([h.shift_text.up for h in one]))
    proj = torch.randn(16, 6)
    to_joint = lambda x: x @ proj  # noqa: E731
    t = F.normalize(torch.randn(3, 2, 6), dim=-1)  # the frozen signs: the shift heads score their own
    text = TextBank(t, torch.ones(3, 2, dtype=torch.bool), t[0, 0], t[1, 1], torch.tensor([[1, 0], [1, 1], [0, 1]]).bool())
    y = torch.tensor([[1, 0, 0], [0, 1, 1], [0, 0, 0], [1, 1, 0], [0, 0, 1]]).float()
    u = stack.per_model(stack.branch_features(taps, to_joint, shift=True))
    cat, anc = stack.logits(u, text)
    sims = stack.sign_similarities(u, text)
    terms = loss_terms(stack, u, y, text, ExperimentConfig(), torch.ones(2, 5))
    for m, h in enumerate(one):
        u1 = h.branch_features(taps, to_joint, shift=True)
        c1, a1 = h.logits(u1, text)
        assert torch.allclose(cat[m], c1, atol=1e-5) and torch.allclose(anc[m], a1, atol=1e-5)
        assert torch.allclose(sims[m], h.sign_similarities(u1, text), atol=1e-6)
        for name, v in loss_terms(h, u1, y, text, ExperimentConfig()).items():
            assert torch.allclose(terms[name][m], v, atol=1e-5), name


def test_block_inputs_are_tapped_down_to_the_embeddings(backbone):
    """Under the shift placement the task keeps blocks ℓ − 1 too; tap 0 is block 1's input (the embeddings
    after ln_pre)."""
    from sdmad_lite.features import extract
    from sdmad_lite.task import feature_taps, task_key

    shift = ExperimentConfig.from_dict({"model": {"adapter_mode": "shift"}})
    assert feature_taps(shift, [1, 3]) == ([0, 1, 2, 3], [])
    assert feature_taps(shift, [1, 3], "all") == ([0, 1, 2, 3], [0, 1, 2, 3])
    assert feature_taps(ExperimentConfig(), [1, 3], "first") == ([1, 3], [1])
    assert task_key(shift) != task_key(ExperimentConfig())
    imgs = np.random.default_rng(0).integers(0, 255, (3, 40, 40), dtype=np.uint8)
    feats = extract(backbone, lambda i: imgs[i], 3, [0, 1], patches=[0, 1])
    with torch.no_grad():
        x = backbone.model.visual._embeds(backbone.prepare(imgs))
        block1 = backbone.model.visual.transformer.resblocks[0](x)
    assert torch.allclose(feats.taps[0].float(), x, atol=1e-2) and torch.allclose(feats.taps[1].float(), block1, atol=1e-2)


def _tiny(**over) -> ExperimentConfig:
    d = {"seed": 2, "k_shot": 2, "model": {"adapter_hidden": 8, "adapter_mode": "shift"},
         "data": {"n_test": 30, "n_pool": 150, "image_size": 32}, "protocols": ["integrated"],
         "tuning": {"max_epochs": 5, "patience": 3}}
    d.update(over)
    return ExperimentConfig.from_dict(d)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One feature and text cache for the module's runs; the text encoded on one thread (the cores are shared)."""
    from sdmad_lite.train import one_thread

    with pytest.MonkeyPatch.context() as mp, one_thread(True):
        mp.setenv("SDMAD_CACHE", str(tmp_path_factory.mktemp("shift") / "cache"))
        mp.delenv("SDMAD_PROFILE", raising=False)
        yield


@pytest.mark.slow
def test_shift_head_at_initialisation_scores_the_frozen_features(cache):
    """Near-identity init (image and text up-projections × 0.01) scores as the frozen head; at λ = 1 the
    head's text is the frozen text bank and its scores those of the frozen side head."""
    from sdmad_lite.methods.heads import head_scores, make_head
    from sdmad_lite.task import get_task

    cfg = _tiny()
    task = get_task(cfg, patches="none")
    assert sorted(task.pool_feats.taps) == sorted(set(task.blocks) | {b - 1 for b in task.blocks})
    text = task.text_columns(list(range(len(task.categories))))
    frozen = make_head(task, cfg, lam=1.0)
    tv = frozen.text_vectors(task.text)
    for got, want in ((tv.signs, task.text.signs), (tv.normal, task.text.normal), (tv.abnormal, task.text.abnormal)):
        assert torch.allclose(got, want, atol=1e-5)
    a, _ = head_scores(make_head(task, cfg), task, task.test_feats, text, "shift")
    b, _ = head_scores(frozen, task, task.test_feats, text, "shift")
    side = ExperimentConfig.from_dict({**cfg.to_dict(), "model": {"adapter_hidden": 8}})
    c, _ = head_scores(make_head(task, side, lam=1.0), task, task.test_feats, text, "side")
    assert np.abs(a - b).max() < 0.02 and np.abs(b - c).max() < 1e-4


@pytest.mark.slow
def test_tuned_sdmad_shift_runs_end_to_end(cache):
    from sdmad_lite.methods import config_for
    from sdmad_lite.run import run

    cfg = config_for("sdmad-shift", _tiny(protocols=["integrated"]))
    assert cfg.model.adapter_mode == "shift" and len(cfg.tuning.grid) == 2
    row = run(cfg)
    assert row["method"] == "sdmad-shift" and row["model.adapter_mode"] == "shift"
    assert 0.0 <= row["integrated.subset_accuracy"] <= 1.0 and row["support_scores"] == "out-of-fold"
    assert row["tuning.points"] == 4 and row["tuning.epochs"] <= 5
