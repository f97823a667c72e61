"""Checkpoints of the frozen backbone: reading a state dict safely, checking it fits the model, and
the shipped PhantomCLIP-tiny checkpoint's checksum against its model card."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ..io import sha256_file
from .captions import UNCAPTIONED
from ..errors import SdmadError

PHANTOMCLIP = "phantomclip-tiny"
MODELS_DIR = Path(__file__).resolve().parent
PHANTOMCLIP_CONFIG_FILE = MODELS_DIR / f"{PHANTOMCLIP}.json"
#: the default checkpoint, the *partial* regime (DESIGN.md, "The regime the sandbox must be in"), the oracle's
#: image tower, frozen, under a text tower trained 20 steps on lay-vocabulary captions (locked-image tuning);
#: it knows the medical signs only partly, calibrated to the published zero-shot figures and the k = 4 margin
#: (``benchmarks/calibrate_regime.py``, ``resources/results/calibration.csv``)
PHANTOMCLIP_CHECKPOINT = MODELS_DIR / f"{PHANTOMCLIP}.pt"
PHANTOMCLIP_CARD = MODELS_DIR / f"{PHANTOMCLIP}.card.json"
#: the contrast, the *oracle* regime, every captioned sign in the sign bank's words, the full recipe
#: (1000 steps, caption-tag loss); a backbone that already knows the answer
PHANTOMCLIP_ORACLE = MODELS_DIR / f"{PHANTOMCLIP}-oracle.pt"
PHANTOMCLIP_ORACLE_CARD = MODELS_DIR / f"{PHANTOMCLIP}-oracle.card.json"
#: ``model.pretrained`` names of the shipped PhantomCLIP-tiny checkpoints -> (file, model card)
SHIPPED: dict[str, tuple[Path, Path]] = {
    "shipped": (PHANTOMCLIP_CHECKPOINT, PHANTOMCLIP_CARD),
    "shipped-oracle": (PHANTOMCLIP_ORACLE, PHANTOMCLIP_ORACLE_CARD),
}
#: other spellings accepted for them
SHIPPED_ALIASES = {"default": "shipped", "partial": "shipped", "shipped-partial": "shipped", "oracle": "shipped-oracle"}


def shipped_checkpoint(pretrained: str | None) -> Path | None:
    """The file of a shipped PhantomCLIP-tiny checkpoint name (``shipped``, ``shipped-partial``…), else None."""
    if pretrained is None:
        return None
    name = SHIPPED_ALIASES.get(str(pretrained), str(pretrained))
    return SHIPPED[name][0] if name in SHIPPED else None


class BackboneError(SdmadError, RuntimeError):
    """The backbone cannot be built as asked (unknown name, weights unavailable, bad checkpoint)."""


def load_state(model: torch.nn.Module, path: Path, name: str, card: Path | None = None) -> None:
    """Load the state dict in ``path`` into ``model`` (backbone ``name``); ``card``: a model card whose
    ``sha256`` the file must match (the shipped checkpoints). Every problem is one BackboneError."""
    if not path.is_file():
        hint = " Build it with `sdmad pretrain-phantomclip`." if name == PHANTOMCLIP else ""
        raise BackboneError(f"checkpoint not found: {path}.{hint}")
    if card is not None and card.is_file():
        try:
            want = json.loads(card.read_text()).get("sha256")
        except (ValueError, AttributeError) as e:
            raise BackboneError(f"{card} (the model card of {path.name}) is not valid JSON ({e}); "
                                "reinstall the package or rebuild with `sdmad pretrain-phantomclip`") from None
        got = sha256_file(path)
        if want and want != got:
            raise BackboneError(
                f"{path} has sha256 {got[:12]}…, the model card says {want[:12]}…: the shipped checkpoint "
                "is damaged or was replaced. Reinstall the package or rebuild it with `sdmad pretrain-phantomclip`."
            )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        detail = (str(e).strip().splitlines() or [""])[0].split(". ")[0][:120]
        raise BackboneError(f"{path} is not a readable checkpoint ({type(e).__name__}{': ' + detail if detail else ''}); "
                            "it may be empty or truncated (an interrupted download or copy): re-download or rebuild it") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    not_tensors = [k for k, v in state.items() if not torch.is_tensor(v)] if isinstance(state, dict) else None
    if not_tensors is None or not_tensors or not state:
        what = (f"a {type(state).__name__}" if not_tensors is None else "an empty dict" if not state
                else f"a dict with non-tensor entries {not_tensors[:3]}")
        raise BackboneError(f"{path} is not a model state dict ({what}); pass the file of an open_clip "
                            f"state dict of {name} (e.g. written by `sdmad pretrain-phantomclip`)")
    state = {k: v.float() if torch.is_floating_point(v) else v for k, v in state.items()}
    problems = state_mismatch(model.state_dict(), state)
    if problems:
        raise BackboneError(f"{path} is a checkpoint of another model, not {name}: {problems}. "
                            f"Pass a checkpoint of {name}, or the backbone name that matches the checkpoint.")
    model.load_state_dict(state, strict=True)


def state_mismatch(want: dict, got: dict) -> str:
    """'' when ``got`` fits ``want`` key for key and shape for shape; else a short description."""
    missing = [k for k in want if k not in got]
    unexpected = [k for k in got if k not in want]
    shapes = [f"{k} {tuple(got[k].shape)} instead of {tuple(want[k].shape)}"
              for k in want if k in got and tuple(got[k].shape) != tuple(want[k].shape)]
    out = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", shapes)):
        if items:
            out.append(f"{len(items)} {label} (e.g. {', '.join(items[:2])})")
    return "; ".join(out)


class quiet_random_init:
    """Silence open_clip's "Model initialized randomly" warning when a checkpoint is loaded right after
    (the warning would say the opposite of what happens); a failed load still raises."""

    def __init__(self, active: bool) -> None:
        self.active = active

    def filter(self, record) -> bool:  # logging.Filter protocol
        return "initialized randomly" not in record.getMessage()

    def __enter__(self):
        if self.active:
            logging.getLogger().addFilter(self)
        return self

    def __exit__(self, *exc) -> None:
        logging.getLogger().removeFilter(self)


def uncaptioned_signs(backbone: str, pretrained: str | None) -> frozenset:
    """The signs a PhantomCLIP checkpoint's captions never described: its model card's list, else the
    default (:data:`~sdmad_lite.models.captions.UNCAPTIONED`; other backbones: the same default)."""
    if backbone != PHANTOMCLIP or pretrained is None:
        return UNCAPTIONED
    name = SHIPPED_ALIASES.get(str(pretrained), str(pretrained))
    p = Path(str(pretrained))
    card = SHIPPED[name][1] if name in SHIPPED else p.with_name(p.stem + ".card.json")
    try:
        return frozenset(json.loads(card.read_text())["uncaptioned_signs"])
    except (OSError, ValueError, KeyError):
        return UNCAPTIONED
