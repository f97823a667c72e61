"""The text-embedding space of a phantom sign bank (chapter 4): which candidate signs the renderer
draws, whether their embeddings cluster by the sign they describe, which categories' sign means lie
closest, and a 2-D view of it.

A phantom bank knows its ground truth: every candidate sign either describes a sign the renderer
draws (and PhantomCLIP's captions describe), a drawn sign that no caption ever names, or nothing the
renderer draws (a distractor). :func:`sign_table` lists the distinct candidates with that status
and their embeddings under a backbone.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .models.captions import UNCAPTIONED
from .signs.bank import SignBank

#: the status of a candidate sign in the phantom world, in the order tables list them
STATUSES = ("drawn", "drawn, never captioned", "not drawn")


def status(renders) -> str:
    """The status of a candidate whose renderer sign is ``renders`` (None: it describes nothing drawn)."""
    if renders is None or (isinstance(renders, float) and np.isnan(renders)):
        return "not drawn"
    return "drawn, never captioned" if renders in UNCAPTIONED else "drawn"


def ground_truth(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per phantom bank (one column each): how many candidates have each status, how many are selected,
    and how many selected ones the renderer does not draw or no caption names. ``frames``: bank name ->
    :meth:`~sdmad_lite.signs.bank.SignBank.to_frame`."""
    gt = pd.concat([f.assign(bank=b, status=f["renders"].map(status)) for b, f in frames.items()])
    truth = gt.groupby(["bank", "status"]).size().unstack(fill_value=0).reindex(columns=list(STATUSES), fill_value=0)
    truth["selected"] = gt.groupby("bank")["selected"].sum()
    truth["selected, not drawn"] = gt[gt["selected"] & (gt["status"] == "not drawn")].groupby("bank").size()
    truth["selected, never captioned"] = gt[gt["selected"] & (gt["status"] == "drawn, never captioned")].groupby("bank").size()
    truth = truth.fillna(0).astype(int)
    truth["% not drawn"] = (100 * truth["not drawn"] / truth[list(STATUSES)].sum(axis=1)).round(1)
    return truth.astype(object).T


def sign_table(bank: SignBank, backbone, cached: bool = True) -> tuple[pd.DataFrame, np.ndarray]:
    """The bank's distinct candidate signs with their status, and their embeddings (N, D) under
    ``backbone`` (``cached=False`` for a backbone with random weights, which has no reusable cache key)."""
    table = bank.distinct_signs()
    table["status"] = table["renders"].map(status)
    ids, e = bank.sign_embeddings(backbone, cached=cached)
    if ids != list(table["id"]):
        raise ValueError("sign_embeddings and distinct_signs disagree on the signs' order")
    return table, e.numpy()


def neighbour_test(table: pd.DataFrame, e: np.ndarray) -> dict:
    """Do paraphrases of one drawn sign embed together? For every drawn (and captioned) candidate: is its
    nearest other candidate a paraphrase of the same renderer sign (against chance), and the mean
    cosine between paraphrases, between different drawn signs, and between distractors."""
    drawn = (table["status"] == "drawn").to_numpy()
    absent = (table["status"] == "not drawn").to_numpy()
    ren = table["renders"].to_numpy()
    s = e @ e.T
    off = ~np.eye(len(ren), dtype=bool)
    same = (ren[:, None] == ren[None, :]) & np.outer(drawn, drawn)
    nearest = np.where(off, s, -np.inf).argmax(1)
    idx = np.flatnonzero(drawn)
    hits = [ren[nearest[i]] == ren[i] for i in idx]
    chance = [(np.sum(ren == ren[i]) - 1) / (len(ren) - 1) for i in idx]
    return {"tested": int(drawn.sum()),
            "nearest = same sign %": round(100 * float(np.mean(hits)), 1),
            "chance %": round(100 * float(np.mean(chance)), 1),
            "cos same sign": round(float(s[same & off].mean()), 3),
            "cos other drawn": round(float(s[np.outer(drawn, drawn) & ~same].mean()), 3),
            "cos not drawn": round(float(s[np.outer(absent, absent) & off].mean()), 3)}


def closest_categories(bank: SignBank, means: np.ndarray) -> tuple[str, str, float, float]:
    """The two categories whose sign means (C, D) lie closest: their names, their cosine, and the
    smallest cosine between any two categories."""
    s = means @ means.T
    np.fill_diagonal(s, -np.inf)
    i, j = np.unravel_index(int(np.argmax(s)), s.shape)
    np.fill_diagonal(s, np.inf)
    return bank.categories[i], bank.categories[j], float(s[i, j]), float(s.min())


def pca2(e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first two principal components of the rows of ``e`` and the share of variance of each."""
    x = e - e.mean(0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:2].T, s[:2] ** 2 / (s ** 2).sum()
