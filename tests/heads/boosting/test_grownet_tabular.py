"""The tabular encoding of the GrowNet estimators: categorical columns, NaN, scaling."""

import numpy as np
import pandas as pd
import pytest

from sklearn_layers.heads.boosting._tabular import (
    TabularEncoder,
    categorical_mask,
    check_numeric_columns,
    split_columns,
)


@pytest.fixture
def frame():
    return pd.DataFrame(
        {
            "size": [1.0, 2.0, np.nan, 4.0, 5.0, 6.0],
            "colour": pd.Categorical(["red", "blue", "red", None, "green", "red"]),
            "count": [3, 1, 4, 1, 5, 9],
            "city": ["a", "b", "a", "b", "c", "a"],
        }
    )


def test_categorical_mask_follows_hist_gradient_boosting(frame):
    expected = np.array([False, True, False, False])
    np.testing.assert_array_equal(categorical_mask(frame, "from_dtype"), expected)
    assert categorical_mask(frame.to_numpy(), "from_dtype") is None  # arrays: none
    assert categorical_mask(frame, None) is None
    np.testing.assert_array_equal(categorical_mask(frame, [1]), expected)
    np.testing.assert_array_equal(categorical_mask(frame, expected), expected)
    np.testing.assert_array_equal(
        categorical_mask(frame, ["colour", "city"]), [False, True, False, True]
    )
    assert categorical_mask(frame, []) is None
    assert categorical_mask(frame, [False] * 4) is None


@pytest.mark.parametrize(
    "spec, message",
    [
        ([4], r"integer indices must lie in \[0, 3\]"),
        ([-1], r"integer indices must lie in \[0, 3\]"),
        ([True, False], "one entry per feature"),
        (["colour", "weight"], r"names \['weight'\] are not columns"),
        ([0.5], "bool, int or str"),
    ],
)
def test_categorical_mask_errors_name_the_problem(frame, spec, message):
    with pytest.raises(ValueError, match=message):
        categorical_mask(frame, spec)


def test_names_need_column_names(frame):
    with pytest.raises(ValueError, match="needs X with column names"):
        categorical_mask(frame.to_numpy(), ["colour"])


def test_string_column_not_marked_categorical_is_named(frame):
    mask = categorical_mask(frame, "from_dtype")
    with pytest.raises(ValueError, match=r"columns \['city'\] as numbers.*categorical"):
        split_columns(frame, mask, "GrowNetClassifier")
    numeric, categorical = split_columns(frame, mask | [False] * 3 + [True], "GrowNetClassifier")
    assert numeric.shape == (6, 2) and numeric.dtype == np.float64
    assert list(categorical.columns) == ["colour", "city"]


def test_infinity_is_refused_nan_is_not(frame):
    mask = np.array([False, True, False, True])
    numeric, _ = split_columns(frame, mask, "GrowNetRegressor")
    assert np.isnan(numeric[2, 0])
    bad = frame.assign(size=np.inf)
    with pytest.raises(ValueError, match="infinity"):
        split_columns(bad, mask, "GrowNetRegressor")


def test_encoder_statistics_are_weighted_and_ignore_missing_values():
    numeric = np.array([[1.0, 10.0], [np.nan, 20.0], [3.0, 30.0], [5.0, 40.0]])
    weights = np.array([1.0, 5.0, 1.0, 2.0])
    encoder = TabularEncoder().fit(numeric, None, weights)
    # Column 0: values 1, 3, 5 with weights 1, 1, 2 (the NaN row does not count).
    mean0 = (1 + 3 + 2 * 5) / 4
    std0 = np.sqrt((((1 - mean0) ** 2) + (3 - mean0) ** 2 + 2 * (5 - mean0) ** 2) / 4)
    mean1 = (10 + 5 * 20 + 30 + 2 * 40) / 9
    np.testing.assert_allclose(encoder.mean_, [mean0, mean1])
    np.testing.assert_allclose(encoder.scale_[0], std0)
    encoded = encoder.transform(numeric, None)
    # Two standardised columns and one missingness indicator (column 0 only).
    assert encoded.shape == (4, 3) and encoded.dtype == np.float32
    np.testing.assert_allclose(encoded[:, 2], [0, 1, 0, 0])
    assert encoded[1, 0] == 0.0  # missing: the (standardised) mean
    np.testing.assert_allclose(encoded[[0, 2, 3], 0], (np.array([1, 3, 5]) - mean0) / std0, rtol=1e-6)


def test_missing_value_unseen_in_training_encodes_as_the_mean():
    encoder = TabularEncoder().fit(np.array([[1.0], [3.0]]), None, np.ones(2))
    encoded = encoder.transform(np.array([[np.nan], [3.0]]), None)
    assert encoded.shape == (2, 1)  # no indicator: training had no NaN
    np.testing.assert_allclose(encoded[:, 0], [0.0, 1.0])


def test_constant_column_is_not_divided_by_zero():
    encoder = TabularEncoder().fit(np.full((3, 1), 7.0), None, np.ones(3))
    np.testing.assert_array_equal(encoder.transform(np.full((2, 1), 7.0), None), 0.0)


def test_categories_one_hot_with_missing_and_unknown(frame):
    mask = categorical_mask(frame, ["colour", "city"])
    numeric, categorical = split_columns(frame, mask, "GrowNetClassifier")
    encoder = TabularEncoder().fit(numeric, categorical, np.ones(6))
    encoded = encoder.transform(numeric, categorical)
    # 2 numeric + 1 indicator (size has NaN) + colour {blue, green, red, NaN} + city {a, b, c}
    assert encoded.shape == (6, 2 + 1 + 4 + 3)
    np.testing.assert_array_equal(encoded[:, 3:].sum(axis=1), 2)  # one hot per column
    new = pd.DataFrame(
        {"size": [1.0], "colour": pd.Categorical(["purple"]), "count": [0], "city": ["z"]}
    )
    numeric_new, categorical_new = split_columns(new, mask, "GrowNetClassifier")
    unseen = encoder.transform(numeric_new, categorical_new)
    np.testing.assert_array_equal(unseen[0, 3:], 0)  # unknown categories: all zeros


def test_integer_and_float_codes_are_categories_too():
    X = np.array([[0.0, 1.5], [1.0, 2.5], [2.0, 3.5], [np.nan, 4.5], [1.0, 5.5]])
    mask = categorical_mask(X, [0])
    numeric, categorical = split_columns(X, mask, "GrowNetClassifier")
    encoded = TabularEncoder().fit(numeric, categorical, np.ones(5)).transform(
        numeric, categorical
    )
    assert encoded.shape == (5, 1 + 4)  # the code column: 0, 1, 2, NaN
    np.testing.assert_array_equal(encoded[:, 1:].argmax(axis=1), [0, 1, 2, 3, 1])


def test_non_numeric_columns_are_found_from_their_dtypes(frame, monkeypatch):
    # The error comes from the dtypes, whatever numpy's message says (the old
    # code matched "could not convert" in numpy's text).
    import sklearn_layers.heads.boosting._tabular as tabular

    def no_message(*args, **kwargs):
        raise ValueError("a message in another words")

    monkeypatch.setattr(tabular, "check_array", no_message)
    mask = categorical_mask(frame, "from_dtype")
    with pytest.raises(ValueError, match=r"columns \['city'\] as numbers"):
        split_columns(frame, mask, "GrowNetClassifier")


def test_numbers_in_object_columns_and_arrays_are_read():
    frame = pd.DataFrame({"a": pd.Series([1, 2.5, None], dtype=object), "b": [1, 2, 3]})
    numeric, _ = split_columns(frame, np.array([False, False]), "GrowNetRegressor")
    np.testing.assert_array_equal(numeric[:, 0], [1, 2.5, np.nan])
    strings = np.array([["1", "x"], ["2", "y"]], dtype=object)
    with pytest.raises(ValueError, match=r"columns \[1\] as numbers.*indices"):
        check_numeric_columns(strings, None, "GrowNetRegressor")
    check_numeric_columns(strings, [0], "GrowNetRegressor")  # column 0 converts


def test_unknown_categories_encode_as_zeros_without_a_warning(frame):
    import warnings

    mask = categorical_mask(frame, ["colour", "city"])
    numeric, categorical = split_columns(frame, mask, "GrowNetClassifier")
    encoder = TabularEncoder().fit(numeric, categorical, np.ones(6))
    new = frame.assign(city="z")
    numeric_new, categorical_new = split_columns(new, mask, "GrowNetClassifier")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encoded = encoder.transform(numeric_new, categorical_new)
    np.testing.assert_array_equal(encoded[:, -3:], 0)
