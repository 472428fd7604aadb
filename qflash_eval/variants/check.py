"""A variant's call as a mode's `attend`, with its output checked: a variant that raises, returns something
that is not a tensor of q's dtype and the output's shape, or non-finite values for finite inputs (on CUDA:
within its first CUDA_FINITE_CHECKS calls) stops the run (the evaluation keeps the batches it finished) with a
message that names the variant."""
from __future__ import annotations

from typing import Callable


class VariantError(RuntimeError):
    """A user's attention variant broke its contract."""


# on CUDA the finiteness check waits for the GPU (a host sync): it runs on the first calls only, which cover
# the warm-up and the first batch of every model's layers; shape and dtype are checked on every call
CUDA_FINITE_CHECKS = 256


def checked_attend(spec: str, fn: Callable) -> Callable:
    """(q, k, v, config, **common) -> fn(q, k, v, bias=, mask=, softmax_scale=, granularity=, group=), checked."""
    cuda_calls = [0]

    def attend(q, k, v, config, bias=None, mask=None, softmax_scale=None, granularity="sample", group=1,
               **_others):
        try:
            out = fn(q, k, v, bias=bias, mask=mask, softmax_scale=softmax_scale, granularity=granularity,
                     group=group)
        except Exception as err:  # noqa: BLE001 - re-raised with the variant's name
            raise VariantError(f"variant {spec} raised {type(err).__name__}: {err}") from err
        if q.is_cuda:
            cuda_calls[0] += 1
        check_output(spec, out, q, v, finite=cuda_calls[0] <= CUDA_FINITE_CHECKS)
        return out

    return attend


def check_output(spec: str, out, q, v, finite: bool = True) -> None:
    import torch

    expected = (*q.shape[:-1], v.shape[-1])
    if not isinstance(out, torch.Tensor):
        raise VariantError(f"variant {spec} returned {type(out).__name__}, not a tensor of shape {expected}")
    if tuple(out.shape) != expected or out.dtype != q.dtype:
        raise VariantError(f"variant {spec} returned {out.dtype} of shape {tuple(out.shape)}; "
                           f"expected {q.dtype} of shape {expected} (q {tuple(q.shape)}, v {tuple(v.shape)})")
    if not finite or (out.is_cuda and torch.cuda.is_current_stream_capturing()):
        return  # no host sync inside a CUDA graph capture: the warm-up calls before it were checked
    if not bool(torch.isfinite(out).all()) and all(bool(torch.isfinite(t).all()) for t in (q, v)):
        bad = int((~torch.isfinite(out)).sum())
        raise VariantError(f"variant {spec} returned {bad} non-finite values of {out.numel()} for finite inputs")
