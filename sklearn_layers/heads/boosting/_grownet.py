"""GrowNet's shared base: parameters, input validation, the fit and staged prediction.

The estimators speak :class:`~sklearn.ensemble.HistGradientBoostingClassifier`'s
language (parameters, attributes, categorical features, missing values,
sample weights, early stopping, warm start), so that they replace it in a
pipeline or a parameter grid. :class:`_BaseGrowNet` holds what the two share;
the classifier and the regressor (``_classifier.py``, ``_regressor.py``) add
their targets and losses. The networks and the fit loop live in ``_core.py``
and ``_loop.py``, the losses in ``_losses.py``, the encoding of tabular input
in ``_tabular.py``.
"""

import contextlib
from dataclasses import dataclass
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.metrics import check_scoring
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import (
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
)

from ...utils._compat import (
    Interval,
    RealNotInt,
    StrOptions,
    _fit_context,
    _safe_indexing,
    validate_data,
)
from ...utils._device import resolve_device
from ...utils._repr import ReprMixin
from ...utils._threads import cpu_settings
from .._validation import check_sample_weight
from ._core import Ensemble, build_ensemble
from ._loop import (
    EarlyStopping,
    Rows,
    Schedule,
    StateSnapshots,
    fit_loop,
    start_cache,
)
from ._tabular import (
    TabularEncoder,
    categorical_mask,
    check_numeric_columns,
    split_columns,
)

# HistGradientBoosting's threshold for early_stopping="auto" and its cap on
# the training rows scored by a scorer other than the loss.
_AUTO_EARLY_STOPPING_ROWS = 10_000
_MAX_SCORED_TRAIN_ROWS = 10_000

# HistGradientBoosting's parameters that only trees have, and what plays
# their role in GrowNet (see _BaseGrowNet.set_params).
_TREE_PARAMETERS = {
    "max_depth": "hidden_units sets the size of each stage's network",
    "max_leaf_nodes": "hidden_units sets the size of each stage's network",
    "min_samples_leaf": (
        "l2_regularization and early stopping regularise the networks"
    ),
    "max_bins": "no parameter does: the networks read the numbers, not bins",
    "interaction_cst": (
        "no parameter does: every network sees every feature it is given "
        "(max_features draws them per stage)"
    ),
    "monotonic_cst": "no parameter does: GrowNet has no monotonic constraints",
}

_DOCS = {
    "learning_rate": """
    learning_rate : float, default=0.3
        Shrinkage: each new network fits the full step of the loss (the
        Newton step, or the residual's median or quantile) and is added
        to the ensemble multiplied by ``learning_rate``, as trees are in
        :class:`~sklearn.ensemble.HistGradientBoostingClassifier`. Use
        ``1`` for no shrinkage. The default is larger than
        HistGradientBoosting's 0.1 because a network stage costs more than
        a tree: 0.3 reached the same accuracy in fewer stages on the
        benchmark's data sets.""",
    "max_iter": """
    max_iter : int, default=100
        Maximum number of boosting stages (networks).""",
    "network": """
    hidden_units : int, default=32
        Width of both hidden layers of every network.

    learning_rate_init : float, default=0.01
        Step size of the Adam optimiser in the stage fits and the
        corrective steps (the name of
        :class:`~sklearn.neural_network.MLPClassifier`'s step size).

    epochs_per_stage : int, default=1
        Passes over the training rows to fit each new network.

    corrective_epochs : int, default=1
        Passes over the training rows of the corrective step that follows
        each stage from the second on and fine-tunes the last
        ``corrective_window`` networks jointly on the loss. ``0`` switches
        it off.

    corrective_window : int or None, default=3
        How many of the most recent networks the corrective step trains;
        the others are frozen and their outputs cached, so a stage costs
        the same whatever its index and a fit grows linearly with
        ``max_iter``. ``None`` trains all networks in every corrective step
        (the paper's fully corrective step), which makes the fit grow with
        the square of the number of stages.

    batch_size : int or 'auto', default='auto'
        Mini-batch size of the optimiser. ``'auto'`` uses
        ``max(min(n, 128), n // 16)`` for ``n`` training rows: batches of
        128 rows on small data, 16 steps per epoch on large data (on a CPU
        a step costs little more for more rows, the networks being small).
        A batch holding all rows is not shuffled.""",
    "l2_regularization": """
    l2_regularization : float, default=0.0
        L2 penalty on the networks' weights and biases: ``l2_regularization
        / 2`` times their squared norm is added to the mean loss (Adam's
        weight decay).""",
    "max_features": """
    max_features : float, default=1.0
        Share of the features each stage's network sees, drawn anew for
        every stage (HistGradientBoosting's feature subsampling, which draws
        per split): ``ceil(max_features * n_features)`` features, a numeric
        feature with its missingness indicator and a categorical feature
        with all its one-hot columns. A network always sees the previous
        network's middle features.""",
    "categorical_features": """
    categorical_features : array-like of {bool, int, str} or 'from_dtype' or None, \
default='from_dtype'
        Which features are categorical, as in
        :class:`~sklearn.ensemble.HistGradientBoostingClassifier`:
        ``'from_dtype'`` takes the DataFrame columns of a categorical dtype
        (none for arrays), else a boolean mask, integer indices or column
        names; ``None`` means none. Each categorical feature is one-hot
        encoded inside the model, with the categories seen in the training
        rows (any values: strings, integers, floats); missing values are a
        category of their own when training had them, and categories unseen
        in training encode as all zeros.""",
    "control": """
    warm_start : bool, default=False
        When ``True`` and the estimator is fitted, ``fit`` adds stages to
        the fitted ensemble up to ``max_iter`` (with the same encoding,
        validation split and target scaling); the corrective step's
        optimiser starts afresh.

    early_stopping : 'auto' or bool, default=True
        Whether to hold out ``validation_fraction`` of the training rows and
        stop when the validation score stops improving; ``'auto'`` enables
        it above 10,000 rows, as in
        :class:`~sklearn.ensemble.HistGradientBoostingClassifier`. The
        default differs from there because boosted networks overfit small
        data within a few stages (on ``load_diabetes``, 5-fold CV R^2 0.31
        without early stopping, 0.46 with it). Unlike there, the ensemble
        is cut back to the stage with the best validation score.

    scoring : str or callable or None, default='loss'
        Validation score of early stopping: ``'loss'`` (the negative
        weighted loss), a scorer name or a callable ``scorer(estimator, X,
        y, sample_weight=...)``; ``None`` is the estimator's ``score``. A
        scorer other than the loss scores the training rows on a subset of
        at most 10,000.

    validation_fraction : int or float or None, default=0.1
        Share (float) or number (int) of the rows held out for early
        stopping, stratified for classification. ``None`` scores the
        training rows themselves. The rows are split off before anything is
        learned from the data (scaling, categories, target scaling).

    n_iter_no_change : int, default=5
        Stop when the validation score has not beaten its best by more than
        ``tol`` for this many stages. The default is half
        HistGradientBoosting's 10 because the stages after the best one are
        trained and then cut away, and a network stage costs more than a
        tree: on the benchmark's data sets 5 gave the same wins and ties
        against HistGradientBoosting at 0.75 of the fit time (2.35 instead of
        3.13 times HistGradientBoosting's on 50,000 x 30 rows).

    tol : float, default=1e-7
        Minimum improvement of the validation score that counts as one.

    verbose : int, default=0
        ``0`` is silent, ``1`` or more prints one line per stage.

    random_state : int, RandomState instance or None, default=None
        Seeds the validation split, the initial weights and the mini-batch
        order, through :func:`~sklearn.utils.check_random_state` and a
        dedicated ``torch.Generator``. Neither numpy's nor torch's global
        generator is used.""",
    "class_weight": """
    class_weight : dict or 'balanced' or None, default=None
        Weights of the classes, multiplied into ``sample_weight``:
        ``{label: weight}``, or ``'balanced'`` for ``n_samples / (n_classes
        * np.bincount(y))``, as in
        :class:`~sklearn.ensemble.HistGradientBoostingClassifier`.""",
    "device": """
    device : str, torch.device or None, default='cpu'
        Torch device to train and predict on, e.g. ``'cuda'``; ``None``
        means the CPU (the data's numpy arrays are there). The fitted
        state is kept on the CPU, so a fitted estimator pickles and
        predicts anywhere.

    n_threads : int or None, default=None
        Torch intra-op threads during ``fit`` and prediction, restored
        afterwards; ``None`` leaves torch's setting as it is. Results can
        differ in the last bits between thread counts (float sums in another
        order).""",
}

_NOTES = """
    The model is ``F(x) = c0 + learning_rate * sum_t f_t(x)``, where ``c0``
    is the constant minimising the loss and each ``f_t`` is a network
    ``Linear -> LeakyReLU -> Linear (middle features) -> ReLU -> Linear``
    with ``hidden_units`` units. Network ``t`` sees the encoded features and
    the middle features of network ``t - 1``, standardised [1]_. Each stage
    fits its network to the loss's second-order expansion around the
    current ``F`` (its Newton step; for the absolute error and the pinball
    loss, the loss of ``F + f`` itself), then a corrective step fine-tunes
    the last ``corrective_window`` networks jointly on the loss.

    Differences from the paper's reference code: the shrinkage
    ``learning_rate`` is fixed instead of a learned boost rate (a network's
    output layer can rescale it in the corrective step); the input of a
    network is standardised with fixed weighted statistics instead of a
    BatchNorm layer, so that outputs do not depend on the batch and sample
    weights act on every statistic; the corrective step trains a window of
    recent networks instead of all of them, so that fit time is linear in
    ``max_iter``.

    Input: numeric columns are standardised with the training rows'
    weighted mean and standard deviation; a missing value (NaN) becomes the
    mean plus a missingness indicator for each column that had missing
    values in training; categorical features are one-hot encoded.
    Training runs in float32, prediction in float64. Rows of weight 0 are
    dropped after the classes are read, so they change nothing but
    ``classes_``."""

_REFERENCES = """
    .. [1] S. Badirli, X. Liu, Z. Xing, A. Bhowmik, K. Doan and S. S. Keerthi,
       "Gradient Boosting Neural Networks: GrowNet", arXiv:2002.07971, 2020."""


def _with_docs(cls):
    """Fill the ``%(name)s`` placeholders of a class docstring from ``_DOCS``."""
    doc = cls.__doc__
    for key, text in {**_DOCS, "notes": _NOTES, "references": _REFERENCES}.items():
        doc = doc.replace(f"\n    %({key})s", text)
    cls.__doc__ = doc
    return cls


def _device(name):
    return resolve_device(name)


def _tensor(array, device):
    return torch.as_tensor(np.ascontiguousarray(array, dtype=np.float32), device=device)


class _BaseGrowNet(ReprMixin, BaseEstimator):
    """Parameters, validation, the fit and staged prediction shared by both estimators."""

    _parameter_constraints: ClassVar[dict] = {
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "hidden_units": [Interval(Integral, 1, None, closed="left")],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "epochs_per_stage": [Interval(Integral, 1, None, closed="left")],
        "corrective_epochs": [Interval(Integral, 0, None, closed="left")],
        "corrective_window": [Interval(Integral, 1, None, closed="left"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "l2_regularization": [Interval(Real, 0, None, closed="left")],
        "max_features": [Interval(RealNotInt, 0, 1, closed="right")],
        "categorical_features": ["array-like", StrOptions({"from_dtype"}), None],
        "warm_start": ["boolean"],
        "early_stopping": [StrOptions({"auto"}), "boolean"],
        "scoring": [str, callable, None],
        "validation_fraction": [
            Interval(RealNotInt, 0, 1, closed="neither"),
            Interval(Integral, 1, None, closed="left"),
            None,
        ],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
        "device": [str, torch.device, None],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
    }

    def set_params(self, **params):
        """Set the parameters of this estimator.

        HistGradientBoosting's tree parameters (``max_depth``,
        ``max_leaf_nodes``, ``min_samples_leaf``, ``max_bins``,
        ``interaction_cst``, ``monotonic_cst``) get a ValueError that says
        GrowNet has no trees and which parameter plays their role, here
        rather than at ``fit``: a grid search sets a candidate's parameters
        before its ``try``, so the search stops at once with this message
        instead of recording every fit as failed.

        Parameters
        ----------
        **params : dict
            Estimator parameters.

        Returns
        -------
        self : estimator instance
            Estimator instance.
        """
        tree = [name for name in params if name in _TREE_PARAMETERS]
        if tree:
            roles = "; ".join(f"{name}: {_TREE_PARAMETERS[name]}" for name in tree)
            raise ValueError(
                f"{type(self).__name__} has no trees, so HistGradientBoosting's "
                f"tree parameters {tree} have no meaning here ({roles}). Remove "
                "them from the grid; see the user guide's 'From a "
                "HistGradientBoosting grid' for the parameters that carry over."
            )
        return super().set_params(**params)

    # ----------------------------------------------------------------- input

    def _validate_X(self, X, *, reset):
        """``(numeric float64 array, categorical block or None)``."""
        if reset:
            self.is_categorical_ = categorical_mask(X, self.categorical_features)
        if self.is_categorical_ is None:
            check_numeric_columns(X, None, type(self).__name__)
            X_valid = validate_data(
                self, X, reset=reset, dtype=[np.float64, np.float32],
                ensure_all_finite="allow-nan",
            )
            return X_valid.astype(np.float64, copy=False), None
        validate_data(self, X, reset=reset, skip_check_array=True)
        return split_columns(X, self.is_categorical_, type(self).__name__)

    def _encode(self, X):
        """Validated, encoded float32 features of new rows."""
        numeric, categorical = self._validate_X(X, reset=False)
        return self._encoder.transform(numeric, categorical)

    # ------------------------------------------------------------------- fit

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None, sample_weight_val=None):
        """Fit the boosted networks.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features)
            Training data. NaN marks a missing value; categorical features
            (see ``categorical_features``) may hold any values, strings
            included.

        y : array-like of shape (n_samples,)
            Target values (class labels for the classifier).

        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples in the loss, the validation score and
            every statistic learned from the data. ``None`` gives every
            sample weight 1.

        X_val : {array-like, DataFrame} of shape (n_val, n_features), default=None
            Validation rows for early stopping, instead of holding out
            ``validation_fraction`` of ``X`` (as in
            :class:`~sklearn.ensemble.HistGradientBoostingClassifier`). Nothing
            is learned from them but the validation score. Needs ``y_val``,
            and early stopping on (``early_stopping=True``, or ``'auto'`` with
            more than 10,000 training rows).

        y_val : array-like of shape (n_val,), default=None
            Targets of ``X_val``.

        sample_weight_val : array-like of shape (n_val,), default=None
            Weights of the validation rows (``class_weight`` multiplies into
            them as into ``sample_weight``).

        Returns
        -------
        self : object
            Fitted estimator.
        """
        warm = self.warm_start and hasattr(self, "_state")
        if warm and self.max_iter < self.n_iter_:
            raise ValueError(
                f"max_iter={self.max_iter} must be larger than or equal to "
                f"n_iter_={self.n_iter_} when warm_start==True."
            )
        if (X_val is None) != (y_val is None):
            given, missing = ("X_val", "y_val") if y_val is None else ("y_val", "X_val")
            raise ValueError(f"{given} is provided, but {missing} was not provided.")
        if X_val is None and sample_weight_val is not None:
            raise ValueError("sample_weight_val is provided, but X_val and y_val were not.")
        data = self._table(X, y, sample_weight, reset=not warm)
        if not warm:
            rng = check_random_state(self.random_state)
            self._split_seed, self._torch_seed, self._feature_seed = (
                int(s) for s in rng.randint(2**31 - 1, size=3)
            )
            self.do_early_stopping_ = (
                len(data.y) > _AUTO_EARLY_STOPPING_ROWS
                if self.early_stopping == "auto"
                else bool(self.early_stopping)
            )
        if X_val is not None:
            if self.early_stopping is False:
                raise ValueError(
                    "X_val and y_val are passed to fit while early_stopping=False; "
                    "set early_stopping=True (or 'auto') to use them."
                )
            given_val = self._table(X_val, y_val, sample_weight_val, reset=False)
        # Rows of weight zero are dropped after the classes are read from
        # every row, so that they change nothing but classes_.
        data = data.positive()
        if X_val is None:
            train, val = self._split(data)
        elif self.do_early_stopping_:
            train, val = data, given_val.positive()
        else:  # early_stopping="auto" on few rows, as HistGradientBoosting
            train, val = data, None
        if not warm:
            self._encoder = TabularEncoder().fit(train.numeric, train.categorical, train.w)
            self._fit_target(train.Y, train.w)
        device = _device(self.device)
        with cpu_settings(self.n_threads):
            train_rows = self._rows(train, device)
            val_rows = None
            if val is not None:
                val_rows = train_rows if val is train else self._rows(val, device)
            self._boost(train_rows, val_rows, train, val, warm, device)
        return self

    def _table(self, X, y, sample_weight, *, reset):
        """Validated rows of ``X``, their targets and weights (class weights included)."""
        numeric, categorical = self._validate_X(X, reset=reset)
        y = column_or_1d(y, warn=True)
        check_consistent_length(numeric, y)
        weights = check_sample_weight(sample_weight, len(y))
        Y, stratify = self._encode_y(y, weights, reset=reset)
        weights = weights * self._class_weights(y, reset=reset)
        source = X if hasattr(X, "iloc") else np.asarray(X)
        return _Table(numeric, categorical, y, Y, weights, stratify, source, np.arange(len(y)))

    def _rows(self, table, device):
        """The tensors the fit loop trains or validates on."""
        return Rows(
            X=_tensor(self._encoder.transform(table.numeric, table.categorical), device),
            Y=_tensor(self._scale_target(table.Y), device),
            w=_tensor(table.w / table.w.mean(), device),
        )

    def _split(self, data):
        """Training and validation rows (``val`` is ``None`` without early stopping)."""
        if not self.do_early_stopping_:
            return data, None
        if self.validation_fraction is None:
            return data, data
        n, stratify = len(data.y), data.stratify
        if stratify is not None:
            size = self.validation_fraction
            n_val = size if isinstance(size, Integral) else int(np.ceil(size * n))
            counts = np.bincount(stratify)
            counts = counts[counts > 0]  # classes whose rows all have weight 0
            if counts.min() < 2 or n_val < len(counts) or n - n_val < len(counts):
                stratify = None  # too few rows per class to stratify
        try:
            train, val = train_test_split(
                np.arange(n), test_size=self.validation_fraction, stratify=stratify,
                random_state=self._split_seed,
            )
        except ValueError as exc:
            raise ValueError(
                f"Cannot hold out validation_fraction={self.validation_fraction} "
                f"of {n} samples for early stopping ({exc}); set "
                "early_stopping=False or change validation_fraction."
            ) from None
        return data.take(np.sort(train)), data.take(np.sort(val))

    def _boost(self, train, val, train_table, val_table, warm, device):
        """Build or resume the ensemble and run the fit loop on prepared rows."""
        schedule = self._schedule(len(train.X))
        if warm:
            ensemble = build_ensemble(self._state, device=device, dtype=torch.float32)
            states = self._state["learners"]
        else:
            ensemble = Ensemble(self._loss.init(train.Y, train.w), self.learning_rate)
            ensemble = ensemble.to(device)
            states = []
        self.n_trees_per_iteration_ = int(ensemble.c0.shape[0])
        window = schedule.corrective_window
        n_frozen = 0 if window is None else max(0, len(states) - window)
        for rows in (train,) if val is None or val is train else (train, val):
            start_cache(ensemble, n_frozen, rows)
        snapshots = StateSnapshots(
            ensemble.c0.detach().cpu().numpy().astype(np.float64), self.learning_rate,
            states[:n_frozen],
        )
        stopping = None
        if val is not None:
            n_kept = len(states)
            # Early stopping compares scores in the units the networks are
            # trained in (a standardised target), which cannot overflow.
            history = ((), ())
            if warm and len(self._score_history[1]) > n_kept:
                history = tuple(scores[:n_kept] for scores in self._score_history)
            stopping = EarlyStopping(
                self._scorer(train, val, train_table, val_table),
                self.n_iter_no_change, self.tol,
                *history,
            )
        generator = torch.Generator().manual_seed(self._torch_seed + len(states))
        log = print if self.verbose else None
        self._state = fit_loop(
            ensemble, train, val, self._loss, schedule, generator, stopping, snapshots, log,
            feature_mask=self._feature_mask(train.X.shape[1], device),
        )
        self.n_iter_ = len(self._state["learners"])
        empty = np.empty(0)
        self._score_history = (
            (np.asarray(stopping.train_scores), np.asarray(stopping.val_scores))
            if stopping else (empty, empty)
        )
        unit = self._loss_unit if self.scoring == "loss" else 1.0
        with np.errstate(over="ignore"):  # a loss in the target's units may overflow
            self.train_score_, self.validation_score_ = (
                unit * scores for scores in self._score_history
            )

    def _feature_mask(self, n_inputs, device):
        """``mask(stage)``: the encoded columns stage ``stage`` sees, or ``None`` for all.

        ``max_features`` draws a share of the features (a numeric column with
        its missingness indicator, a categorical column with its one-hot
        columns) for every stage, from a generator seeded by the estimator's
        seed and the stage's index, so a warm start draws what a single fit
        would.
        """
        if self.max_features == 1.0:
            return None
        groups = self._encoder.column_groups()
        n_draw = max(1, int(np.ceil(self.max_features * len(groups))))
        if n_draw >= len(groups):
            return None

        def mask(stage):
            rng = np.random.default_rng([self._feature_seed, stage])
            chosen = rng.choice(len(groups), size=n_draw, replace=False)
            keep = torch.zeros(n_inputs, dtype=torch.bool)
            keep[np.concatenate([groups[g] for g in chosen])] = True
            return keep.to(device)

        return mask

    def _schedule(self, n_train):
        batch_size = self.batch_size
        if batch_size == "auto":
            batch_size = max(min(n_train, 128), n_train // 16)
        return Schedule(
            max_iter=self.max_iter,
            hidden_units=self.hidden_units,
            learning_rate_init=self.learning_rate_init,
            epochs_per_stage=self.epochs_per_stage,
            corrective_epochs=self.corrective_epochs,
            corrective_window=self.corrective_window,
            batch_size=min(batch_size, n_train),
            l2_regularization=self.l2_regularization,
        )

    def _scorer(self, train, val, train_table, val_table):
        """``score(F_train, F_val)`` for early stopping (higher is better)."""
        loss = self._loss
        if self.scoring == "loss":

            def score(F_train, F_val):
                return (
                    -float(loss.loss(F_train, train.Y, train.w)),
                    -float(loss.loss(F_val, val.Y, val.w)),
                )

            return score
        scorer = check_scoring(self, self.scoring)
        # Training rows are scored on a fixed subset, as HistGradientBoosting does.
        subset = np.random.RandomState(self._split_seed).permutation(len(train_table.y))
        subset = np.sort(subset[:_MAX_SCORED_TRAIN_ROWS])
        X_train, y_train, w_train = train_table.take(subset).raw()
        X_val, y_val, w_val = val_table.raw()
        subset = torch.as_tensor(subset, device=train.X.device)

        def score(F_train, F_val):
            with self._fixed_raw_predict(F_train[subset]):
                train_score = scorer(self, X_train, y_train, sample_weight=w_train)
            with self._fixed_raw_predict(F_val):
                val_score = scorer(self, X_val, y_val, sample_weight=w_val)
            return float(train_score), float(val_score)

        return score

    @contextlib.contextmanager
    def _fixed_raw_predict(self, F):
        """Make prediction return ``F``'s transform, whatever ``X`` (scoring during fit)."""
        self._fixed_raw = F.detach().cpu().double().numpy()
        try:
            yield
        finally:
            del self._fixed_raw

    # ------------------------------------------------------------- predict

    def _staged_raw_predict(self, X):
        """Validate ``X`` now; return an iterator over ``F`` after each stage."""
        check_is_fitted(self)
        Z = self._encode(X)
        device = _device(self.device)

        def stages():
            # Torch settings apply only while a stage computes, not between yields.
            with cpu_settings(self.n_threads):
                ensemble = build_ensemble(self._state, device=device)
                staged = ensemble.staged(torch.as_tensor(Z, dtype=torch.float64, device=device))
            while True:
                with cpu_settings(self.n_threads):
                    F = next(staged, None)
                if F is None:
                    return
                yield F.cpu().numpy()

        return stages()

    def _raw_predict(self, X):
        if hasattr(self, "_fixed_raw"):
            return self._fixed_raw
        F = None
        for F in self._staged_raw_predict(X):
            pass
        if F is None:  # no stage: the constant model
            return np.tile(self._state["c0"], (len(self._encode(X)), 1))
        return F

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


def _take(block, index):
    return None if block is None else _safe_indexing(block, index)


@dataclass
class _Table:
    """Rows as ``fit`` reads them, and as the user passed them (for a scorer).

    ``numeric`` and ``categorical`` come from :func:`split_columns`, ``y`` is
    the target as passed, ``Y`` its encoding, ``w`` the weights (class weights
    included), ``stratify`` the class codes (``None`` for regression), and
    ``source[positions]`` the rows as passed.
    """

    numeric: np.ndarray
    categorical: object
    y: np.ndarray
    Y: np.ndarray
    w: np.ndarray
    stratify: object
    source: object
    positions: np.ndarray

    def take(self, index):
        return _Table(
            self.numeric[index], _take(self.categorical, index), self.y[index],
            self.Y[index], self.w[index],
            None if self.stratify is None else self.stratify[index],
            self.source, self.positions[index],
        )

    def positive(self):
        """The rows of positive weight."""
        kept = np.flatnonzero(self.w > 0)
        return self if len(kept) == len(self.w) else self.take(kept)

    def raw(self):
        """``(X, y, sample_weight)`` as passed to ``fit``."""
        return _safe_indexing(self.source, self.positions), self.y, self.w
