"""Frozen features and their caches: image taps and embeddings, and text embeddings.

The backbone is frozen, so what it computes for an image or a text never changes: the taps
(tokens after the adapted blocks) and the final image embedding are computed once per (backbone,
dataset) and kept on disk under ``cache_dir("features")``; text embeddings once per (encoder,
text) under ``cache_dir("text_embeddings")`` (:class:`TextEmbeddings`). The side adapters read the taps
directly, the shift adapters also the blocks before them (tap 0: the embeddings); the residual
adapters resume the frozen forward pass from the first adapted block
(``Backbone.forward_image(start_block=..., stream=...)``), so for them the cache is exact up to
that block. Only the tokens a method reads are kept (:data:`PATCHES`): class tokens, unless the
method reads patches.
"""
from __future__ import annotations

import hashlib
import warnings
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .io import atomic_write, cache_dir, stable_hash
from .errors import SdmadError
from .processes import ordered_batches

MIN_PARALLEL_IMAGES = 256  #: fewer images are made in this process (starting workers would cost more)


class NonFiniteFeaturesError(SdmadError, ValueError):
    """Features hold NaN or inf values (a broken backbone or checkpoint, or corrupt images)."""


#: The tokens of the tapped blocks a method reads, the rest not kept. ``"none"`` keeps the class
#: token of every tap (the side placement's image-level scores; the zero-shot rows and the probe read
#: only the pooled embedding), ``"first"`` adds every token of the first tap (the residual placement
#: resumes the frozen pass there), ``"all"`` keeps every token of every tap (localization maps, MVFA,
#: AnomalyCLIP).
PATCHES = ("none", "first", "all")


def patch_blocks(taps: Sequence[int], patches: str) -> list[int]:
    """The tapped blocks whose patch tokens are kept under ``patches`` (one of :data:`PATCHES`)."""
    if patches not in PATCHES:
        raise ValueError(f"patches must be one of {', '.join(PATCHES)}, got {patches!r}")
    taps = sorted(taps)
    return {"none": [], "first": taps[:1], "all": taps}[patches]


class MissingPatchesError(SdmadError, ValueError):
    """A method needs the patch tokens of a block whose features hold only the class token."""


@dataclass
class Features:
    """Frozen features of N images: ``taps[block]`` (N, 1+P, width), or (N, 1, width) where only the
    class token is kept (:data:`PATCHES`), and ``pooled`` (N, D)."""

    taps: dict[int, torch.Tensor]
    pooled: torch.Tensor

    def __len__(self) -> int:
        return len(self.pooled)

    @property
    def patch_blocks(self) -> list[int]:
        """The blocks whose patch tokens are kept."""
        return sorted(b for b, t in self.taps.items() if t.shape[1] > 1)

    def require_patches(self, blocks: Sequence[int], who: str) -> None:
        """Raise :class:`MissingPatchesError` unless the patch tokens of every block of ``blocks`` are kept."""
        missing = sorted(set(blocks) - set(self.patch_blocks))
        if missing:
            raise MissingPatchesError(
                f"{who} reads the patch tokens of blocks {missing}, but these features keep only their class token; "
                "build the task with the patches it reads (task.get_task(cfg, patches='all'))")

    def patch_tokens(self, blocks: Sequence[int], who: str) -> torch.Tensor:
        """The patch tokens of ``blocks`` stacked, float32 (N, len(blocks), P, width); ``who`` names the reader
        in the error when some of them are not kept."""
        self.require_patches(blocks, who)
        return torch.stack([self.taps[b][:, 1:].float() for b in blocks], 1)

    def subset(self, idx: Sequence[int] | np.ndarray | torch.Tensor) -> "Features":
        idx = torch.as_tensor(np.asarray(idx, dtype=np.int64))
        return Features({b: t[idx] for b, t in self.taps.items()}, self.pooled[idx])

    def float(self) -> "Features":
        """Convert to float32 in place and return ``self``: each block's float16 tensor is released as soon as
        it is converted (the peak holds one block twice, not the whole cache)."""
        for b in list(self.taps):
            self.taps[b] = self.taps[b].float()
        self.pooled = self.pooled.float()
        return self

    def check_finite(self, where: str) -> None:
        for name, t in [("pooled", self.pooled)] + [(f"block {b}", t) for b, t in self.taps.items()]:
            nonfinite = ~torch.isfinite(t.float())
            bad = int(nonfinite.sum())
            if bad:
                rows = torch.nonzero(nonfinite.reshape(len(t), -1).any(1)).flatten().tolist()
                raise NonFiniteFeaturesError(
                    f"{where}: {bad} NaN/inf values in the {name} features of {len(rows)} of {len(t)} images "
                    f"(e.g. image {rows[0]}) — the backbone or its checkpoint is broken (rebuild or reinstall it), "
                    "or the images are corrupt")


@torch.inference_mode()
def extract(backbone, get_image: Callable[[int], np.ndarray], n: int, taps: Sequence[int], batch_size: int = 64,
            progress: bool = False, patches: Sequence[int] | None = None, workers: int = 1) -> Features:
    """Run the frozen backbone over images ``get_image(0..n-1)`` and keep taps + pooled embedding, float16.

    ``patches``: the blocks of ``taps`` whose patch tokens are kept (default all); of the others only the
    class token is kept, batch by batch (the patches are never held for the whole set). Tap 0 is the input
    of block 1 (the embeddings after ``ln_pre``; the shift placement reads each adapted block's input).
    ``workers`` > 1: the images (phantoms, whose drawing costs more than their encoding) are made by that
    many processes (:func:`~sdmad_lite.processes.ordered_batches`; ``get_image`` must pickle); same features."""
    from tqdm.auto import tqdm

    taps = sorted(taps)
    keep = set(taps if patches is None else patches)
    out_taps: dict[int, list[torch.Tensor]] = {b: [] for b in taps}
    pooled = []
    made = ordered_batches(get_image, n, batch_size, workers if n >= MIN_PARALLEL_IMAGES else 1)
    with closing(made) as batches:  # an error while encoding stops the workers that draw
        for imgs in tqdm(batches, total=-(-n // batch_size), disable=not progress, desc="features", leave=False):
            pix = backbone.prepare(imgs)
            p, t = backbone.forward_image(pix, taps=[b for b in taps if b > 0])
            if 0 in taps:  # Backbone.forward_image taps blocks 1..n only; block 1's input is the embedding stream
                t[0] = backbone.model.visual._embeds(pix)
            pooled.append(torch.nn.functional.normalize(p.float(), dim=-1).half().cpu())
            for b in taps:
                out_taps[b].append((t[b] if b in keep else t[b][:, :1]).half().cpu())
    return Features({b: torch.cat(v) for b, v in out_taps.items()}, torch.cat(pooled))


def cache_bytes(n_images: int, geometry: dict, tokens: str = "all", bytes_per_value: int = 2) -> int:
    """Bytes the feature cache of ``n_images`` images takes for a backbone of ``geometry``
    (:func:`sdmad_lite.models.backbone.vision_geometry`): the tapped blocks' tokens plus the pooled
    embedding, float16 (``bytes_per_value=2``, what :func:`extract` stores) or float32 (4).

    ``tokens`` is ``"all"`` (every token of every tap), ``"cls"`` (class tokens only) or one of
    :data:`PATCHES` (what a method reads: ``"none"`` is ``"cls"``, ``"first"`` keeps the first tap's patches).
    """
    names = {"cls": "none", **{p: p for p in PATCHES}}
    if tokens not in names:
        raise ValueError(f"tokens must be 'all', 'cls', 'none' or 'first', got {tokens!r}")
    full = len(patch_blocks(geometry["taps"], names[tokens]))
    values = (full * geometry["tokens"] + len(geometry["taps"]) - full) * geometry["width"] + geometry["embed_dim"]
    return int(n_images) * values * bytes_per_value


def cache_key(backbone_key: str, dataset_key: dict) -> str:
    """The folder of one (backbone, dataset) in the feature cache: one file per tapped block and kept tokens."""
    return stable_hash({"backbone": backbone_key, "data": dataset_key, "v": 2}, 24)


def _load(path: Path, n: int) -> torch.Tensor | None:
    """A cached tensor of ``n`` finite rows, or None (absent, damaged, of another size or non-finite: recomputed)."""
    if not path.is_file():
        return None
    try:
        t = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 — a damaged cache entry is recomputed, never trusted
        return None
    ok = isinstance(t, torch.Tensor) and len(t) == n and bool(torch.isfinite(t.float()).all())
    return t if ok else None


def cached_features(backbone, dataset_key: dict, get_image: Callable[[int], np.ndarray], n: int,
                    taps: Sequence[int], use_cache: bool = True, progress: bool = False,
                    patches: Sequence[int] | None = None, workers: int = 1) -> Features:
    """:func:`extract`, memoised on disk by (backbone, dataset): the pooled embedding and each tapped block
    in its own file, ``block{b}.all.pt`` (every token) or ``block{b}.cls.pt`` (the class token), written
    atomically. ``patches``: the blocks whose patch tokens are kept (default all of ``taps``); ``workers``: extract's.
    A block asked for its class token only is read from its ``all`` file when that exists; only the missing blocks
    are extracted."""
    taps = sorted(taps)
    keep = set(taps if patches is None else patches)
    kind = {b: "all" if b in keep else "cls" for b in taps}
    folder = cache_dir("features") / cache_key(backbone.key, dataset_key)
    got: dict[int, torch.Tensor] = {}
    pooled = _load(folder / "pooled.pt", n) if use_cache else None
    for b in taps if use_cache else ():
        t = _load(folder / f"block{b}.{kind[b]}.pt", n)
        if t is None and kind[b] == "cls":
            full = _load(folder / f"block{b}.all.pt", n)
            t = None if full is None else full[:, :1].clone()
        if t is not None:
            got[b] = t
    missing = [b for b in taps if b not in got]
    if missing or pooled is None:
        fresh = extract(backbone, get_image, n, missing, progress=progress, patches=[b for b in missing if b in keep],
                        workers=workers)
        fresh.check_finite(f"features of {dataset_key}")
        if use_cache:
            files = {f"block{b}.{kind[b]}.pt": t for b, t in fresh.taps.items()}
            if pooled is None:
                files["pooled.pt"] = fresh.pooled
            for name, t in files.items():
                atomic_write(folder / name, lambda p, t=t: torch.save(t, p))
        got.update(fresh.taps)
        pooled = fresh.pooled if pooled is None else pooled
    return Features({b: got[b] for b in taps}, pooled)


# ----------------------------------------------------------------------------- text embeddings
class TextEmbeddings:
    """L2-normalised text embeddings of one encoder, cached on disk by (model key, text).

    ``encode_fn(list[str]) -> Tensor (n, D)`` is the text encoder (run under ``no_grad``);
    ``model_key`` must identify the encoder *and its weights*. Only texts not yet cached are
    encoded, one per call by default (``batch_size=1``): a batched matrix product can differ in the
    last bits with the batch's size, so a text encoded beside others would get an embedding that
    depends on which texts were missing from the cache at that moment — and a few-shot head trained
    on it amplifies that into different results. The cache is one file per model key, written atomically (merged with
    what another process wrote meanwhile), with this object's memory on top. Get the instance of
    an encoder with :meth:`TextEmbeddings.of` (one per model key in a process).
    """

    _INSTANCES: dict[str, "TextEmbeddings"] = {}
    FORMAT = 2  # 2: one text per encoder call

    def __init__(self, encode_fn: Callable[[list[str]], torch.Tensor], model_key: str, batch_size: int = 1):
        self.encode_fn, self.model_key, self.batch_size = encode_fn, model_key, batch_size
        self.memory: dict[str, tuple[str, torch.Tensor]] = {}

    @classmethod
    def of(cls, encode_fn: Callable[[list[str]], torch.Tensor], model_key: str) -> "TextEmbeddings":
        """The one instance of this process for ``model_key`` (created with ``encode_fn`` on first use)."""
        if model_key not in cls._INSTANCES:
            cls._INSTANCES[model_key] = cls(encode_fn, model_key)
        return cls._INSTANCES[model_key]

    @property
    def path(self) -> Path:
        return cache_dir("text_embeddings") / f"{hashlib.sha256(self.model_key.encode('utf-8')).hexdigest()[:32]}.pt"

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.model_key}\x00{text}".encode("utf-8")).hexdigest()

    def _read(self) -> dict[str, tuple[str, torch.Tensor]]:
        path = self.path
        if not path.exists():
            return {}
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            if blob.get("model_key") != self.model_key or blob.get("format") != self.FORMAT:
                return {}  # another encoder, or embeddings encoded in batches (format 1): encoded again
            return {k: (t, v) for k, t, v in zip(blob["keys"], blob["texts"], blob["vectors"])}
        except Exception as e:  # noqa: BLE001 — a corrupt cache file is rebuilt, never trusted
            warnings.warn(f"ignoring unreadable text-embedding cache {path}: {e}", stacklevel=3)
            return {}

    def _write(self, entries: dict[str, tuple[str, torch.Tensor]]) -> None:
        keys = list(entries)
        blob = {"format": self.FORMAT, "model_key": self.model_key, "keys": keys, "texts": [entries[k][0] for k in keys],
                "vectors": torch.stack([entries[k][1] for k in keys])}
        atomic_write(self.path, lambda p: torch.save(blob, p))

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        """Embeddings ``(N, D)`` (CPU, float32) of ``texts``; an empty list gives ``(0, 0)``."""
        texts = list(texts)
        if not texts:
            return torch.empty(0, 0)
        mem = self.memory
        keys = [self._key(t) for t in texts]
        if any(k not in mem for k in keys):
            mem.update({k: v for k, v in self._read().items() if k not in mem})
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys) if k not in mem))
        if missing:
            dim = next(iter(mem.values()))[1].shape[-1] if mem else None
            for i in range(0, len(missing), self.batch_size):
                batch = missing[i:i + self.batch_size]
                with torch.no_grad():
                    out = torch.as_tensor(self.encode_fn(batch)).detach().float().cpu()
                if out.ndim != 2 or out.shape[0] != len(batch):
                    raise ValueError(f"encode_fn returned shape {tuple(out.shape)} for {len(batch)} texts")
                if dim is not None and out.shape[1] != dim:
                    raise ValueError(f"encode_fn returned dimension {out.shape[1]} but the cache of model key "
                                     f"{self.model_key!r} holds dimension {dim}: use another model_key or clear()")
                dim = out.shape[1]
                out = torch.nn.functional.normalize(out, dim=-1)
                for t, v in zip(batch, out):
                    mem[self._key(t)] = (t, v.clone())
            disk = self._read()  # merge what another process may have written
            disk.update(mem)
            self._write(disk)
        return torch.stack([mem[k][1] for k in keys])

    def mean(self, texts: Sequence[str]) -> torch.Tensor:
        """The normalised mean embedding of ``texts`` (a prompt ensemble), ``(D,)``."""
        return torch.nn.functional.normalize(self(texts).mean(0), dim=-1)

    def clear(self) -> None:
        """Forget this encoder's cached embeddings, on disk and in memory."""
        self.memory.clear()
        self.path.unlink(missing_ok=True)
