"""The one general mechanism: a timm module that calls F.scaled_dot_product_attention (with `fused_attn`
on) keeps its own forward, and that call, and only that call, goes to integer attention.

Everything timm does around the call (q/k norms, RoPE, relative-position biases, pooling of keys, class
tokens) stays timm's; the additive `attn_mask` becomes the integer variant's bias and `scale` its softmax
scale. The patch of torch.nn.functional lives only for the module's forward and is never re-entered, so
attention that the integer variants compute in float (int8qkv) reaches PyTorch's own SDPA.
"""
from __future__ import annotations

import contextlib
import threading

import torch

from .core import TORCH_SDPA, SwappedAttention

_routing = threading.local()


@contextlib.contextmanager
def sdpa_routed_to(handler):
    """torch.nn.functional.scaled_dot_product_attention calls go to handler meanwhile (not nested ones)."""
    def routed(*args, **kwargs):
        if getattr(_routing, "busy", False):
            return TORCH_SDPA(*args, **kwargs)
        _routing.busy = True
        try:
            return handler(*args, **kwargs)
        finally:
            _routing.busy = False

    previous = torch.nn.functional.scaled_dot_product_attention
    torch.nn.functional.scaled_dot_product_attention = routed
    try:
        yield
    finally:
        torch.nn.functional.scaled_dot_product_attention = previous


class RoutedAttention(SwappedAttention):
    """A timm attention module whose fused path calls SDPA: its forward, with SDPA routed to `attend`."""

    def __init__(self, inner, config, context):
        super().__init__(inner, config, context)
        inner.fused_attn = True

    def forward(self, *args, **kwargs):
        with sdpa_routed_to(self.sdpa):
            return self.inner(*args, **kwargs)

    def sdpa(self, q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        name = type(self.inner).__name__
        if is_causal or enable_gqa or dropout_p:
            raise NotImplementedError(f"{name}: integer attention has no causal, grouped-query or dropout form")
        if attn_mask is not None and attn_mask.dtype == torch.bool:
            raise NotImplementedError(f"{name}: a boolean attention mask is not supported; pass an additive one")
        lead = q.shape[:-2]
        if q.dim() != 4:  # SDPA takes any leading dims: fold them into (Z, H)
            q, k, v = (t.reshape(-1, 1, *t.shape[-2:]) for t in (q, k, v))
            attn_mask = None if attn_mask is None else attn_mask.expand(*lead, *attn_mask.shape[-2:]).reshape(
                -1, 1, *attn_mask.shape[-2:])
        out = self.attend(q, k, v, bias=attn_mask, scale=scale)
        return out.reshape(*lead, *out.shape[-2:])
