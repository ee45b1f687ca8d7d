"""Text models: tokenised batches, attention masks in pooling (real MiniLM)."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal

from sklearn_layers import LayerFeatureTransformer, MemoryCache
from sklearn_layers.models import load_minilm

from _float32 import assert_rows_close, gamma, transformer_rtol

pytestmark = pytest.mark.slow  # every test here loads all-MiniLM-L6-v2

SENTENCES = [
    "The cat sat on the mat.",
    "A considerably longer sentence that forces padding onto the short ones in its batch.",
    "Hi",
    "Layer by layer, the middle of the network holds good features.",
]


# MiniLM: 6 layers, hidden 384, feed-forward 1536, 12 heads; these sentences
# are at most 20 tokens long
MINILM_RTOL = transformer_rtol(
    d_model=384, d_ff=1536, n_layers=6, seq_len=20, n_heads=12
)


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
    m = mask.unsqueeze(-1).double()
    n = int(mask.sum(1).max())
    for i, h in enumerate(hidden):
        h = h.double()  # the same batch: the very activations the transformer pooled
        expected = ((h * m).sum(1) / m.sum(1)).numpy()
        # two float32 means of the same n values differ by <= 2 gamma(n+1) mean|h|
        bound = 2 * gamma(n + 1) * ((h.abs() * m).sum(1) / m.sum(1)).numpy()
        assert (np.abs(got[:, i * 384:(i + 1) * 384] - expected) <= bound).all()


def test_cls_is_token_zero(minilm):
    model, tokenizer = minilm
    got = LayerFeatureTransformer(model, layers="encoder.layer.2", pooling="cls",
                                  tokenizer=tokenizer, cache=None).fit_transform(SENTENCES)
    hidden, _ = reference_hidden_states(model, tokenizer, SENTENCES)
    assert_array_equal(got, hidden[3][:, 0].numpy())  # the same batch: a copy


def test_padding_does_not_change_a_sentence_features(minilm):
    model, tokenizer = minilm
    lft = LayerFeatureTransformer(model, layers="encoder.layer.5", pooling="mean",
                                  tokenizer=tokenizer, cache=None, batch_size=4)
    batched = lft.fit_transform(SENTENCES)
    alone = LayerFeatureTransformer(model, layers="encoder.layer.5", pooling="mean",
                                    tokenizer=tokenizer, cache=None, batch_size=1)
    # padding changes the shapes, so the kernels sum in another order
    assert_rows_close(alone.fit_transform(SENTENCES), batched, MINILM_RTOL)


def test_last_layer_mean_reproduces_sentence_embeddings(minilm):
    # sentence-transformers' all-MiniLM-L6-v2 = mean pooling of the last layer + L2
    model, tokenizer = minilm
    lft = LayerFeatureTransformer(model, layers="encoder.layer.5", pooling="mean",
                                  tokenizer=tokenizer, cache=None)
    emb = lft.fit_transform(SENTENCES)
    emb = emb.astype(np.float64)
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    similarity = emb @ emb.T
    # a norm, a division and a dot product of 384 terms in float64
    diag_atol = (2 * 384 + 3) * np.finfo(np.float64).eps
    assert similarity[0, 3] < 0.9
    assert np.allclose(np.diag(similarity), 1.0, rtol=0, atol=diag_atol)


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
    assert_array_equal(again, first[::-1])  # every row served as it was stored
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
    # fit's probe computed row 0 alone, unpadded: another order for the sums
    rtol = transformer_rtol(d_model=384, d_ff=1536, n_layers=2, seq_len=4, n_heads=12)
    assert_rows_close(short, fresh, rtol)
    assert not np.allclose(short[1], full[1])  # the long sentence was truncated


def _fresh(model, tokenizer, texts, layer="encoder.layer.1", **kwargs):
    return LayerFeatureTransformer(model, layers=layer, tokenizer=tokenizer, cache=None,
                                   batch_size=1, **kwargs).fit_transform(texts)


@pytest.mark.slow
def test_tokenizer_state_is_part_of_the_cache_key(minilm):
    import copy

    from sklearn_layers import MemoryCache

    model, tokenizer = minilm
    cache = MemoryCache()

    def cached(tok, **kwargs):
        return LayerFeatureTransformer(model, layers="encoder.layer.1", tokenizer=tok,
                                       cache=cache, **kwargs).fit_transform(SENTENCES)

    right = cached(tokenizer, max_length=6)
    left = copy.deepcopy(tokenizer)
    left.truncation_side = "left"
    got = cached(left, max_length=6)
    assert not np.allclose(got[1], right[1])  # the long sentence keeps its other end
    # cached rows came from other batches than the one-row ones: float32 apart
    rtol = transformer_rtol(d_model=384, d_ff=1536, n_layers=2, seq_len=6, n_heads=12)
    assert_rows_close(got, _fresh(model, left, SENTENCES, max_length=6), rtol)
    # left padding shifts BERT's absolute positions, so a row's features depend
    # on its batch (see the cache guide); the key must still tell them apart
    from sklearn_layers._extraction._identity import tokenizer_name

    before = tokenizer_name(left, 6)
    left.padding_side = "left"
    assert tokenizer_name(left, 6) != before


@pytest.mark.slow
def test_tokenizers_without_a_stable_name_are_not_cached(minilm):
    import functools

    from sklearn_layers import MemoryCache
    from sklearn_layers._extraction._identity import tokenizer_name

    model, tokenizer = minilm
    partial = functools.partial(tokenizer)
    assert tokenizer_name(partial, None) is None
    cache = MemoryCache()
    LayerFeatureTransformer(model, layers="encoder.layer.1", tokenizer=partial,
                            cache=cache).fit_transform(SENTENCES)
    assert len(cache) == 0

    # module-level functions are named by their code (what they capture is not)
    assert tokenizer_name(tokenize_lower, None) != tokenizer_name(tokenize_upper, None)
    assert tokenizer_name(tokenize_lower, 8) != tokenizer_name(tokenize_lower, None)


def tokenize_lower(texts, **kwargs):
    return [t.lower() for t in texts]


def tokenize_upper(texts, **kwargs):
    return [t.upper() for t in texts]


@pytest.mark.slow
def test_cached_text_is_never_tokenised_again(minilm, monkeypatch):
    from sklearn_layers import MemoryCache

    model, tokenizer = minilm
    cache = MemoryCache()
    lft = LayerFeatureTransformer(model, layers="encoder.layer.3", tokenizer=tokenizer,
                                  cache=cache).fit(SENTENCES)
    first = lft.transform(SENTENCES)
    calls = []
    original = type(tokenizer).__call__

    def counting(self, texts, *args, **kwargs):
        calls.append(len(texts))
        return original(self, texts, *args, **kwargs)

    monkeypatch.setattr(type(tokenizer), "__call__", counting)
    again = lft.transform(SENTENCES)
    assert calls == []
    assert_array_equal(again, first)  # served as stored
    mixed = lft.transform(SENTENCES + ["one new sentence"])
    assert calls == [1]  # only the new row is tokenised
    assert_array_equal(mixed[:4], first)


@pytest.mark.slow
def test_text_goes_through_the_network_longest_first_in_caller_order(minilm):
    model, tokenizer = minilm
    texts = [SENTENCES[i % 4] + " extra" * (i % 5) for i in range(12)]
    lengths = []
    handle = model.embeddings.word_embeddings.register_forward_pre_hook(
        lambda module, args: lengths.append(tuple(args[0].shape))
    )
    try:
        got = LayerFeatureTransformer(model, layers="encoder.layer.2", tokenizer=tokenizer,
                                      cache=None, batch_size=4).fit(texts).transform(texts)
    finally:
        handle.remove()
    batches = lengths[1:]  # the first call is fit's one-row probe
    assert [b[0] for b in batches] == [4, 4, 4]
    assert [b[1] for b in batches] == sorted((b[1] for b in batches), reverse=True)
    longest = max(len(tokenizer(t)["input_ids"]) for t in texts)
    rtol = transformer_rtol(
        d_model=384, d_ff=1536, n_layers=3, seq_len=longest, n_heads=12
    )
    assert_rows_close(got, _fresh(model, tokenizer, texts, layer="encoder.layer.2"), rtol)


def _word_level_tokenizer(**options):
    """A small fast tokenizer built offline, with one added token ``"zz"``."""
    tokenizers = pytest.importorskip("tokenizers")
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "foo": 2, "bar": 3}
    model = tokenizers.models.WordLevel(vocab, unk_token="[UNK]")
    backend = tokenizers.Tokenizer(model)
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]",
                                  unk_token="[UNK]")
    tok.add_tokens([tokenizers.AddedToken("zz", **options)])
    return tok


@pytest.mark.parametrize("option, value", [
    ("single_word", True), ("lstrip", True), ("rstrip", True), ("normalized", False),
    ("special", True),
])
def test_added_token_options_are_part_of_the_tokenizer_name(option, value):
    from sklearn_layers._extraction._identity import tokenizer_name

    plain = _word_level_tokenizer()
    other = _word_level_tokenizer(**{option: value})
    assert tokenizer_name(other, None) != tokenizer_name(plain, None)
    assert tokenizer_name(_word_level_tokenizer(), None) == tokenizer_name(plain, None)
    if option == "single_word":  # the option changes what a row becomes
        assert plain("xzzx")["input_ids"] != other("xzzx")["input_ids"]


@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
def test_default_layer_of_minilm_is_its_last_hidden_state_with_the_pooling(minilm, pooling):
    # MiniLM ends with a pooler on the first token: "penultimate" is the pooler's
    # input, the last hidden state, which the chosen pooling reduces
    model, tokenizer = minilm
    lft = LayerFeatureTransformer(model, tokenizer=tokenizer, pooling=pooling, cache=None)
    got = lft.fit_transform(SENTENCES)
    assert lft.layer_names_ == ["pooler:input"]
    reference = LayerFeatureTransformer(model, layers="encoder.layer.5", tokenizer=tokenizer,
                                        pooling=pooling, cache=None).fit_transform(SENTENCES)
    assert_array_equal(got, reference)  # the very same tensor, pooled the same way


@pytest.mark.parametrize("edit", [
    lambda tok: setattr(tok, "split_special_tokens", True),
    lambda tok: setattr(tok, "model_input_names", ["input_ids"]),
    lambda tok: setattr(tok.backend_tokenizer.model, "unk_token", "[PAD]"),
], ids=["split_special_tokens", "model_input_names", "model_option_in_place"])
def test_tokenizer_state_set_after_construction_is_part_of_the_name(edit):
    # each edit changes the ids or inputs some row gets; the vocabulary's size
    # and the backend object stay the same
    from sklearn_layers._extraction._identity import tokenizer_name

    tok = _word_level_tokenizer()
    tok.add_special_tokens({"sep_token": "[SEP]"})
    before, ids = tokenizer_name(tok, None), tok("foo [SEP] qux")
    edit(tok)
    assert tok("foo [SEP] qux") != ids
    assert tokenizer_name(tok, None) != before


class _BagOfEmbeddings(torch.nn.Module):
    def __init__(self, n_tokens=8):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(n_tokens, 3)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        return self.embed(input_ids)


def test_a_tokenizer_model_edited_in_place_is_never_served_its_old_rows():
    tok = _word_level_tokenizer()
    net, cache, texts = _BagOfEmbeddings(), MemoryCache(), ["foo qux", "bar"]
    lft = LayerFeatureTransformer(net, layers="embed", tokenizer=tok, cache=cache)
    lft.fit_transform(texts)
    tok.backend_tokenizer.model.unk_token = "[PAD]"  # same vocabulary size, same backend
    got = lft.transform(texts)
    expected = LayerFeatureTransformer(net, layers="embed", tokenizer=tok,
                                       cache=None).fit_transform(texts)
    assert_array_equal(got, expected)
