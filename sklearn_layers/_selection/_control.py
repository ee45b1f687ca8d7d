"""Control tasks (Hewitt & Liang, 2019): how much of a probe's score is memory.

A flexible probe can score well on a layer that does not hold the property,
by memorising which input gets which label. The control task keeps the
task's output distribution but not its meaning: each distinct input gets a
label drawn at random with the task's class frequencies, and identical inputs
get the same control label. A probe can only score above chance on the
control task by telling inputs apart and remembering them, so the
*selectivity*, task score minus control score, is the part of the score the
layer's content (and not the probe's memory) explains.

Input identity is the input row itself, as the activation cache keys it
(:mod:`.._extraction._digests`): the bytes, dtype and shape of a numeric row,
the string of a text (whatever the tokenizer), an item's digest with
``preprocess`` (whatever ``preprocess`` makes of it). Identity is decided on
the raw inputs, not on a layer's features, so that every layer is probed on the *same* control task (two
inputs that one layer happens to map to the same vector still have their own
control labels). A row repeated in another dtype is another identity.

The label of an input is a pure function of ``(seed, identity, class
frequencies)``: a 64-bit hash of the seed and the identity, read as a number
in [0, 1), picks the class through the cumulative frequencies. The same
input therefore gets the same control label in the training rows, in every
fold and in every test set, whatever the order of the rows, with no state to
carry between calls.

On held-out rows whose inputs never occur in the training rows (sentences,
images: most data sets), no probe can predict a control label better than
chance, and the held-out control score stays near ``sum_k p_k q_k`` (``p``
the class frequencies, ``q`` how often the probe predicts each class): the
selectivity then ranks layers as the score does. The control task tells
layers apart where inputs recur (a word type in many sentences, a duplicated
row), which is the setting it was made for.
"""

import numpy as np
import xxhash
from sklearn.utils import check_random_state

from .._extraction._digests import item_digest, text_digests
from .._extraction._inputs import make_input
from .._extraction._items import as_items

_TWO_64 = float(2**64)


def input_identities(X, *, preprocess=None):
    """One digest per input row: equal digests mean identical inputs.

    Parameters
    ----------
    X : array-like, tensor, DataFrame, dict, Dataset or list of str
        Raw inputs, as a :class:`~sklearn_layers.LayerFeatureTransformer` takes
        them.
    preprocess : callable, default=None
        The extractor's ``preprocess``: ``X`` is then a sequence of items
        (images, paths, arrays) identified by their item digests.

    Returns
    -------
    identities : list of bytes
        One 16-byte digest per row.

    Raises
    ------
    ValueError
        If some item has no digest (an object the cache cannot name either).
    """
    if isinstance(X, (list, tuple)) and X and preprocess is None and all(
        isinstance(t, str) for t in X
    ):
        # the string is the input; how a tokenizer reads it is the network's business
        return text_digests("control-task", list(X))
    if preprocess is not None:
        # the item is the input, whatever preprocess makes of it (a lambda, which
        # the cache cannot name, still reads identical items identically)
        identities = [item_digest(item) for item in as_items(X)]
        if any(identity is None for identity in identities):
            raise ValueError(
                "A control task needs to know which inputs are identical, but some "
                "items of X have no digest (objects neither the cache nor the control "
                "task can name): pass arrays, tensors, strings, paths, bytes or PIL "
                "images."
            )
        return identities
    adapter = make_input(X, tokenizer=None)
    identities = []
    for chunk in adapter.chunks(256):
        identities.extend(chunk.digests)
    return identities


def control_seed(random_state):
    """An integer seed for :func:`control_labels` from any ``random_state``."""
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def class_frequencies(y):
    """``(classes, frequencies)`` of the task's labels."""
    classes, counts = np.unique(np.asarray(y), return_counts=True)
    return classes, counts / counts.sum()


def control_labels(identities, classes, frequencies, seed):
    """The control label of each input: random per identity, with the task's frequencies.

    Parameters
    ----------
    identities : list of bytes
        From :func:`input_identities`.
    classes : ndarray of shape (n_classes,)
        The task's classes.
    frequencies : array-like of shape (n_classes,)
        Probability of each class (summing to 1), usually the task's class
        frequencies on the training rows (:func:`class_frequencies`).
    seed : int
        Which control task: the same seed gives the same labels.

    Returns
    -------
    labels : ndarray of shape (n_samples,)
        Drawn from ``classes``; identical identities share a label.
    """
    classes = np.asarray(classes)
    cumulative = np.cumsum(np.asarray(frequencies, dtype=float))
    cumulative[-1] = 1.0  # no rounding gap above the last class
    head = int(seed).to_bytes(8, "little", signed=True)
    uniform = np.fromiter(
        (xxhash.xxh3_64_intdigest(head + identity) / _TWO_64 for identity in identities),
        dtype=float, count=len(identities),
    )
    picks = np.searchsorted(cumulative, uniform, side="right")
    return classes[np.minimum(picks, len(classes) - 1)]


def difference_interval(score, low, high, control, control_low, control_high):
    """A 95% interval of ``score - control`` from the two intervals.

    The control labels are drawn independently of the task's, so the two
    scores' errors are treated as independent: each end of the interval is
    the difference moved by the root sum of squares of the two half-widths
    on that side. Cross-validation uses the paired fold differences instead
    (:func:`._intervals.fold_interval`).
    """
    difference = score - control
    below = np.hypot(score - low, control_high - control)
    above = np.hypot(high - score, control - control_low)
    return float(difference - below), float(difference + above)


CONTROL_COLUMNS = ["control_score", "control_low", "control_high", "selectivity",
                   "selectivity_low", "selectivity_high"]


def add_selectivity(rows, control_rows):
    """Put each control row's score and the selectivity into its task row.

    Parameters
    ----------
    rows, control_rows : list of dict
        The scoring core's rows for the task and for the control task, made by
        the same loops (same layers, estimators, splits and sizes, in the
        same order), each with ``scores`` (one per fold, or the test score).

    Returns
    -------
    rows : list of dict
        ``rows``, each with :data:`CONTROL_COLUMNS` and ``selectivity_std``
        added. On ``"cv"`` the selectivity interval is mean +- 1.96 standard
        errors of the paired fold differences (``selectivity_std`` their
        standard deviation); on a test set, :func:`difference_interval`
        (``selectivity_std`` 0, as ``score_std`` is).
    """
    from ._intervals import fold_interval

    if len(rows) != len(control_rows):
        raise RuntimeError("the control task was scored on other splits than the task")
    for row, control in zip(rows, control_rows):
        same = ("layer", "head", "split", "train_size")
        if any(row.get(k) != control.get(k) for k in same):
            raise RuntimeError("the control task was scored on other splits than the task")
        row["control_score"] = control["score"]
        row["control_low"], row["control_high"] = control["score_low"], control["score_high"]
        row["selectivity"] = row["score"] - control["score"]
        if row["split"] == "cv":
            differences = np.subtract(row["scores"], control["scores"])
            row["selectivity_std"] = float(np.std(differences))
            low, high = fold_interval(differences)
        else:
            row["selectivity_std"] = 0.0
            low, high = difference_interval(row["score"], row["score_low"], row["score_high"],
                                            control["score"], control["score_low"],
                                            control["score_high"])
        row["selectivity_low"], row["selectivity_high"] = low, high
    return rows
