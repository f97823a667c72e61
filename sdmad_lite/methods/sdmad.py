"""SD-MAD: train the branch adapters on the support set, select signs, score (chapter 6).

The pieces, in the order a run calls them: :func:`~sdmad_lite.methods.heads.make_head` (the adapters of ``models/sdmad.py``
sized for the task), :func:`~sdmad_lite.methods.sign_selection.select_signs` (``selection.py`` on the support discrimination of every
candidate sign), :func:`~sdmad_lite.methods.heads.train_stack_of_heads` (the grid × folds of ``tuning.py``, all heads trained
at once as one stack), :func:`~sdmad_lite.methods.heads.train_head` (the refit on the whole support set through the one
training loop of ``train.py``), :func:`~sdmad_lite.methods.heads.head_scores`, and :func:`fit`, which chains them through
``tuning.fit_tuned`` for the registry. Sign selection runs ``after`` training (the paper's
inference-time selection: the head trains on the expert signs and scores with the kept ones),
``before`` it (the head also trains on the kept signs), or ``per-image`` (each test image scores
each category with the ``top_k`` signs it matches best).

The head's pieces live in ``methods/heads.py``, sign selection in ``methods/sign_selection.py``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .. import tuning as T
from ..config import ConfigError, ExperimentConfig
from ..data.fewshot import Support
from ..features import Features
from ..models.sdmad import SDMADHead, TextBank
from ..task import Task
from ..train import StackRecord
from .heads import StackedHeads, TrainedHead, head_scores, make_head, train_head, train_stack_of_heads
from .sign_selection import kept_text, select_signs

#: The placement whose stack cross-validates the grid of each placement. Side and shift (cached) are tuned
#: in their own; the residual placement by the side one, a proxy, since a stack of residual heads carries
#: every branch of every grid point and fold through the frozen blocks (about 29 CPU minutes per tuned
#: run on the phantom chest at k = 4 against 2.5 for the proxy, ``benchmarks/bench_placements.py``).
CV_PLACEMENT = {"side": "side", "shift": "shift", "residual": "side"}


@dataclass
class FittedSDMAD(T.Fitted):
    """A fitted SD-MAD (or adapter baseline): the trained head, the text it scores against, the kept
    signs, and what tuning chose (or None)."""

    trained: TrainedHead
    task: Task
    text: TextBank
    mode: str
    kept: np.ndarray | None
    tuned: T.Tuned | None = None
    per_image_top: int | None = None

    @property
    def head(self) -> SDMADHead:
        return self.trained.head

    @property
    def history(self) -> list[dict]:
        return self.trained.history

    @property
    def best_epoch(self) -> int:
        return self.trained.best_epoch

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.head.parameters())

    def scores(self, feats: Features) -> tuple[np.ndarray, np.ndarray]:
        return head_scores(self.head, self.task, feats, self.text, self.mode, per_image_top=self.per_image_top)


def fit_heads(task: Task, support: Support, cfg: ExperimentConfig, cols: list[int], train_text: TextBank,
              score_text: TextBank, score_text_of, kept: np.ndarray | None, per_image_top: int | None = None,
              checkpoint: str | os.PathLike | None = None) -> T.Fitted:
    """SD-MAD's head (or the generic-prompt adapters') trained against ``train_text`` and scoring with
    ``score_text``, through the tuning template (``tuning.fit_tuned``). ``score_text_of(rows)``: the text
    a fold model trained on ``rows`` scores with. The grid is cross-validated in the placement
    :data:`CV_PLACEMENT` names (the residual placement by the side one: a stack of residual heads costs a
    pass of the frozen blocks per branch and model); the fold models of the chosen point are then trained
    in the configured placement.

    ``tuning.folds`` 0 (no tuning: chapter 6 and the untuned benchmarks) trains once on
    ``support.train`` with early stopping on ``support.val`` (a :class:`FittedSDMAD`).
    """
    rows = support.all
    mode = cfg.model.adapter_mode
    if mode == "shift" and tuple(train_text.signs.shape[:2]) != (len(cols), task.text.signs.shape[1]):
        raise ConfigError("model.adapter_mode shift adapts the prompts of the sign bank; this method scores other "
                          "text (generic prompts): use the side or residual placement")

    def stack(cv: T.CV) -> StackRecord:
        placed = cfg if CV_PLACEMENT[mode] == mode else T.apply_point(cfg, {"model.adapter_mode": CV_PLACEMENT[mode]})
        return train_stack_of_heads(task, rows, placed, cols, train_text, score_text_of, cv,
                                    per_image_top=per_image_top)[1]

    def fit_folds(cv: T.CV, final: ExperimentConfig, tuned: T.Tuned) -> StackedHeads:
        return train_stack_of_heads(task, rows, final, cols, train_text, score_text_of, cv, [{}], per_image_top,
                                    exact_epochs=tuned.epochs)[0]

    def once() -> FittedSDMAD:
        res = train_head(task, support.train, cfg, train_text, cols, cfg.train.epochs, held_out=support.val,
                         checkpoint=checkpoint)
        return FittedSDMAD(res, task, score_text, mode, kept, None, per_image_top)

    n_par = sum(p.numel() for p in make_head(task, cfg, cols=cols).parameters())
    return T.fit_tuned(cfg, task.y_pool[rows][:, cols], task.pool_feats.subset(rows), once=once, stack=stack,
                       fit_folds=fit_folds, kept=(None if kept is None else StackedHeads.kept), n_parameters=n_par)


def fit(task: Task, support: Support, cfg: ExperimentConfig, cols: list[int],
        checkpoint: str | os.PathLike | None = None) -> T.Fitted:
    """SD-MAD on one support set: sign selection, cross-validated tuning, the fold models of the chosen
    point (:func:`fit_heads`); ``train.epochs`` 0 gives the head at initialisation."""
    when = cfg.selection.when
    expert_text = task.text_columns(cols)
    pool_text = task.text_columns(cols, task.expert[cols] if cfg.selection.pool == "expert"
                                  else task.text.sign_mask[cols].numpy())

    def chosen(rows) -> TextBank:
        return kept_text(task, cols, select_signs(task, rows, cfg, cols))

    kept = select_signs(task, support.all, cfg, cols) if when != "per-image" else None
    train_text = kept_text(task, cols, kept) if when == "before" else expert_text
    score_text = pool_text if when == "per-image" else kept_text(task, cols, kept)
    top = cfg.selection.top_k if when == "per-image" else None
    if cfg.train.epochs == 0:  # the head at initialisation
        head = make_head(task, cfg, cols=cols)
        return FittedSDMAD(TrainedHead(head.eval(), [], 0), task, score_text, cfg.model.adapter_mode, kept, None, top)
    score_of = (lambda rows: pool_text) if when == "per-image" else chosen
    out = fit_heads(task, support, cfg, cols, train_text, score_text, score_of, kept, top, checkpoint)
    if isinstance(out, FittedSDMAD) and cfg.selection.features == "adapted" and when == "after":
        out.kept = select_signs(task, support.all, cfg, cols, out.head)
        out.text = kept_text(task, cols, out.kept)
    return out
