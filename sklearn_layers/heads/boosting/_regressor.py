"""GrowNetRegressor: boosted networks on the squared, absolute, Poisson or pinball loss."""

from numbers import Real
from typing import ClassVar

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.utils import check_array

from ...utils._compat import Interval, StrOptions
from ._grownet import _BaseGrowNet, _with_docs
from ._losses import (
    HalfPoissonLoss,
    HalfSquaredError,
    PinballLoss,
    absolute_error,
)
from ._outputs import RegressorOutputs
from ._tabular import weighted_mean_std


@_with_docs
class GrowNetRegressor(RegressorOutputs, RegressorMixin, _BaseGrowNet):
    """Gradient boosting of shallow neural networks (GrowNet) for regression.

    A drop-in replacement for
    :class:`~sklearn.ensemble.HistGradientBoostingRegressor`: the same
    parameter names and meanings where the two share a notion, the same
    losses (squared error, absolute error, Poisson, quantile), categorical
    features, missing values, sample weights, early stopping and warm start.
    The target is scaled internally; predictions are in its units.

    Read more in the :ref:`User Guide <grownet>`.

    Parameters
    ----------
    loss : {'squared_error', 'absolute_error', 'poisson', 'quantile'}, \
default='squared_error'
        The loss. ``'poisson'`` uses the log link (predictions are
        positive; ``y`` must be non-negative with a positive sum);
        ``'quantile'`` is the pinball loss of the quantile ``quantile``.

    quantile : float, default=None
        The quantile to predict with ``loss='quantile'``, in [0, 1].
    %(learning_rate)s
    %(max_iter)s
    %(network)s
    %(l2_regularization)s
    %(max_features)s
    %(categorical_features)s
    %(control)s
    %(device)s

    Attributes
    ----------
    n_iter_ : int
        Number of stages (networks) in the ensemble: the best validation
        stage with early stopping, else ``max_iter``.

    n_trees_per_iteration_ : int
        Number of outputs of each stage's network, HistGradientBoosting's
        number of trees per iteration: always 1.

    do_early_stopping_ : bool
        Whether early stopping was used.

    train_score_ : ndarray of shape (n_stages_trained + 1,)
        Score on the training rows after each stage trained (see
        ``scoring``; the loss in the target's units), entry 0 for the
        constant model; empty without early stopping.

    validation_score_ : ndarray of shape (n_stages_trained + 1,)
        The same on the validation rows.

    is_categorical_ : ndarray of shape (n_features,) or None
        Boolean mask of the categorical features; ``None`` if there are none.

    n_features_in_ : int
        Number of features seen during :term:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`. Defined only when `X`
        has feature names that are all strings.

    See Also
    --------
    GrowNetClassifier : The same model for classification.
    sklearn.ensemble.HistGradientBoostingRegressor : Gradient-boosted trees.

    Notes
    -----
    %(notes)s

    References
    ----------
    %(references)s

    Examples
    --------
    >>> from sklearn.datasets import make_regression
    >>> from sklearn_layers import GrowNetRegressor
    >>> X, y = make_regression(n_samples=200, n_features=5, noise=1, random_state=0)
    >>> reg = GrowNetRegressor(max_iter=20, random_state=0).fit(X, y)
    >>> reg.predict(X[:2]).shape
    (2,)
    >>> reg.score(X, y) > 0.9
    True
    """

    _parameter_constraints: ClassVar[dict] = {
        **_BaseGrowNet._parameter_constraints,
        "loss": [StrOptions({"squared_error", "absolute_error", "poisson", "quantile"})],
        "quantile": [Interval(Real, 0, 1, closed="both"), None],
    }

    def __init__(
        self,
        loss="squared_error",
        *,
        quantile=None,
        learning_rate=0.3,
        max_iter=100,
        hidden_units=32,
        learning_rate_init=0.01,
        epochs_per_stage=1,
        corrective_epochs=1,
        corrective_window=3,
        batch_size="auto",
        l2_regularization=0.0,
        max_features=1.0,
        categorical_features="from_dtype",
        warm_start=False,
        early_stopping=True,
        scoring="loss",
        validation_fraction=0.1,
        n_iter_no_change=5,
        tol=1e-7,
        verbose=0,
        random_state=None,
        device="cpu",
        n_threads=None,
    ):
        self.loss = loss
        self.quantile = quantile
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.hidden_units = hidden_units
        self.learning_rate_init = learning_rate_init
        self.epochs_per_stage = epochs_per_stage
        self.corrective_epochs = corrective_epochs
        self.corrective_window = corrective_window
        self.batch_size = batch_size
        self.l2_regularization = l2_regularization
        self.max_features = max_features
        self.categorical_features = categorical_features
        self.warm_start = warm_start
        self.early_stopping = early_stopping
        self.scoring = scoring
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.verbose = verbose
        self.random_state = random_state
        self.device = device
        self.n_threads = n_threads

    def _class_weights(self, y, *, reset):
        return 1.0

    def _encode_y(self, y, weights, *, reset):
        y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
        if reset:
            if self.loss == "quantile" and self.quantile is None:
                raise ValueError("loss='quantile' needs quantile= a value in [0, 1].")
            if self.loss == "poisson" and ((y < 0).any() or np.dot(y, weights) <= 0):
                raise ValueError(
                    "loss='poisson' needs non-negative targets y with a positive sum."
                )
            self._loss = {
                "squared_error": HalfSquaredError,
                "absolute_error": absolute_error,
                "poisson": HalfPoissonLoss,
                "quantile": lambda: PinballLoss(self.quantile),
            }[self.loss]()
        return y[:, None], None

    def _fit_target(self, Y, weights):
        """Centre and scale of the target, from the training rows (weighted).

        The Poisson loss works on ``y`` itself (its log link makes a scale a
        shift of ``F``); the other losses on the standardised target.
        """
        if self.loss == "poisson":
            self._y_center, self._y_scale = 0.0, 1.0
        else:
            # Scale-invariant, as the features' (targets of 1e160 do not
            # overflow when squared, nor 1e-200 underflow).
            (center,), (scale,) = weighted_mean_std(Y[:, :1], weights)
            self._y_center, self._y_scale = float(center), float(scale)
        # Losses are reported in the target's units.
        scale = np.float64(self._y_scale)
        with np.errstate(over="ignore"):  # inf for targets beyond 1e154
            self._loss_unit = scale**2 if self.loss == "squared_error" else scale

    def _scale_target(self, Y):
        return (Y - self._y_center) / self._y_scale

    def _prediction_from_raw(self, F):
        if self.loss == "poisson":
            return np.exp(F[:, 0])
        return F[:, 0] * self._y_scale + self._y_center
