"""Multi-label metrics, thresholds and statistics (the protocols that use them: ``sdmad_lite.protocols``).

Modules by kind: :mod:`.labels` (subset accuracy, Hamming, F1), :mod:`.scores` (AUROC, AP),
:mod:`.thresholds`, :mod:`.stats` (bootstrap, mean ± std, paired tests; scipy.stats). Everything
is plain numpy and scipy; scikit-learn is only used by the tests, to check us.

Arrays
------
``y_true``, ``y_pred``
    ``(N, C)`` arrays of 0/1 (or bool): N images, C anomaly categories. An image whose row
    is all zero is *normal*.
``scores``
    ``(N, C)`` real-valued category scores (higher = more likely that category).
``anchor``
    ``(N,)`` anchor scores (higher = more likely abnormal), the paper's binary decision.

Two metrics that are both called "Hamming score"
------------------------------------------------
The multi-label literature uses the name *Hamming score* for two different quantities, and
the SD-MAD paper does not say which one it reports. This module names them apart:

* :func:`~sdmad_lite.metrics.labels.hamming_score` — the **example-based Jaccard accuracy** of Godbole & Sarawagi
  (2004): the mean over images of ``|Y ∩ Ŷ| / |Y ∪ Ŷ|``. An image with no true and no
  predicted label scores 1 (0/0 := 1: "predicted nothing, and there was nothing"). This is
  ``sklearn.metrics.jaccard_score(average="samples", zero_division=1)``.
* :func:`~sdmad_lite.metrics.labels.hamming_accuracy` — ``1 − Hamming loss``: the fraction of the N·C (image,
  category) cells predicted correctly. This is ``1 − sklearn.metrics.hamming_loss``.

Both are reported by the integrated protocol; the book discusses which one matches the
paper's numbers. :func:`~sdmad_lite.metrics.labels.subset_accuracy` is the exact-match ratio (every label right).

Conventions
-----------
* F1 follows scikit-learn with ``zero_division=0``: a category with no true and no predicted
  positive has F1 = 0 (not 1, and not skipped). Macro F1 is the plain mean over categories.
* AUROC and AP need both classes: a category with a single class in the evaluation set gets
  ``NaN``, never an exception. Macro means ignore NaN (``nanmean``) and every macro result
  says how many categories were defined (:class:`~sdmad_lite.metrics.scores.MacroScore`).
* A prediction is positive when ``score >= threshold``.
* Thresholds are chosen on few-shot / validation data by :func:`~sdmad_lite.metrics.thresholds.choose_thresholds` and
  :func:`~sdmad_lite.metrics.thresholds.choose_binary_threshold`; the protocol functions (``sdmad_lite.protocols``) only
  *receive* thresholds and have no way to fit them on the test set.
* Bad inputs raise ``MetricInputError`` (a ``ValueError``) with a message that says
  what is wrong and what to check.
"""
from __future__ import annotations

from ._checks import MetricInputError
from .labels import hamming_accuracy, hamming_score, macro_f1, micro_f1, per_category_f1, subset_accuracy
from .scores import (MacroScore, auroc, average_precision, binary_auroc, macro_ap, macro_auroc, per_category_ap,
                     per_category_auroc)
from .stats import BootstrapCI, MeanStd, PairedTest, bootstrap_ci, mean_std, paired_test
from .thresholds import THRESHOLD_RULES, choose_binary_threshold, choose_thresholds

__all__ = [
    "MetricInputError", "MacroScore", "BootstrapCI", "MeanStd", "PairedTest",
    # label-based
    "subset_accuracy", "hamming_score", "hamming_accuracy", "per_category_f1", "micro_f1", "macro_f1",
    # score-based
    "auroc", "average_precision", "per_category_auroc", "per_category_ap", "macro_auroc", "macro_ap", "binary_auroc",
    # tables
    "bootstrap_ci", "mean_std", "paired_test",
    # thresholds
    "THRESHOLD_RULES", "choose_thresholds", "choose_binary_threshold",
]
