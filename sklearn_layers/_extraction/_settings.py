"""The ambient settings that change how a forward pass rounds, as one digest."""

import functools

import torch
import xxhash

# Flags that change how a forward rounds, by their path under ``torch``: the
# legacy TF32 switches, and the per-backend precisions of the newer API
# (torch >= 2.9; the oneDNN ones apply on the CPU).
_NUMERIC_FLAGS = (
    "backends.cuda.matmul.allow_tf32",
    "backends.cudnn.allow_tf32",
    "backends.cuda.matmul.allow_fp16_reduced_precision_reduction",
    "backends.cuda.matmul.allow_bf16_reduced_precision_reduction",
    "backends.fp32_precision",
    "backends.cuda.matmul.fp32_precision",
    "backends.cudnn.conv.fp32_precision",
    "backends.cudnn.rnn.fp32_precision",
    "backends.mkldnn.matmul.fp32_precision",
    "backends.mkldnn.conv.fp32_precision",
    "backends.mkldnn.rnn.fp32_precision",
)


def _read(get):
    """A setting's value, or the name of the error reading it raises.

    An older torch lacks some flags (``AttributeError``); torch refuses to read
    a TF32 flag set through both its legacy and its new API (``RuntimeError``).
    """
    try:
        return get()
    except (AttributeError, RuntimeError, TypeError) as exc:
        return type(exc).__name__


def _flag(path):
    """A flag's value; an ``fp32_precision`` of ``"none"`` reads as ``"ieee"``.

    ``"none"`` (the start-up value) defers to the legacy settings, which are
    read on their own; torch cannot set it back once an fp32 precision was
    set, so a process that set ``"highest"`` again reads ``"ieee"`` where a
    fresh worker reads ``"none"``: the same arithmetic, one cache identity.
    """
    value = _read(lambda: functools.reduce(getattr, path.split("."), torch))
    if path.endswith("fp32_precision") and value == "none":
        return "ieee"
    return value


def _autocast(device_type):
    if device_type in ("cpu", "cuda") and not hasattr(torch, "get_autocast_dtype"):
        # torch < 2.4 knows autocast on the CPU and CUDA only
        if device_type == "cpu":
            return torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()
        return torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype()
    enabled = torch.is_autocast_enabled(device_type)
    return enabled, torch.get_autocast_dtype(device_type)


def numeric_settings(device):
    """The ambient settings that change how a forward pass on ``device`` rounds.

    Autocast for the device's type (whether it is on, and its dtype), the
    float32 matmul precision, the TF32 and reduced-precision switches of
    cuBLAS, cuDNN and oneDNN (:data:`_NUMERIC_FLAGS`), and the default dtype
    (of tensors a forward creates). A few flag reads: no cost per row.

    Parameters
    ----------
    device : torch.device
        The device the forward pass runs on.

    Returns
    -------
    settings : str
        A short digest naming these settings.
    """
    settings = (
        _read(lambda: _autocast(device.type)),
        _read(torch.get_float32_matmul_precision),
        _read(torch.get_default_dtype),
        *(_flag(path) for path in _NUMERIC_FLAGS),
    )
    return xxhash.xxh3_64_hexdigest(repr(settings).encode())
