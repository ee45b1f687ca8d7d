"""EarlyExitClassifier: easy rows leave at an early layer, hard rows go deeper."""

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import check_cv
from sklearn.utils.validation import check_is_fitted

from .._extraction._progress import one_bar
from .._transformer import first_row
from ..utils._compat import HasMethods, Interval, _fit_context
from ..utils._repr import ReprMixin
from ._cost import forward_shares
from ._exit_forward import CascadeOutput, run_cascade, serve_cached
from ._exit_schedule import plan_stages, simulated_cost
from ._exit_thresholds import calibrate_thresholds, first_exits, operating_point
from ._extractor import resolve_extractor
from ._targets import check_class_targets


class EarlyExitClassifier(ReprMixin, ClassifierMixin, BaseEstimator):
    """A head per exit layer; each row leaves at the first confident exit.

    ``fit`` extracts every exit's features in one forward pass per row
    (through the extractor's cache), fits a clone of ``estimator`` on each,
    and calibrates one confidence threshold per exit on held-out predictions:
    cross-fitted over ``cv`` on the training rows, or the predictions on
    ``X_val``/``y_val`` when given. At prediction, a row goes through the
    network exit by exit and leaves at the first exit whose head's largest
    class probability reaches that exit's threshold (the last exit takes the
    rows left), and the network runs no further for it.

    **The threshold rule.** Minimise the mean forward cost per row -- each
    exit's share of a full forward pass in floating-point operations
    (``exit_costs_``), spent by every row leaving there -- subject to the
    held-out accuracy staying at or above the last exit's held-out accuracy
    minus ``max_score_drop``. Cost is what early exit is for, and an accuracy
    floor relative to the network's own last exit is a target a user can
    state in advance. The search is greedy (the threshold move that saves
    the most cost per correct answer lost, while the floor holds), followed
    by coordinate sweeps setting each threshold to its cheapest feasible
    value; candidates are quantiles of each exit's held-out confidences.
    Tuned on held-out rows, the floor can be missed by a little on new rows.
    The heads' own cost is not counted.

    **Batches.** One row alone stops the forward at its exit (exact). A batch
    runs as deep as its deepest undecided row; prediction therefore runs in
    stages (``stages_``): the rows still undecided at a stage's last exit are
    regrouped into new batches and run again from the input for the next
    stage. The stage boundaries minimise the simulated cost on the
    calibration rows at the extractor's ``batch_size``. Whatever the
    batching, a row's prediction is its exit head applied to that row's
    features at that exit. Rows whose every exit the extractor's cache holds
    (the rows a grid search's fits extracted) are decided from the cached
    features and run no forward; prediction stores nothing in the cache.

    Parameters
    ----------
    extractor : LayerFeatureTransformer or torch.nn.Module
        Carries every extraction setting (pooling, tokenizer, cache,
        batch_size, ...); cloned, never fitted in place (its network and cache
        are shared). A bare network means ``LayerFeatureTransformer(network)``.
        Its ``batch_size`` is the prediction batch size the stages are planned for.
    exits : str, int or list, default=None
        Exit layers (any layer spec of :class:`LayerFeatureTransformer`).
        ``None`` means ``"all"``: every block of the block list. They are
        ordered by how far into the forward pass they are.
    estimator : classifier with predict_proba, default=None
        Fitted on each exit's features. ``None`` means :func:`default_probe`.
    max_score_drop : float, default=0.005
        How far (in accuracy, 0.005 = half a point) the cascade's held-out
        accuracy may fall below the last exit's. 0 exits early only where
        that costs no held-out accuracy.
    cv : int, cross-validation generator or iterable, default=5
        Splits giving the held-out predictions, when no validation set is given.

    Attributes
    ----------
    exit_layers_ : list of str
        The exits, in forward order.
    exit_costs_ : ndarray of shape (n_exits,)
        Share of a full forward pass spent to reach each exit (one row).
    cost_unit_ : {"flops", "time"}
        What ``exit_costs_`` counts.
    estimators_ : list of estimators
        The head of each exit, fitted on all of ``X``.
    thresholds_ : ndarray of shape (n_exits,)
        Confidence a row needs to leave at each exit (``inf``: none leaves
        there; the last is ``-inf``).
    reference_score_ : float
        Held-out accuracy of the last exit alone.
    exit_scores_ : dict of str -> float
        Held-out accuracy of each exit alone.
    calibration_score_ : float
        Held-out accuracy of the cascade.
    exit_fractions_ : dict of str -> float
        Fraction of the held-out rows leaving at each exit.
    expected_cost_ : float
        Mean share of a full forward pass per held-out row, one row at a time.
    stages_ : tuple of str
        The exit ending each prediction stage.
    batch_cost_ : float
        Mean share of a full forward pass per held-out row in batches of the
        extractor's ``batch_size``, recomputation included.
    calibration_confidences_ : ndarray of shape (n_calibration, n_exits)
        Held-out largest class probability of each exit's head.
    calibration_correct_ : ndarray of bool of shape (n_calibration, n_exits)
        Whether each exit's head was right on each held-out row.
    extractor_ : LayerFeatureTransformer
        Fitted over ``exit_layers_``.
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    n_features_in_ : int
        Number of features seen during :term:`fit` (axis 1 of array input).
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`. Defined only when `X`
        has feature names that are all strings.

    See Also
    --------
    IntermediateLayerClassifier : One head on the one best layer.
    EarlyExitDisplay : The compute-accuracy curve as ``max_score_drop`` varies.

    References
    ----------
    .. [1] Teerapittayanon, McDanel and Kung, "BranchyNet: Fast inference via
       early exiting from deep neural networks", ICPR 2016.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn_layers import EarlyExitClassifier
    >>> from sklearn_layers.utils.toy import make_mlp
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = EarlyExitClassifier(make_mlp(4, hidden=(32, 16)), cv=3).fit(X, y)
    >>> clf.exit_layers_
    ['1', '3', '4']
    >>> y_pred, exits = clf.predict(X[:3], return_exit=True)
    >>> y_pred.shape, exits.shape
    ((3,), (3,))
    >>> bool(clf.expected_cost_ <= clf.exit_costs_[-1])
    True
    """

    _parameter_constraints: dict = {
        "extractor": "no_validation",
        "exits": [None, str, Integral, list, tuple],
        "estimator": [None, HasMethods(["fit", "predict_proba"])],
        "max_score_drop": [Interval(Real, 0, 1, closed="both")],
        "cv": ["cv_object"],
    }

    def __init__(self, extractor, *, exits=None, estimator=None, max_score_drop=0.005, cv=5):
        self.extractor = extractor
        self.exits = exits
        self.estimator = estimator
        self.max_score_drop = max_score_drop
        self.cv = cv

    def _estimator(self):
        if self.estimator is None:
            from ..heads import default_probe

            return default_probe()
        return self.estimator

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, *, X_val=None, y_val=None):
        """Fit a head per exit and calibrate the exit thresholds.

        Parameters
        ----------
        X : array-like, tensor, DataFrame, dict, Dataset or list of str
            Training inputs.
        y : array-like of shape (n_samples,)
            Class labels.
        X_val, y_val : same kinds as X and y, default=None
            Rows on which to calibrate the thresholds instead of the
            cross-fitted predictions.

        Returns
        -------
        self : object
            The fitted classifier.
        """
        if (X_val is None) != (y_val is None):
            raise ValueError("Pass both X_val and y_val, or neither.")
        y = check_class_targets(y, type(self).__name__)
        extractor = resolve_extractor(self.extractor, "all" if self.exits is None
                                      else self.exits)
        with one_bar(extractor.verbose):
            features = extractor.fit_transform(X)
            validation = None if X_val is None else extractor.transform(X_val)
        if features.shape[0] != y.shape[0]:
            raise ValueError(f"X has {features.shape[0]} samples but y has {y.shape[0]}.")
        for attribute in ("n_features_in_", "feature_names_in_"):
            if hasattr(extractor, attribute):
                setattr(self, attribute, getattr(extractor, attribute))
        names = self._order_exits(extractor, X)
        slices = extractor.feature_slices_
        columns = [slices[name] for name in names]
        estimator = self._estimator()
        self.estimators_ = [clone(estimator).fit(features[:, c], y) for c in columns]
        self.classes_ = self.estimators_[0].classes_
        if validation is None:
            proba, labels, y_cal = self._cross_fitted(estimator, features, columns, y)
        else:
            y_cal = np.asarray(y_val)
            proba = [h.predict_proba(validation[:, c]) for h, c in
                     zip(self.estimators_, columns)]
            labels = [h.predict(validation[:, c]) for h, c in zip(self.estimators_, columns)]
        confidences = np.column_stack([p.max(axis=1) for p in proba])
        correct = np.column_stack([lab == y_cal for lab in labels])
        self.calibration_confidences_ = confidences
        self.calibration_correct_ = correct
        self.reference_score_ = float(correct[:, -1].mean())
        self.exit_scores_ = dict(zip(names, correct.mean(axis=0).tolist()))
        self.thresholds_ = calibrate_thresholds(
            confidences, correct, self.exit_costs_,
            self.reference_score_ - self.max_score_drop,
        )
        exits = first_exits(confidences, self.thresholds_)
        score, cost, fractions = operating_point(exits, correct, self.exit_costs_)
        self.calibration_score_, self.expected_cost_ = score, cost
        self.exit_fractions_ = dict(zip(names, fractions.tolist()))
        stages = plan_stages(exits, self.exit_costs_, extractor.batch_size)
        self._stages = stages
        self.stages_ = tuple(names[k] for k in stages)
        self.batch_cost_ = simulated_cost(exits, self.exit_costs_, stages,
                                          extractor.batch_size)
        self.extractor_ = extractor
        return self

    def _order_exits(self, extractor, X):
        """The exits in forward order, and their costs (``exit_costs_``)."""
        names = list(extractor.feature_slices_)
        shares, self.cost_unit_ = forward_shares(extractor.model_, first_row(extractor, X),
                                                 names)
        skipped = [name for name in names if not np.isfinite(shares[name])]
        if skipped:
            raise ValueError(
                f"Exits {skipped} did not run during the model's forward pass, so no "
                "row can leave there. Choose exits among the modules the forward calls."
            )
        names = sorted(names, key=lambda name: shares[name])  # stable: ties keep order
        self.exit_layers_ = names
        self.exit_costs_ = np.array([shares[name] for name in names])
        return names

    def _cross_fitted(self, estimator, features, columns, y):
        cv = check_cv(self.cv, y, classifier=True)
        splits = list(cv.split(features, y))
        proba = [np.zeros((len(y), len(self.classes_))) for _ in columns]
        labels = [np.empty(len(y), dtype=self.classes_.dtype) for _ in columns]
        for train, test in splits:
            for k, c in enumerate(columns):
                head = clone(estimator).fit(features[train][:, c], y[train])
                F = features[test][:, c]
                # a fold missing a class: its columns are placed by label
                where = np.searchsorted(self.classes_, head.classes_)
                proba[k][np.ix_(test, where)] = head.predict_proba(F)
                labels[k][test] = head.predict(F)
        covered = np.zeros(len(y), bool)
        for _, test in splits:
            covered[test] = True
        if not covered.all():
            raise ValueError("cv must put every row in a test fold once (a partition) "
                             "to calibrate the thresholds on held-out predictions.")
        return proba, labels, y

    def _cascade(self, X):
        check_is_fitted(self)
        extractor = self.extractor_
        adapter = extractor._adapter(X, reset=False)  # validated once per call
        n_rows = len(adapter)
        output = CascadeOutput(n_rows, self.classes_, len(self.classes_))
        # one row per batch: a single stage is exact and never recomputes
        stages = self._stages if n_rows > 1 and extractor.batch_size > 1 else (
            len(self.exit_layers_) - 1,)
        todo = serve_cached(extractor, self.exit_layers_, adapter, self.estimators_,
                            self.thresholds_, output)
        run_cascade(extractor, self.exit_layers_, adapter, self.estimators_,
                    self.thresholds_, stages, output, todo)
        return output

    def predict(self, X, *, return_exit=False):
        """Predict class labels, each row at its exit.

        Parameters
        ----------
        X : array-like, tensor, DataFrame, dict, Dataset or list of str
            Inputs.
        return_exit : bool, default=False
            Also return the exit layer each row left at.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        exits : ndarray of str objects of shape (n_samples,)
            Only when ``return_exit=True``.
        """
        output = self._cascade(X)
        if return_exit:
            names = np.asarray(self.exit_layers_, dtype=object)
            return output.labels, names[output.exits]
        return output.labels

    def predict_proba(self, X):
        """Class probabilities of each row's exit head.

        Parameters
        ----------
        X : array-like, tensor, DataFrame, dict, Dataset or list of str
            Inputs.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        return self._cascade(X).proba

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags


def exit_table(estimator, X, y):
    """Every exit head's confidence and correctness on ``X`` (one full forward per row).

    Parameters
    ----------
    estimator : EarlyExitClassifier
        Fitted.
    X : input
    y : array-like of shape (n_samples,)

    Returns
    -------
    confidences : ndarray of shape (n_samples, n_exits)
    correct : ndarray of bool of shape (n_samples, n_exits)
    """
    check_is_fitted(estimator)
    features = estimator.extractor_.transform(X)
    y = np.asarray(y)
    if features.shape[0] != y.shape[0]:
        raise ValueError(f"X has {features.shape[0]} samples but y has {y.shape[0]}.")
    slices = estimator.extractor_.feature_slices_
    confidences, correct = [], []
    for name, head in zip(estimator.exit_layers_, estimator.estimators_):
        F = features[:, slices[name]]
        confidences.append(head.predict_proba(F).max(axis=1))
        correct.append(head.predict(F) == y)
    return np.column_stack(confidences), np.column_stack(correct)
