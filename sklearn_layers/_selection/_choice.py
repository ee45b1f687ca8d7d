"""Choosing a layer from its scores: NaN never wins, cost breaks near-ties."""

import math


def choose_layer(scores, costs, *, tolerance=0.0, greater_is_better=True, scoring=None):
    """The chosen layer: the cheapest whose score is within ``tolerance`` of the best.

    Parameters
    ----------
    scores : dict of str -> float
        Layer -> score, in network order.
    costs : dict of str -> float
        Layer -> share of a forward pass (NaN when unknown: such a layer only
        wins when no layer has a known cost).
    tolerance : float, default=0.0
        How far below the best a layer may score and still be chosen for its
        lower cost. 0 chooses the best layer (the first one on ties).
    greater_is_better : bool, default=True
        Direction of the scores.
    scoring : str or callable, default=None
        Named in the error when no layer has a finite score.

    Returns
    -------
    layer : str

    Raises
    ------
    ValueError
        If every score is NaN (or infinite).
    """
    sign = 1.0 if greater_is_better else -1.0
    finite = {layer: sign * s for layer, s in scores.items() if math.isfinite(s)}
    if not finite:
        name = "the estimator's score" if scoring is None else f"scoring={scoring!r}"
        raise ValueError(
            f"Every layer scored NaN or infinity with {name}: {scores}. A scorer is "
            "undefined when its metric cannot be computed on the evaluation rows -- "
            "roc_auc on a validation set with a single class, or a fold that lacks a "
            "class. Use more validation rows, a stratified cv, or another scoring."
        )
    best = max(finite.values())
    eligible = [layer for layer, s in finite.items() if s >= best - tolerance]
    if tolerance <= 0:
        return eligible[0]

    def price(layer):
        cost = costs.get(layer, math.nan)
        return (math.isnan(cost), cost if not math.isnan(cost) else 0.0)

    return min(eligible, key=price)
