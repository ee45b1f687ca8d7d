"""Text models: tokenised batches, attention masks in pooling (real MiniLM)."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from sklearn_layers import LayerFeatureTransformer
from sklearn_layers.models import load_minilm

pytestmark = pytest.mark.slow  # every test here loads all-MiniLM-L6-v2

SENTENCES = [
    "The cat sat on the mat.",
    "A considerably longer sentence that forces padding onto the short ones in its batch.",
    "Hi",
    "Layer by layer, the middle of the network holds good features.",
]


@pytest.fixture(scope="module")
def minilm():
    return load_minilm()


def reference_hidden_states(model, tokenizer, texts):
    enc = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**enc, output_hidden_states=True)
    return out.hidden_states, enc["attention_mask"]


def test_mask_aware_mean_matches_hidden_states(minilm):
    model, tokenizer = minilm
    lft = LayerFeatureTransformer(
        model, layers=["embeddings", "encoder.layer.*"], pooling="mean",
        tokenizer=tokenizer, cache=None,
    )
    got = lft.fit_transform(SENTENCES)
    assert got.shape == (4, 7 * 384)
    hidden, mask = reference_hidden_states(model, tokenizer, SENTENCES)
    m = mask.unsqueeze(-1).float()
    for i, h in enumerate(hidden):
        expected = ((h * m).sum(1) / m.sum(1)).numpy()
        assert_allclose(got[:, i * 384:(i + 1) * 384], expected, rtol=1e-4, atol=1e-5)


def test_cls_is_token_zero(minilm):
    model, tokenizer = minilm
    got = LayerFeatureTransformer(model, layers="encoder.layer.2", pooling="cls",
                                  tokenizer=tokenizer, cache=None).fit_transform(SENTENCES)
    hidden, _ = reference_hidden_states(model, tokenizer, SENTENCES)
    assert_allclose(got, hidden[3][:, 0].numpy(), rtol=1e-4, atol=1e-5)


def test_padding_does_not_change_a_sentence_features(minilm):
    model, tokenizer = minilm
    lft = LayerFeatureTransformer(model, layers="encoder.layer.5", pooling="mean",
                                  tokenizer=tokenizer, cache=None, batch_size=4)
    batched = lft.fit_transform(SENTENCES)
    alone = LayerFeatureTransformer(model, layers="encoder.layer.5", pooling="mean",
                                    tokenizer=tokenizer, cache=None, batch_size=1)
    assert_allclose(alone.fit_transform(SENTENCES), batched, rtol=1e-4, atol=1e-5)


def test_last_layer_mean_reproduces_sentence_embeddings(minilm):
    # sentence-transformers' all-MiniLM-L6-v2 = mean pooling of the last layer + L2
    model, tokenizer = minilm
    lft = LayerFeatureTransformer(model, layers="encoder.layer.5", pooling="mean",
                                  tokenizer=tokenizer, cache=None)
    emb = lft.fit_transform(SENTENCES)
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    similarity = emb @ emb.T
    assert similarity[0, 3] < 0.9 and np.allclose(np.diag(similarity), 1.0, atol=1e-5)


def test_text_needs_a_tokenizer(minilm):
    model, _ = minilm
    with pytest.raises(ValueError, match="tokenizer"):
        LayerFeatureTransformer(model, layers="encoder.layer.0").fit(SENTENCES)


def test_text_is_cached_by_string(minilm):
    from sklearn_layers import MemoryCache

    model, tokenizer = minilm
    cache = MemoryCache()
    lft = LayerFeatureTransformer(model, layers="encoder.layer.1", tokenizer=tokenizer,
                                  cache=cache)
    first = lft.fit_transform(SENTENCES)
    again = lft.transform(SENTENCES[::-1])
    assert_allclose(again, first[::-1], rtol=1e-5, atol=1e-6)
    assert cache.hits > 0


def test_max_length_is_part_of_the_cache_key(minilm):
    from sklearn_layers import MemoryCache

    model, tokenizer = minilm
    cache = MemoryCache()
    full = LayerFeatureTransformer(model, layers="encoder.layer.1", tokenizer=tokenizer,
                                   cache=cache).fit_transform(SENTENCES)
    short = LayerFeatureTransformer(model, layers="encoder.layer.1", tokenizer=tokenizer,
                                    max_length=4, cache=cache).fit_transform(SENTENCES)
    fresh = LayerFeatureTransformer(model, layers="encoder.layer.1", tokenizer=tokenizer,
                                    max_length=4, cache=None).fit_transform(SENTENCES)
    assert_allclose(short, fresh, rtol=1e-5, atol=1e-6)
    assert not np.allclose(short[1], full[1])  # the long sentence was truncated
