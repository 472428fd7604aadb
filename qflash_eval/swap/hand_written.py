"""Forwards for the timm modules that compute softmax(Q K^T s + bias) V by hand (no SDPA call to route):
each forms q, k, v and the bias as timm does, calls `attend`, and finishes as timm does."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from .core import SwappedAttention


def _heads_out(x: torch.Tensor) -> torch.Tensor:
    """(B, H, N, D) -> (B, N, H * D)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1)


class SwinWindowAttention(SwappedAttention):
    """Swin (v1) WindowAttention: relative-position bias and the shift mask go in by index."""

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None):
        a = self.inner
        bw, n, _ = x.shape
        q, k, v = a.qkv(x).reshape(bw, n, 3, a.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        bias = a._get_rel_pos_bias()[0]  # (H, N, N), indexed from the table
        return a.proj_drop(a.proj(_heads_out(self.attend(q, k, v, bias=bias, mask=mask))))


class SwinV2WindowAttention(SwappedAttention):
    """Swin V2: cosine attention. The per-head logit scale is folded into the normalised q (softmax scale 1),
    the continuous position bias 16 sigmoid(cpb) and the shift mask are the additive terms."""

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None):
        a = self.inner
        bw, n, _ = x.shape
        if a.q_bias is None:
            qkv = a.qkv(x)
        else:
            qkv_bias = torch.cat((a.q_bias, a.k_bias, a.v_bias))
            separate = getattr(a, "qkv_bias_separate", False)
            qkv = a.qkv(x) + qkv_bias if separate else F.linear(x, weight=a.qkv.weight, bias=qkv_bias)
        q, k, v = qkv.reshape(bw, n, 3, a.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        logit_scale = torch.clamp(a.logit_scale, max=math.log(1.0 / 0.01)).exp()  # (H, 1, 1)
        q = F.normalize(q, dim=-1) * logit_scale
        table = a.cpb_mlp(a.relative_coords_table).view(-1, a.num_heads)
        bias = table[a.relative_position_index.view(-1)].view(n, n, -1).permute(2, 0, 1)
        bias = 16 * torch.sigmoid(bias)
        out = self.attend(q, F.normalize(k, dim=-1), v, bias=bias, mask=mask, scale=1.0)
        return a.proj_drop(a.proj(_heads_out(out)))


class CrossViTCrossAttention(SwappedAttention):
    """CrossViT: the class token of one branch (N_q = 1) attends over every token of the other."""

    def forward(self, x: torch.Tensor):
        a = self.inner
        b, n, c = x.shape
        h = a.num_heads
        q = a.wq(x[:, :1]).reshape(b, 1, h, c // h).transpose(1, 2)
        k = a.wk(x).reshape(b, n, h, c // h).transpose(1, 2)
        v = a.wv(x).reshape(b, n, h, c // h).transpose(1, 2)
        return a.proj_drop(a.proj(_heads_out(self.attend(q, k, v, scale=a.scale))))


class TNTAttention(SwappedAttention):
    """TNT: inner (pixels of a patch, Z = images x patches) and outer attention; q/k and v projected apart."""

    def forward(self, x: torch.Tensor):
        a = self.inner
        b, n, _ = x.shape
        q, k = a.qk(x).reshape(b, n, 2, a.num_heads, a.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        v = a.v(x).reshape(b, n, a.num_heads, -1).transpose(1, 2)
        return a.proj_drop(a.proj(_heads_out(self.attend(q, k, v, scale=a.scale))))


class CaiTTalkingHeadAttention(SwappedAttention):
    """CaiT's talking heads: proj_l mixes the heads' scores before the softmax, proj_w the probabilities
    after it. Head g's mixed scores are one attention of q'_g = [Wl[g, h] q_h]_h (all heads side by side,
    head dim H D) over k = [k_h]_h with the bias bl[g]; its probabilities times the values [v_h]_h give every
    P_g v_h, so out_g = sum_h Ww[g, h] P_h v_g + bw[g] sum_n v_g[n] (docs/algorithm.md, "Talking heads")."""

    def forward(self, x: torch.Tensor):
        a = self.inner
        b, n, c = x.shape
        h, d = a.num_heads, c // a.num_heads
        q, k, v = a.qkv(x).reshape(b, n, 3, h, d).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, N, D) each

        def side_by_side(t):  # every head's (N, D) side by side, the same for each of the H heads
            return t.transpose(1, 2).reshape(b, 1, n, h * d).expand(b, h, n, h * d)

        q_mixed = (a.proj_l.weight[None, :, :, None, None] * q[:, None]).permute(0, 1, 3, 2, 4).reshape(b, h, n, h * d)
        bias = a.proj_l.bias.view(h, 1, 1).expand(h, n, n)
        every_pv = self.attend(q_mixed, side_by_side(k), side_by_side(v), bias=bias, scale=a.scale)
        pv = every_pv.reshape(b, h, n, h, d)  # [b, g, :, j] = P_g v_j
        out = torch.einsum("jg,bgnjd->bjnd", a.proj_w.weight.to(pv.dtype), pv)
        out = out + a.proj_w.bias.to(v.dtype).view(1, h, 1, 1) * v.sum(dim=2, keepdim=True)
        return a.proj_drop(a.proj(_heads_out(out)))


class EfficientFormerAttention(SwappedAttention):
    """EfficientFormer (v1): learned attention biases (H, N, N), key dim 32 against value dim 128."""

    def forward(self, x: torch.Tensor):
        a = self.inner
        b, n, _ = x.shape
        qkv = a.qkv(x).reshape(b, n, a.num_heads, -1).transpose(1, 2)
        q, k, v = qkv.split([a.key_dim, a.key_dim, a.val_dim], dim=3)
        out = self.attend(q, k, v, bias=a.get_attention_biases(x.device), scale=a.scale)
        return a.proj(out.transpose(1, 2).reshape(b, n, a.val_attn_dim))


class LeViTAttention(SwappedAttention):
    """LeViT: attention biases, key dim 16 against value dim 32-64; linear or conv layout."""

    def forward(self, x: torch.Tensor):
        a = self.inner
        bias = a.get_attention_biases(x.device)
        if a.use_conv:
            b, _, hh, ww = x.shape
            q, k, v = (t.transpose(-2, -1) for t in a.qkv(x).view(b, a.num_heads, -1, hh * ww).split(
                [a.key_dim, a.key_dim, a.val_dim], dim=2))
            out = self.attend(q, k, v, bias=bias, scale=a.scale)
            return a.proj(out.transpose(-2, -1).reshape(b, -1, hh, ww))
        b, n, _ = x.shape
        q, k, v = (t.transpose(1, 2) for t in a.qkv(x).view(b, n, a.num_heads, -1).split(
            [a.key_dim, a.key_dim, a.val_dim], dim=3))
        out = self.attend(q, k, v, bias=bias, scale=a.scale)
        return a.proj(out.transpose(1, 2).reshape(b, n, a.val_attn_dim))


class LeViTAttentionDownsample(SwappedAttention):
    """LeViT's subsampling attention: queries from the strided grid (N_q = N_k / stride**2)."""

    def forward(self, x: torch.Tensor):
        a = self.inner
        bias = a.get_attention_biases(x.device)
        if a.use_conv:
            b, _, hh, ww = x.shape
            k, v = (t.transpose(-2, -1) for t in a.kv(x).view(b, a.num_heads, -1, hh * ww).split(
                [a.key_dim, a.val_dim], dim=2))
            q = a.q(x).view(b, a.num_heads, a.key_dim, -1).transpose(-2, -1)
            out = self.attend(q, k, v, bias=bias, scale=a.scale)
            h_out, w_out = (hh - 1) // a.stride + 1, (ww - 1) // a.stride + 1
            return a.proj(out.transpose(-2, -1).reshape(b, a.val_attn_dim, h_out, w_out))
        b, n, _ = x.shape
        k, v = (t.transpose(1, 2) for t in a.kv(x).view(b, n, a.num_heads, -1).split([a.key_dim, a.val_dim], dim=3))
        q = a.q(x).view(b, -1, a.num_heads, a.key_dim).transpose(1, 2)
        out = self.attend(q, k, v, bias=bias, scale=a.scale)
        return a.proj(out.transpose(1, 2).reshape(b, -1, a.val_attn_dim))


class MViTv2Attention(SwappedAttention):
    """MViTv2 pooling attention: q, k, v pooled (N_k != N_q), decomposed relative positions as a
    per-image bias (it depends on q), residual pooling."""

    def forward(self, x: torch.Tensor, feat_size):
        from timm.models.mvitv2 import cal_rel_pos_type, reshape_post_pool, reshape_pre_pool

        a = self.inner
        b, n, _ = x.shape

        def pooled(t, pool, norm):
            size = feat_size
            if pool is not None:
                t, tok = reshape_pre_pool(t, feat_size, a.has_cls_token)
                t, size = reshape_post_pool(pool(t), a.num_heads, tok)
            return (norm(t) if norm is not None else t), size

        q, k, v = a.qkv(x).reshape(b, n, 3, a.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        (q, q_size), (k, k_size), (v, _) = (pooled(q, a.pool_q, a.norm_q), pooled(k, a.pool_k, a.norm_k),
                                            pooled(v, a.pool_v, a.norm_v))
        bias = None
        if a.rel_pos_type == "spatial":  # the decomposed relative positions alone, on zero scores
            zeros = q.new_zeros(b, a.num_heads, q.shape[2], k.shape[2])
            bias = cal_rel_pos_type(zeros, q, a.has_cls_token, q_size, k_size, a.rel_pos_h, a.rel_pos_w)
        out = self.attend(q, k, v, bias=bias, scale=a.scale)
        if a.residual_pooling:
            out = out + q
        return a.proj(out.transpose(1, 2).reshape(b, -1, a.dim_out)), q_size
