"""The precision a forward pass runs in: ``"float32"``, ``"bfloat16"`` or ``"float16"``.

A lower precision runs the network under ``torch.autocast`` on the model's
device (matrix products and convolutions in 16 bits, reductions and
normalisations as autocast decides); pooled features always come back as
float32. Whether the hardware computes a 16-bit type natively is read from
torch's capability helpers (CPU feature flags that torch reads once through
cpuinfo, the CUDA device's properties): no text is parsed and nothing is
timed, so nothing needs remembering here.
"""

import contextlib
import types
import warnings

import numpy as np
import torch

# read-only: the precision names and the autocast dtype of each
PRECISIONS = types.MappingProxyType(
    {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
)


def autocast(device, precision):
    """The context a forward on ``device`` runs in for ``precision``.

    ``"float32"`` adds nothing: the network runs in its own dtype (an autocast
    the caller entered still applies, and is part of the cache identity).
    """
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _cpu_flag(name):
    check = getattr(torch.cpu, name, None)  # torch's cpuinfo flags (torch >= 2.1)
    return None if check is None else bool(check())


def native(precision, device):
    """Whether ``device`` computes ``precision`` natively: True, False or None (unknown).

    On the CPU, bfloat16 needs AVX512-BF16 or AMX (otherwise oneDNN emulates
    it, slower than float32), float16 needs AMX-FP16. A CUDA device reports
    its bfloat16 support itself; float16 is native on every CUDA device.
    """
    if PRECISIONS[precision] is None:
        return True
    if device.type == "cpu":
        if precision == "bfloat16":
            flags = [_cpu_flag("_is_avx512_bf16_supported"), _cpu_flag("_is_amx_tile_supported")]
        else:
            flags = [_cpu_flag("_is_amx_fp16_supported")]
        if any(flags):
            return True
        return None if None in flags else False
    if device.type == "cuda" and precision == "bfloat16":
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    return True


def warn_if_emulated(precision, device, *, stacklevel=3):
    """Warn when ``device`` would emulate ``precision`` (slower than float32).

    The call still runs in ``precision``: the features depend on it (and the
    cache keys on it), so the same estimator gives the same features on every
    machine; the warning leaves the choice to the user.
    """
    if native(precision, device) is False:
        warnings.warn(
            f"precision={precision!r}: this {device.type.upper()} has no native "
            f"{precision} arithmetic, so it is emulated and runs slower than "
            "float32 (on a CPU, bfloat16 needs AVX512-BF16 or AMX, float16 needs "
            "AMX-FP16). The features are computed in "
            f"{precision} as asked; set precision='float32' for speed here.",
            UserWarning,
            stacklevel=stacklevel,
        )


def row_cosines(a, b):
    """Cosine similarity of each row of ``a`` with the same row of ``b``.

    Two all-zero rows count as identical (1.0); one all-zero row against a
    non-zero one as 0.0.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.einsum("ij,ij->i", a, b)
    both_zero = (np.linalg.norm(a, axis=1) == 0) & (np.linalg.norm(b, axis=1) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosines = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
    return np.where(both_zero, 1.0, np.clip(cosines, -1.0, 1.0))
