"""The three ways LayerFusionClassifier combines layers, on precomputed features.

Each fuser is fitted on the side-by-side features of the fused layers (one
block of columns per layer, ``slices``) and the targets -- the class labels
for the concat and stack fusions (whose estimators are the user's), class codes
``0 .. n_classes - 1`` for the weighted one -- and answers ``predict_proba``,
``decision_function`` and ``predict`` (in the same terms) for features of the
same layout.
"""

import numpy as np
import torch
from joblib import Parallel, delayed
from scipy.special import log_softmax, softmax
from sklearn.base import clone
from sklearn.model_selection import check_cv, cross_val_predict
from sklearn.utils import check_random_state

from ..heads._weighted_fusion import EqualWidthLayers, fit_layer_mix, mix_logits

_STACK_METHODS = ("predict_proba", "decision_function", "predict")


def _blocks(features, slices):
    return [features[:, cols] for cols in slices.values()]


class ConcatFusion:
    """The fused layers side by side, into one estimator."""

    def __init__(self, estimator):
        self.estimator = estimator

    def fit(self, features, slices, y):
        self.estimator_ = clone(self.estimator).fit(features, y)
        return self

    def method(self, name):
        return getattr(self.estimator_, name)


class StackFusion:
    """One estimator per layer; a final estimator on their cross-fitted outputs.

    What :class:`~sklearn.ensemble.StackingClassifier` does with one base
    estimator per layer: each layer's estimator is fitted on all rows (for
    prediction) and, for the final estimator's training rows, its outputs are
    cross-fitted by ``cross_val_predict`` over the same ``cv`` splits; in the
    binary case the first probability column is dropped.
    """

    def __init__(self, estimator, final_estimator, cv, n_jobs):
        self.estimator = estimator
        self.final_estimator = final_estimator
        self.cv = cv
        self.n_jobs = n_jobs

    def fit(self, features, slices, y):
        self.n_classes_ = len(np.unique(y))
        self.stack_method_ = _stack_method(self.estimator)
        # one list of splits: every layer is cross-fitted on the same folds
        splits = list(check_cv(self.cv, y, classifier=True).split(features, y))
        blocks = _blocks(features, slices)
        fitted = Parallel(n_jobs=self.n_jobs)(
            delayed(_fit_and_cross_fit)(self.estimator, F, y, splits, self.stack_method_)
            for F in blocks
        )
        self.estimators_ = [estimator for estimator, _ in fitted]
        meta = self._meta([outputs for _, outputs in fitted])
        self.final_estimator_ = clone(self.final_estimator).fit(meta, y)
        self.slices_ = slices
        return self

    def _meta(self, outputs):
        columns = []
        for out in outputs:
            if out.ndim == 1:
                out = out.reshape(-1, 1)
            elif self.stack_method_ == "predict_proba" and self.n_classes_ == 2:
                out = out[:, 1:]  # the two columns are collinear
            columns.append(out)
        return np.hstack(columns)

    def transform(self, features):
        outputs = [getattr(est, self.stack_method_)(F)
                   for est, F in zip(self.estimators_, _blocks(features, self.slices_))]
        return self._meta(outputs)

    def method(self, name):
        final = getattr(self.final_estimator_, name)
        return lambda features: final(self.transform(features))


def _stack_method(estimator):
    # the estimator's parameter constraint guarantees at least "predict"
    return next(name for name in _STACK_METHODS if hasattr(estimator, name))


def _fit_and_cross_fit(estimator, F, y, splits, method):
    outputs = cross_val_predict(clone(estimator), F, y, cv=splits, method=method)
    return clone(estimator).fit(F, y), outputs


class WeightedFusion:
    """A learned softmax weight per layer and a linear head (see ``heads._weighted_fusion``)."""

    def __init__(self, n_components, alpha, max_iter, tol, random_state):
        self.n_components = n_components
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def fit(self, features, slices, y):
        self.slices_ = slices
        blocks = _blocks(features, slices)
        self.equal_width_ = EqualWidthLayers(self.n_components).fit(blocks)
        seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        generator = torch.Generator().manual_seed(int(seed))
        self.params_ = fit_layer_mix(
            self.equal_width_.transform(blocks), y, len(np.unique(y)), alpha=self.alpha,
            max_iter=self.max_iter, tol=self.tol, generator=generator,
        )
        return self

    def logits(self, features):
        return mix_logits(self.equal_width_.transform(_blocks(features, self.slices_)),
                          self.params_)

    def method(self, name):
        return getattr(self, f"_{name}")

    def _predict(self, features):
        return np.argmax(self.logits(features), axis=1)

    def _predict_proba(self, features):
        return softmax(self.logits(features), axis=1)

    def _predict_log_proba(self, features):
        return log_softmax(self.logits(features), axis=1)

    def _decision_function(self, features):
        logits = self.logits(features)
        return logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits
