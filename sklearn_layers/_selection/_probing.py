"""A layer sweep's rows with a control task and/or learning curves.

:func:`sweep_rows` runs the scoring core (:func:`._scoring.score_layers`) once
for the task, or, with ``train_sizes``, :func:`._curves.score_curves`; with a
control task it runs the very same fits again on the control labels (the same
folds, the same subsets of rows) and adds the control score and the
selectivity to each row (:func:`._control.add_selectivity`).
"""

import warnings

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import type_of_target

from ._control import add_selectivity, class_frequencies, control_labels, control_seed
from ._curves import resolve_train_sizes, score_curves
from ._scoring import Splits, score_layers


def planned_fits(n_layers, n_estimators, splits, y, *, train_sizes=None, control=False):
    """How many (estimator x split) fits :func:`sweep_rows` will make (for a progress bar)."""
    n_sizes = 1
    if train_sizes is not None:
        n_max = min([len(train) for train, _ in splits.cv] if splits.cv else []
                    + ([len(y)] if splits.tests else []))
        with warnings.catch_warnings():  # score_curves warns about repeats itself
            warnings.simplefilter("ignore", RuntimeWarning)
            n_sizes = len(resolve_train_sizes(train_sizes, n_max))
    return n_layers * n_estimators * splits.count() * n_sizes * (2 if control else 1)


def sweep_rows(features, slices, y, estimators, scorers, splits, *, identities=None,
               train_sizes=None, n_jobs=None, n_bootstrap=0, random_state=None,
               progress=None):
    """Every estimator on every layer, with control scores and sizes when asked.

    Parameters
    ----------
    features, slices, y, estimators, scorers, splits
        As :func:`._scoring.score_layers` takes them.
    identities : tuple (list of bytes, dict of str -> list of bytes), default=None
        The input identities of the training rows and of each test set's rows
        (:func:`._control.input_identities`): a control task is scored when
        given.
    train_sizes : array-like, default=None
        Scores learning curves (:func:`._curves.score_curves`) when given.
    n_jobs, n_bootstrap, random_state, progress
        As :func:`._scoring.score_layers` takes them; ``random_state`` also
        draws the curves' subsets and the control task.

    Returns
    -------
    rows : list of dict
        With ``train_size`` when ``train_sizes`` is given and the control
        columns (:data:`._control.CONTROL_COLUMNS`) when ``identities`` is.
    """
    if identities is not None and type_of_target(y, input_name="y") == "continuous":
        raise ValueError(
            "control=True draws control labels with the task's class frequencies; "
            "y is continuous (a regression), which has no classes to draw."
        )
    if identities is None and train_sizes is None:
        return score_layers(features, slices, y, estimators, scorers, splits, n_jobs=n_jobs,
                            n_bootstrap=n_bootstrap, random_state=random_state,
                            progress=progress)
    # an integer seed, so that the control's run draws the task's subsets and resamples
    seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))

    def run(labels, tests):
        where = Splits(cv=splits.cv, tests=tests)
        kw = dict(n_jobs=n_jobs, n_bootstrap=n_bootstrap, random_state=seed,
                  progress=progress)
        if train_sizes is None:
            return score_layers(features, slices, labels, estimators, scorers, where, **kw)
        return score_curves(features, slices, labels, estimators, scorers, where, train_sizes,
                            strata=y, **kw)

    rows = run(y, splits.tests)
    if identities is None:
        return rows
    train_ids, test_ids = identities
    classes, frequencies = class_frequencies(y)
    which = control_seed(seed)
    control_y = control_labels(train_ids, classes, frequencies, which)
    control_tests = {
        name: (F, control_labels(test_ids[name], classes, frequencies, which))
        for name, (F, _) in splits.tests.items()
    }
    return add_selectivity(rows, run(control_y, control_tests))
