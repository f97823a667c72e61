"""The one training loop of the book, and the container of a method's predictions.

Every trained method (SD-MAD, the adapter and prompt-learning baselines) trains through
:func:`train`: full-batch gradient steps on the few-shot support set, early stopping on a
held-out loss, the best state restored, and checkpoints written atomically so that an
interrupted run resumes and ends exactly as an uninterrupted one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .io import atomic_write
from .errors import SdmadError


class one_thread:
    """Run small tensor work (few-shot training, scoring cached features) on one thread.

    The adapters' tensors are tiny: with several OpenMP threads, synchronisation costs more
    than the arithmetic, and any other busy process on the machine makes it far worse. One
    thread is faster here and gives the same numbers whatever the machine's core count.

    ``enabled=False`` leaves the threads alone: the residual variant runs frozen transformer
    blocks inside its loop, large products that do use several threads (``bench_training``).
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled

    def __enter__(self):
        self.n = torch.get_num_threads()
        if self.enabled:
            torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.n)


@dataclass
class Predictions:
    """Scores of one method on the support set and the test set (probabilities in [0, 1]).

    ``support_*`` are the scores from which thresholds are chosen: out-of-fold scores when the method
    was cross-validated (then ``test_*_per_model`` holds the same fold models' test scores, which the
    thresholds cut), scores of an unfitted model (zero-shot), or in-sample scores of an untuned fit
    (``extra`` says which); ``kept`` the signs sign selection kept, ``(C, K)``.
    """

    support_scores: np.ndarray
    support_anchor: np.ndarray
    test_scores: np.ndarray
    test_anchor: np.ndarray
    kept: np.ndarray | None = None
    extra: dict = field(default_factory=dict)
    test_labels: np.ndarray | None = None  # (N, C+1) predicted labels that bypass the thresholds (reference rows)
    #: the test scores of each fold model of a tuned method, shaped (F, N, C) and (F, N) (its labels are their vote)
    test_scores_per_model: np.ndarray | None = None
    test_anchor_per_model: np.ndarray | None = None


@dataclass
class TrainResult:
    """What :func:`train` returns: the per-epoch records, the epoch restored, where it resumed."""

    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    resumed_from: int | None = None


class CheckpointError(SdmadError, ValueError):
    """A training checkpoint cannot be read (delete it, or pass ``--overwrite``)."""


def train(module: torch.nn.Module, optimizer: torch.optim.Optimizer,
          step: Callable[[], tuple[torch.Tensor, dict[str, torch.Tensor]]],
          held_out: Callable[[], float] | None, epochs: int, patience: int | None = None,
          restore_best: bool = True, checkpoint: str | Path | None = None, checkpoint_every: int = 10,
          stop_after: int | None = None, on_epoch: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train ``module`` for at most ``epochs`` epochs (one full-batch step each).

    ``step()`` returns the training loss (with its graph) and a dict of its terms;
    ``held_out()`` the loss on held-out images (evaluated without gradients), or None to use
    the training loss. Training stops after ``patience`` epochs without a better held-out
    loss (None: never early); with ``restore_best`` the state of the best epoch is loaded at
    the end. ``checkpoint``: a file written every ``checkpoint_every`` epochs and at the end;
    when it exists the run resumes from it. ``stop_after`` ends the loop after that epoch
    (to simulate an interruption in tests).
    """
    state = {"epoch": 0, "best": float("inf"), "best_epoch": 0, "best_state": None, "bad": 0, "history": []}
    res = TrainResult()
    ck = Path(checkpoint) if checkpoint else None
    if ck and ck.is_file():
        try:
            saved = torch.load(ck, map_location="cpu", weights_only=True)  # never unpickles code
        except Exception as e:  # noqa: BLE001 — one clear message instead of torch's
            raise CheckpointError(f"{ck} is an unreadable training checkpoint ({type(e).__name__}: {str(e)[:120]}); "
                                  "delete it or pass --overwrite") from None
        module.load_state_dict(saved["head"])
        optimizer.load_state_dict(saved["opt"])
        state = saved["state"]
        torch.set_rng_state(saved["rng"])
        res.resumed_from = state["epoch"]
    module.train()
    while state["epoch"] < epochs:
        ep = state["epoch"]
        loss, terms = step()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            vloss = float(held_out()) if held_out is not None else float(loss)
        rec = {"epoch": ep + 1, "loss": loss.item(), "val_loss": vloss} | {k: v.item() for k, v in terms.items()}
        state["history"].append(rec)
        if on_epoch:
            on_epoch(ep + 1, rec)
        if vloss < state["best"] - 1e-6:
            if state["best_state"] is None:
                state["best_state"] = {k: v.detach().clone() for k, v in module.state_dict().items()}
            else:  # copy into the buffers already there: fresh large allocations cost page faults
                for k, v in module.state_dict().items():
                    state["best_state"][k].copy_(v)
            state.update(best=vloss, best_epoch=ep + 1, bad=0)
        else:
            state["bad"] += 1
        state["epoch"] = ep + 1
        done = (patience is not None and state["bad"] >= patience) or state["epoch"] >= epochs
        if ck and (state["epoch"] % checkpoint_every == 0 or done):
            blob = {"head": module.state_dict(), "opt": optimizer.state_dict(), "state": state,
                    "rng": torch.get_rng_state()}
            atomic_write(ck, lambda p: torch.save(blob, p))
        if done:
            break
        if stop_after is not None and state["epoch"] >= stop_after:
            res.history = state["history"]
            return res
    if restore_best and state["best_state"] is not None:
        module.load_state_dict(state["best_state"])
    module.eval()
    res.history, res.best_epoch = state["history"], (state["best_epoch"] if restore_best else state["epoch"])
    return res


# ----------------------------------------------------------------------------- stacks of models
class StackedAdamW:
    """AdamW over the parameters of a stack of models that share tensors, with one learning rate and
    one weight decay per model (a tuning grid trained at once).

    ``params``: ``(tensor, dim, model_of)`` triples, ``model_of`` giving for each index of the
    tensor's dimension ``dim`` the model it belongs to; ``lr`` / ``weight_decay``: one value per model.
    The moments are torch's fused Adam (run at lr 1, no decay); the step of each model is then scaled
    by its own learning rate and its decoupled weight decay applied — torch's AdamW, element by element.
    """

    def __init__(self, params: list[tuple[torch.Tensor, int, torch.Tensor]], lr: torch.Tensor,
                 weight_decay: torch.Tensor, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = [p for p, _, _ in params]
        self.scale = []
        for p, dim, model_of in params:
            shape = [1] * p.ndim
            shape[dim] = p.shape[dim]
            lr_p = lr[model_of].reshape(shape).to(p.dtype)
            self.scale.append((lr_p, 1 - lr_p * weight_decay[model_of].reshape(shape).to(p.dtype)))
        self.adam = torch.optim.Adam(self.params, lr=1.0, betas=betas, eps=eps, fused=True)
        self._old = [torch.empty_like(p) for p in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.adam.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self) -> None:
        for p, old in zip(self.params, self._old):
            old.copy_(p)
        self.adam.step()  # p <- old - m̂ / (√v̂ + eps)
        for p, old, (lr, keep) in zip(self.params, self._old, self.scale):
            p.sub_(old).mul_(lr).add_(old * keep)  # old·(1 − lr·wd) − lr·m̂/(√v̂ + eps)

    def state_dict(self) -> dict:
        return self.adam.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.adam.load_state_dict(state)


@dataclass
class StackRecord:
    """What :func:`train_stack` saw: held-out losses ``(E+1, M)`` and held-out scores
    ``(E+1, M, N, C+1)`` of the state after ``e`` updates, ``e = 0..E`` (E: the updates made)."""

    held_out: torch.Tensor
    scores: torch.Tensor

    @property
    def epochs(self) -> int:
        return int(self.held_out.shape[0]) - 1


def train_stack(optimizer, step: Callable[[], tuple[torch.Tensor, torch.Tensor, torch.Tensor]], epochs: int,
                patience: int, min_delta: float = 1e-3) -> StackRecord:
    """Train a stack of M models at once, one full-batch update per epoch.

    ``step()`` runs one forward pass over the support images and returns the M training losses
    (their sum is minimised: the models share no parameter, so each gets its own gradient), the M
    held-out losses and the scores of every image under every model — held-out values come from the
    same pass, so they describe the state *before* this epoch's update. Stops when every model has
    gone ``patience`` epochs without a held-out loss better than its best by ``min_delta`` (relative),
    or after ``epochs`` updates.
    """
    curves, snaps = [], []
    best = bad = None
    for e in range(epochs + 1):
        loss, v, sc = step()
        curves.append(v.detach().clone())
        snaps.append(sc.detach().clone())
        if best is None:
            best, bad = v.detach().clone(), torch.zeros_like(v)
        else:
            better = v.detach() < best - min_delta * best.abs()  # a better held-out loss: by 0.1 % at least
            best = torch.where(better, v.detach(), best)
            bad = torch.where(better, torch.zeros_like(bad), bad + 1)
        if e == epochs or bool((bad >= patience).all()):
            break
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimizer.step()
    return StackRecord(torch.stack(curves), torch.stack(snaps))
