"""GrowNetClassifier: boosted networks on the logistic or multinomial loss."""

from typing import ClassVar

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets

from ...utils._compat import StrOptions
from ._grownet import _BaseGrowNet, _with_docs
from ._losses import HalfBinomialLoss, HalfMultinomialLoss
from ._outputs import ClassifierOutputs


@_with_docs
class GrowNetClassifier(ClassifierOutputs, ClassifierMixin, _BaseGrowNet):
    """Gradient boosting of shallow neural networks (GrowNet) for classification.

    Two classes use the logistic loss on one output, more classes the
    softmax (multinomial) loss on one output per class. A drop-in
    replacement for :class:`~sklearn.ensemble.HistGradientBoostingClassifier`:
    the same parameter names and meanings where the two share a notion,
    categorical features, missing values, sample and class weights, early
    stopping and warm start.

    Read more in the :ref:`User Guide <grownet>`.

    Parameters
    ----------
    loss : {'log_loss'}, default='log_loss'
        The loss: binomial for two classes, multinomial for more.
    %(learning_rate)s
    %(max_iter)s
    %(network)s
    %(l2_regularization)s
    %(max_features)s
    %(categorical_features)s
    %(control)s
    %(class_weight)s
    %(device)s

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.

    n_iter_ : int
        Number of stages (networks) in the ensemble: the best validation
        stage with early stopping, else ``max_iter``.

    n_trees_per_iteration_ : int
        Number of outputs of each stage's network, HistGradientBoosting's
        number of trees per iteration: 1 for two classes, the number of classes for more.

    do_early_stopping_ : bool
        Whether early stopping was used.

    train_score_ : ndarray of shape (n_stages_trained + 1,)
        Score on the training rows after each stage trained (see
        ``scoring``), entry 0 for the constant model; empty without early
        stopping.

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
    GrowNetRegressor : The same model for regression.
    sklearn.ensemble.HistGradientBoostingClassifier : Gradient-boosted trees.

    Notes
    -----
    %(notes)s

    References
    ----------
    %(references)s

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn_layers import GrowNetClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = GrowNetClassifier(random_state=0).fit(X, y)
    >>> clf.predict(X[:3])
    array([0, 0, 0])
    >>> clf.predict_proba(X[:1]).shape
    (1, 3)
    >>> clf.score(X, y) > 0.9
    True
    >>> len(list(clf.staged_predict(X[:2]))) == clf.n_iter_
    True
    """

    _parameter_constraints: ClassVar[dict] = {
        **_BaseGrowNet._parameter_constraints,
        "loss": [StrOptions({"log_loss"})],
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(
        self,
        loss="log_loss",
        *,
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
        class_weight=None,
        device="cpu",
        n_threads=None,
    ):
        self.loss = loss
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
        self.class_weight = class_weight
        self.device = device
        self.n_threads = n_threads

    def _class_weights(self, y, *, reset):
        """Each row's class weight; those of ``'balanced'`` come from the training rows."""
        if self.class_weight is None:
            return 1.0
        if reset:
            self._class_weight_values = compute_class_weight(
                self.class_weight, classes=self.classes_, y=y
            )
        return self._class_weight_values[self._label_encoder.transform(y)]

    def _encode_y(self, y, weights, *, reset):
        """One-hot (or 0/1) targets and the class codes to stratify on."""
        check_classification_targets(y)
        if reset:
            self._label_encoder = LabelEncoder().fit(y)
            self.classes_ = self._label_encoder.classes_
            if len(self.classes_) < 2:
                raise ValueError(
                    "GrowNetClassifier needs samples of at least 2 classes in the "
                    "data, but the data contains only one class: "
                    f"{self.classes_[0]!r}."
                )
            binary = len(self.classes_) == 2
            self._loss = HalfBinomialLoss() if binary else HalfMultinomialLoss()
            self._loss_unit = 1.0
        unknown = np.setdiff1d(y, self.classes_)
        if len(unknown):
            raise ValueError(
                f"y holds classes {unknown.tolist()} the warm-started model was "
                f"not fitted on (classes_ = {self.classes_.tolist()})."
            )
        codes = self._label_encoder.transform(y)
        if len(self.classes_) == 2:
            return codes[:, None].astype(np.float64), codes
        return np.eye(len(self.classes_))[codes], codes

    def _fit_target(self, Y, weights):
        pass

    def _scale_target(self, Y):
        return Y
