"""LayerFeatureTransformer: intermediate layers of a frozen network as features."""

import os
import warnings
from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils.validation import check_is_fitted

from ._extraction._cache import make_cache
from ._extraction._capture import eager_module
from ._extraction._extract import extract, layer_slices, model_float_dtype
from ._extraction._fingerprint import count_rows
from ._extraction._inputs import make_input
from ._extraction._layers import block_names, resolve_layers
from ._extraction._models import resolve_module
from ._extraction._pooling import POOLING_NAMES, check_pooling
from ._extraction._precision import PRECISIONS, row_cosines, warn_if_emulated
from ._extraction._prefetch import prefetch_poolings
from ._extraction._shapes import ModuleShapes
from ._extraction._widths import probe_widths
from .utils._compat import HasMethods, Interval, StrOptions, _fit_context, validate_data
from .utils._device import resolve_device
from .utils._repr import ReprMixin
from .utils._threads import torch_threads

# Parameters shared by reference, never deep-copied, when the transformer is cloned.
_SHARED_PARAMS = ("model", "tokenizer", "cache", "preprocess")
_LARGE_OUTPUT_BYTES = 2 << 30

# The transformer's settings that decide how X is read (the input adapter).
_INPUT_PARAMS = ("tokenizer", "max_length", "preprocess")
# Fitted attributes describing the input, set when X is adapted with reset=True.
_INPUT_ATTRIBUTES = ("input_kind_", "sample_shape_", "n_features_in_", "feature_names_in_")


def clone_sharing(estimator, shared=_SHARED_PARAMS):
    """Clone ``estimator`` keeping the ``shared`` parameters by reference.

    ``sklearn.clone`` deep-copies every parameter that is not an estimator: the
    network (and a tokenizer, and a cache) would be copied for every candidate
    and fold of a grid search. Like ``sklearn.frozen.FrozenEstimator``, these
    estimators opt out through ``__sklearn_clone__``.
    """
    params = estimator.get_params(deep=False)
    kept = {name: params.pop(name) for name in shared if name in params}
    cloned = {name: clone(value, safe=False) for name, value in params.items()}
    return type(estimator)(**kept, **cloned)


class LayerFeatureTransformer(ReprMixin, TransformerMixin, BaseEstimator):
    """Features from the intermediate layers of a frozen PyTorch network.

    Runs the network over batches of ``X`` without autograd (under
    ``torch.no_grad()``, not ``inference_mode``: a tensor a module builds and
    keeps during its forward, a rotary table say, stays usable for training) in
    eval mode, captures the outputs of the requested modules with forward hooks,
    pools each to one vector per sample and returns them side by side. Without a cache
    (or with a ``"flatten"`` or callable pooling, which are not prefetched), the
    forward pass stops as soon as the last requested module has fired. With a
    cache, rows already cached run no forward at all, and a missing row computes
    every block of the network in the same pass, so that other layers are cache
    hits later. The network itself is never changed: weights, ``training`` flags,
    ``requires_grad`` flags and hooks are the same after every call as before.

    Parameters
    ----------
    model : torch.nn.Module, fitted skorch net or callable
        The network, used by reference (clones share it, nothing is copied). A
        fitted skorch net contributes its ``module_``. A callable is a factory
        called at ``fit`` as ``model(n_features_in)`` (or ``model()``).
    layers : str, int or list of str and int, default="penultimate"
        Which layers to extract:

        - a module path as in ``model.named_modules()`` (``"layer3.1.conv2"``),
          optionally ending in ``":input"`` to take the module's input;
        - an int index into the model's block list (``blocks_``; negative counts
          from the end). The block list opens containers, so on a timm ResNet
          ``1`` is ``"layer1.0"``, where timm's ``out_indices`` and
          ``feature_info`` count stages (timm's ``1`` is ``"layer1"``): use
          ``"stages"`` or the stage's name for timm's meaning;
        - a glob over module paths (``"encoder.layer.*"``; ``*`` stays within one
          path component);
        - ``"all"``: every block of the block list (see ``blocks_``);
        - ``"stages"``: the stages a model declares in ``feature_info`` (timm
          models: a list of dicts with a ``"module"`` key);
        - ``"penultimate"``: the input of the last ``nn.Linear``; on a text model
          whose last module reduces the tokens to one (a BERT pooler, a head on
          the first token), that module's input, the last hidden state, which
          ``pooling`` reduces;
        - ``"output"``: the model's output;
        - a list or tuple of these, extracted in one pass, in that order.
    pooling : {"auto", "mean", "max", "cls", "last", "flatten"}, int, callable or \
            dict, default="auto"
        How an activation becomes one vector per sample. ``"auto"`` and
        ``"mean"``: spatial mean of ``(N, C, H, W)`` maps, mask-aware token mean of
        ``(N, T, D)`` sequences, 2-D activations as they are. ``"max"``: the same
        with a maximum. ``"cls"``: the first real token. ``"last"``: the last real token
        (both read from the attention mask, whichever side the tokenizer pads).
        ``"flatten"``: everything (can be very wide). An int ``k``: adaptive
        ``k x k`` average pooling, then flatten. A callable maps the activation
        tensor (and ``mask=`` if it accepts it) to ``(N, n_features)``. A dict
        maps resolved layer names to any of these (others use ``"auto"``).
    batch_size : int, default=256
        Rows per forward pass.
    device : str, torch.device or None, default=None
        Where input batches are sent: ``None`` means wherever the model's
        weights are (the CPU for a model without weights), as skorch's
        ``device=None``; a device named here must be where the weights are
        (the model is never moved).
    cache : "memory", path, cache object or None, default="memory"
        Row-keyed activation cache shared by clones. ``"memory"``: the
        process-wide :class:`MemoryCache`; a directory path: a
        :class:`DiskCache` shared by processes; ``None``: off. A cache
        object's ``n_rows_computed`` counts the rows that went through the
        network in the extractions using it.
    prefetch : bool, default=True
        With a cache, a miss also computes, in the same pass, the layers users
        write for a stage (every block, every top-level child,
        ``"penultimate"``) so that a grid over them is all hits later. False
        (or no cache): only the requested layers, and the forward pass exits
        right after the last of them -- what deployment wants.
    tokenizer : callable, default=None
        A Hugging Face tokenizer, for ``X`` given as a list of strings. Batches
        are tokenised with padding; the attention mask reaches pooling.
    max_length : int, default=None
        Truncation length for the tokenizer.
    preprocess : callable, default=None
        Turns the raw rows of one batch into what the model takes:
        ``preprocess(rows) -> tensor`` (or a mapping of tensors, passed as
        keyword arguments, as a Hugging Face image processor returns). With it,
        ``X`` is a sequence of items of any kind: PIL images, file paths,
        arrays of different sizes. A per-item transform (torchvision's, or the
        one timm's ``create_transform`` builds) is applied with
        ``lambda rows: torch.stack([transform(r) for r in rows])``. Rows are
        cached only when the preprocess has a stable name, as for poolings: a
        module-level function (by its code) or an object with a ``to_dict()``
        (a Hugging Face image processor, by its configuration).
    verbose : int, default=0
        0: silent; 1 or more: a progress bar over the rows that go through the
        network (rows served by the cache show none; needs ``tqdm``).
    n_threads : int, default=None
        The thread budget of each call: torch's intra-op threads and the BLAS
        and OpenMP pools (numpy, scipy, scikit-learn) all run with this many
        threads, and the caller's counts are restored afterwards. ``None``:
        the calling thread's torch count (``torch.get_num_threads()``), so
        ``torch.set_num_threads(1)`` before a grid search governs every pool.
        See :doc:`/scaling` for how it combines with ``n_jobs``.
    precision : {"float32", "bfloat16", "float16"}, default="float32"
        The arithmetic of the forward pass. ``"bfloat16"`` and ``"float16"``
        run the network under ``torch.autocast`` on its device (about 1.8x
        faster for MiniLM on a CPU with AVX512-BF16 or AMX); the features
        are returned as float32 either way, and the cache keeps each
        precision apart. ``"float32"`` runs the network in its own dtype. On
        hardware that would emulate the 16-bit type (slower than float32) a
        ``UserWarning`` says so and the features are still computed as asked.
        :meth:`precision_drift` measures how far the features move.

    Attributes
    ----------
    model_ : torch.nn.Module
        The network used (the same object as ``model`` for a module).
    blocks_ : list of str
        The model's block list: what ``"all"`` and int indices refer to.
    layer_names_ : list of str
        The resolved layer names, in output order.
    poolings_ : dict
        Resolved layer name -> pooling.
    n_features_per_layer_ : dict
        Resolved layer name -> number of output columns.
    n_features_out_ : int
        Total number of output columns.
    feature_slices_ : dict
        Resolved layer name -> ``slice`` of its columns in the output.
    input_kind_ : str
        ``"array"``, ``"dict"``, ``"text"``, ``"dataset"`` or ``"items"``.
    n_features_in_ : int
        Number of features seen during :term:`fit` (axis 1 of array input).
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`. Defined only when `X`
        has feature names that are all strings.

    See Also
    --------
    sklearn.frozen.FrozenEstimator : The same idea of sharing a fitted object
        across clones, for scikit-learn estimators.

    Notes
    -----
    Numeric arrays are cast to the model's floating dtype batch by batch;
    integer torch tensors are passed as they are (e.g. token ids). Output is
    ``float32``. Fitting only resolves layers and probes one row for the output
    widths: the network is never trained.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from sklearn_layers import LayerFeatureTransformer
    >>> net = torch.nn.Sequential(
    ...     torch.nn.Linear(4, 8), torch.nn.ReLU(),
    ...     torch.nn.Linear(8, 6), torch.nn.ReLU(),
    ...     torch.nn.Linear(6, 3))
    >>> X = np.random.default_rng(0).normal(size=(10, 4))
    >>> lft = LayerFeatureTransformer(net, layers="all").fit(X)
    >>> lft.blocks_
    ['1', '3', '4']
    >>> lft.transform(X).shape
    (10, 17)
    >>> LayerFeatureTransformer(net, layers=[0, "penultimate"]).fit_transform(X).shape
    (10, 14)
    """

    _parameter_constraints: dict = {
        "model": "no_validation",
        "layers": [str, Integral, list, tuple],
        "pooling": [
            StrOptions(set(POOLING_NAMES)),
            Interval(Integral, 1, None, closed="left"),
            callable,
            dict,
        ],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": [str, torch.device, None],
        "cache": [None, str, os.PathLike, HasMethods(["lookup", "store"])],
        "prefetch": ["boolean"],
        "tokenizer": [None, callable],
        "preprocess": [None, callable],
        "max_length": [None, Interval(Integral, 1, None, closed="left")],
        "n_threads": [None, Interval(Integral, 1, None, closed="left")],
        "verbose": ["verbose"],
        "precision": [StrOptions(set(PRECISIONS))],
    }

    def __init__(
        self,
        model,
        *,
        layers="penultimate",
        pooling="auto",
        batch_size=256,
        device=None,
        cache="memory",
        prefetch=True,
        tokenizer=None,
        max_length=None,
        preprocess=None,
        verbose=0,
        n_threads=None,
        precision="float32",
    ):
        self.model = model
        self.layers = layers
        self.pooling = pooling
        self.batch_size = batch_size
        self.device = device
        self.cache = cache
        self.prefetch = prefetch
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.preprocess = preprocess
        self.verbose = verbose
        self.n_threads = n_threads
        self.precision = precision

    def __sklearn_clone__(self):
        return clone_sharing(self)

    def _adapter(self, X, *, reset):
        if isinstance(X, AdaptedInput):
            return X.adapter_for(self, reset=reset)

        def validate(a):
            return validate_data(
                self, a, reset=reset, allow_nd=True, dtype="numeric", ensure_min_features=1
            )

        adapter = make_input(
            X, tokenizer=self.tokenizer, max_length=self.max_length,
            preprocess=self.preprocess, validate_array=validate,
        )
        if reset:
            self.input_kind_ = adapter.kind
            self.sample_shape_ = adapter.sample_shape
            if adapter.kind == "array" and isinstance(X, torch.Tensor):
                self.n_features_in_ = int(X.shape[1])
                if hasattr(self, "feature_names_in_"):
                    del self.feature_names_in_
        else:
            self._check_same_input(adapter, X)
        return adapter

    def _check_same_input(self, adapter, X):
        if adapter.kind != self.input_kind_:
            raise ValueError(
                f"{type(self).__name__} was fitted on {self.input_kind_} input but "
                f"transform got {adapter.kind} input."
            )
        if adapter.kind == "array" and adapter.sample_shape != self.sample_shape_:
            if isinstance(X, torch.Tensor) and X.shape[1] != self.n_features_in_:
                raise ValueError(
                    f"X has {X.shape[1]} features, but {type(self).__name__} is "
                    f"expecting {self.n_features_in_} features as input."
                )
            raise ValueError(
                f"X has samples of shape {adapter.sample_shape}, but "
                f"{type(self).__name__} was fitted on samples of shape "
                f"{self.sample_shape_}."
            )

    def _device(self):
        return resolve_device(self.device, self.model_)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Resolve the layers and probe each one's output width.

        Parameters
        ----------
        X : array-like, tensor, DataFrame, dict, Dataset or list of str
            Samples along axis 0 (strings need ``tokenizer``).
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted transformer.
        """
        adapter = self._adapter(X, reset=True)
        self.model_ = eager_module(
            resolve_module(self.model, getattr(self, "n_features_in_", None))
        )
        self.blocks_ = block_names(self.model_)
        shapes = ModuleShapes(self.model_, adapter, self._device())  # traced if needed
        self.layer_names_ = resolve_layers(self.model_, self.layers, shapes=shapes)
        self.poolings_ = check_pooling(self.pooling, self.layer_names_)
        cache = make_cache(self.cache)
        count_rows(cache, shapes.n_rows_run)
        device = self._device()
        warn_if_emulated(self.precision, device, stacklevel=5)
        with torch_threads(self.n_threads):
            self.n_features_per_layer_ = probe_widths(
                self.model_, adapter, self.poolings_, device=device, cache=cache,
                prefetch=self._prefetch(cache), precision=self.precision,
            )
        self.feature_slices_ = layer_slices(self.layer_names_, self.n_features_per_layer_)
        self.n_features_out_ = int(sum(self.n_features_per_layer_.values()))
        return self

    def _prefetch(self, cache):
        if cache is None or not self.prefetch:
            return None
        return prefetch_poolings(self.model_, self.blocks_, self.poolings_, self.pooling)

    def transform(self, X):
        """Extract the fitted layers' pooled features.

        Parameters
        ----------
        X : array-like, tensor, DataFrame, dict, Dataset or list of str
            Samples along axis 0, shaped like the fit data.

        Returns
        -------
        X_new : ndarray of shape (n_samples, `n_features_out_`), dtype float32
            One block of columns per layer, in ``layer_names_`` order.
        """
        check_is_fitted(self)
        adapter = self._adapter(X, reset=False)
        self._warn_if_huge(len(adapter))
        cache = make_cache(self.cache)
        device = self._device()
        warn_if_emulated(self.precision, device, stacklevel=4)
        with torch_threads(self.n_threads):
            return extract(
                self.model_,
                adapter,
                self.poolings_,
                batch_size=self.batch_size,
                device=device,
                cache=cache,
                prefetch=self._prefetch(cache),
                widths=self.n_features_per_layer_,
                progress=self.verbose >= 1,
                precision=self.precision,
            )

    def precision_drift(self, X):
        """How far ``precision`` moves each row's features from float32.

        Extracts the fitted layers of ``X`` twice, at ``precision`` and at
        ``"float32"``, without the cache (nothing is read or stored), and
        compares them row by row. A few hundred rows of the data at hand are
        enough to decide whether a 16-bit precision is safe for it.

        Parameters
        ----------
        X : array-like, tensor, DataFrame, dict, Dataset or list of str
            Sample rows, shaped like the fit data.

        Returns
        -------
        cosines : dict of str -> ndarray of shape (n_samples,)
            Resolved layer name -> the cosine similarity of each row's
            features at ``precision`` to its float32 features (1.0: the same
            direction; all 1.0 when ``precision="float32"``).

        Examples
        --------
        >>> import numpy as np
        >>> import torch
        >>> from sklearn_layers import LayerFeatureTransformer
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(),
        ...                           torch.nn.Linear(8, 3))
        >>> X = np.random.default_rng(0).normal(size=(20, 4))
        >>> lft = LayerFeatureTransformer(net, precision="bfloat16").fit(X)
        >>> drift = lft.precision_drift(X)
        >>> bool(drift["2:input"].min() > 0.99)
        True
        """
        check_is_fitted(self)
        if self.precision == "float32":  # the same computation twice
            n_rows = len(self._adapter(X, reset=False))
            return {name: np.ones(n_rows) for name in self.layer_names_}
        device = self._device()
        features = {}
        for precision in (self.precision, "float32"):
            adapter = self._adapter(X, reset=False)
            with torch_threads(self.n_threads):
                features[precision] = extract(
                    self.model_, adapter, self.poolings_, batch_size=self.batch_size,
                    device=device, cache=None, widths=self.n_features_per_layer_,
                    precision=precision,
                )
        return {
            name: row_cosines(features[self.precision][:, columns],
                              features["float32"][:, columns])
            for name, columns in self.feature_slices_.items()
        }

    def _warn_if_huge(self, n_rows):
        nbytes = n_rows * self.n_features_out_ * 4
        if nbytes > _LARGE_OUTPUT_BYTES:
            widths = ", ".join(f"{k}: {v}" for k, v in self.n_features_per_layer_.items())
            warnings.warn(
                f"transform will return a {n_rows} x {self.n_features_out_} float32 "
                f"matrix ({nbytes / 2**30:.1f} GiB; features per layer: {widths}). "
                "Pooling ('mean', 'max' or an int k) keeps it small.",
                UserWarning,
                stacklevel=3,
            )

    def get_feature_names_out(self, input_features=None):
        """Output feature names, ``"<layer>__<i>"``.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Ignored; present for API consistency.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        names = [
            f"{layer}__{i}"
            for layer in self.layer_names_
            for i in range(self.n_features_per_layer_[layer])
        ]
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags


class AdaptedInput:
    """``X`` read and validated once, for every extractor with the same input settings.

    A layer-level estimator fits and transforms several extractors over the
    same rows (the candidate layers, then the chosen one) and counts the cost
    of a forward pass on one of them: :func:`adapt_input` validates ``X`` once
    and a :class:`LayerFeatureTransformer` given the result uses it as it is.
    Only extractors whose ``tokenizer``, ``max_length`` and ``preprocess`` are
    those it was read with accept it.
    """

    def __init__(self, source, adapter, settings, attributes):
        self.source = source
        self.adapter = adapter
        self.settings = settings
        self.attributes = attributes

    def __len__(self):
        return len(self.adapter)

    def adapter_for(self, extractor, *, reset):
        if not _same_settings(_input_settings(extractor), self.settings):
            raise ValueError(
                "This input was read with other input settings (tokenizer, max_length, "
                "preprocess) than the extractor's; pass the raw X instead."
            )
        if reset:
            for name in _INPUT_ATTRIBUTES:
                if name in self.attributes:
                    setattr(extractor, name, self.attributes[name])
                elif hasattr(extractor, name):
                    delattr(extractor, name)
        else:
            extractor._check_same_input(self.adapter, self.source)
        return self.adapter


def adapt_input(extractor, X):
    """Read and validate ``X`` once for ``extractor``'s input settings.

    Parameters
    ----------
    extractor : LayerFeatureTransformer
        Fitted or not; never changed.
    X : array-like, tensor, DataFrame, dict, Dataset, DataLoader or list of str
        The raw input.

    Returns
    -------
    adapted : AdaptedInput
        What ``fit``, ``transform`` and :func:`first_row` of any extractor
        with the same input settings accept in place of ``X``.
    """
    if isinstance(X, AdaptedInput):
        return X
    settings = _input_settings(extractor)
    reader = LayerFeatureTransformer(None, tokenizer=extractor.tokenizer,
                                     max_length=extractor.max_length,
                                     preprocess=extractor.preprocess)
    adapter = reader._adapter(X, reset=True)
    attributes = {name: getattr(reader, name) for name in _INPUT_ATTRIBUTES
                  if hasattr(reader, name)}
    return AdaptedInput(X, adapter, settings, attributes)


def _input_settings(extractor):
    return extractor.tokenizer, extractor.max_length, extractor.preprocess


def _same_settings(a, b):
    # the tokenizer and the preprocess by identity (clones share them), the length by value
    return a[0] is b[0] and a[1] == b[1] and a[2] is b[2]


def first_row(extractor, X):
    """The first row of ``X``, ready for the fitted extractor's network.

    For counting the cost of a forward pass (see ``_selection._cost``).

    Parameters
    ----------
    extractor : LayerFeatureTransformer
        Fitted.
    X : AdaptedInput or any input ``extractor.transform`` takes

    Returns
    -------
    batch : Batch
        One row, on the extractor's device and in the model's float dtype.
    """
    check_is_fitted(extractor)
    adapter = extractor._adapter(X, reset=False)
    batch = next(adapter.chunks(1)).build([0])
    return batch.to(extractor._device(), model_float_dtype(extractor.model_))
