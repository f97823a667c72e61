"""Where a backbone's weights come from: the key that identifies them in the caches, whether hub weights
are cached, the build recipe (QuickGELU, preprocessing) that published weights need, local weight files,
and what to say when weights are not here. ``models/backbone.py`` builds the model from these."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import open_clip
import torch

from ..io import sha256_file
from .checkpoints import PHANTOMCLIP, SHIPPED, BackboneError

WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def _weights_key(name: str, pretrained: str | None) -> str:
    """What identifies these weights in the caches: the checkpoint's sha256 for a file, the
    name for hub weights; random weights get a key of their own that is never reused."""
    if pretrained is None:
        return f"{name}|random-{uuid.uuid4().hex}"
    p = Path(str(pretrained))
    if p.is_dir():
        p = _local_weights(str(p)) or p
    if p.is_file():
        card = _card_of(p)
        if card is not None and card.is_file():
            return f"{name}|sha256:{json.loads(card.read_text())['sha256']}"
        return f"{name}|sha256:{sha256_file(p)}"
    return f"{name}|{pretrained}"


def weights_cached(name: str, pretrained: str | None) -> bool:
    """True when the hub weights ``pretrained`` of ``name`` are in the local Hugging Face cache."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # the colab extra is not installed: nothing can be cached
        return False
    try:
        pc = open_clip.pretrained.get_pretrained_cfg(name, pretrained or "")
    except Exception:  # noqa: BLE001 — an unknown tag has no cached copy
        return False
    hub = pc.get("hf_hub", "")
    if not hub:
        return False
    repo = "/".join(hub.strip("/").split("/")[:2])  # "timm/vit_base_patch16_clip_224.openai/" -> repo id
    return any(isinstance(try_to_load_from_cache(repo, f), str)
               for f in ("open_clip_pytorch_model.bin", "open_clip_model.safetensors"))


def _card_of(path: Path) -> Path | None:
    """The model card a checkpoint must match: the shipped one's, else none."""
    return {pt: card for pt, card in SHIPPED.values()}.get(path)


def recipe(name: str, tag: str | None) -> dict:
    """What weights published under open_clip tag ``tag`` need from the model: QuickGELU or not, and the
    preprocessing constants. OpenAI's weights were trained with QuickGELU; building their architecture
    with plain GELU silently degrades every score, so a model built for an ``openai`` tag always gets it."""
    pc = open_clip.get_pretrained_cfg(name, tag) if tag else {}
    return {"quick_gelu": bool(pc.get("quick_gelu", tag == "openai")) or name.endswith("-quickgelu"),
            "mean": tuple(pc.get("mean", open_clip.OPENAI_DATASET_MEAN)),
            "std": tuple(pc.get("std", open_clip.OPENAI_DATASET_STD))}


def create(name: str, tag: str | None, device: str = "cpu", weights: str | None = None) -> tuple[torch.nn.Module, dict]:
    """Build ``name`` as the weights of ``tag`` need (:func:`recipe`); ``weights``: the open_clip
    ``pretrained`` argument (a tag, a file, or None for random weights — the code path tests use)."""
    r = recipe(name, tag)
    model = open_clip.create_model(name, pretrained=weights, device=device, force_quick_gelu=r["quick_gelu"])
    return model, r


def _local_weights(pretrained: str) -> Path | None:
    """The weight file a local ``pretrained`` names: a file, or a model folder holding one."""
    p = Path(pretrained).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        for f in WEIGHT_FILES:
            if (p / f).is_file():
                return p / f
        raise BackboneError(f"{p} holds no open_clip weights ({' or '.join(WEIGHT_FILES)}); give the file itself, "
                            "or the folder `huggingface-cli download` wrote")
    return None


def missing_weights_message(name: str, tag: str | None, detail: str) -> str:
    """Where to put weights that are not here, and the one command that fetches them on a networked machine."""
    hub = (open_clip.get_pretrained_cfg(name, tag or "").get("hf_hub") or "").strip("/")
    fetch = (f"`huggingface-cli download {hub} --local-dir WEIGHTS_DIR` on a machine with a network, copy "
             "WEIGHTS_DIR here and set model.pretrained: WEIGHTS_DIR (keep model.weights_tag: "
             f"{tag})" if hub else "download the checkpoint file on a machine with a network and set "
             "model.pretrained to its path")
    return (f"the {tag or 'hub'} weights of {name} are not here ({detail}). They download on first use where there "
            f"is a network (HF_HUB_OFFLINE unset); without one: {fetch}. Or use the offline profile "
            f"(backbone {PHANTOMCLIP!r}).")
