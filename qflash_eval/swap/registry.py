"""The one list of timm attention module classes: routed (timm's forward, its SDPA call made integer),
hand-written (timm computes attention by hand: hand_written.py), and refused by name with the reason.

Keys are "module.qualname" of the timm class, so that listing models needs no timm import here.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

from torch import nn

from . import hand_written as hw
from .sdpa_route import RoutedAttention


class Support(NamedTuple):
    families: str  # the timm families that use the class, for the support table and --list-models
    attention: str  # what kind of attention it is
    swap: Optional[type] = None  # the SwappedAttention subclass; None: refused
    reason: str = ""  # why it is refused


R = RoutedAttention  # timm's own forward, its SDPA call routed
SUPPORTED: dict[str, Support] = {
    "timm.layers.attention.Attention": Support(
        "ViT, DeiT, DeiT III, DINOv2, FlexiViT, CrossViT and CaiT blocks", "self-attention, optional q/k norms", R),
    "timm.layers.attention.AttentionRope": Support(
        "ViT RoPE variants (vit_*_rope_*)", "rotary embeddings and q/k norms applied before attention", R),
    "timm.layers.attention_pool.AttentionPoolLatent": Support(
        "SigLIP, ViT MAP heads", "attention pool: a learned latent query (N_q = 1)", R),
    "timm.models.beit.Attention": Support("BEiT, BEiT v2", "self-attention + relative position bias", R),
    "timm.models.eva.EvaAttention": Support(
        "EVA-02, ViT RoPE variants", "rotary embeddings and q/k norms applied before attention", R),
    "timm.models.cait.ClassAttn": Support("CaiT, XCiT", "class attention: the class token queries (N_q = 1)", R),
    "timm.models.maxxvit.Attention2d": Support(
        "MaxViT, CoAtNet (NCHW)", "block and grid attention + relative position bias", R),
    "timm.models.maxxvit.AttentionCl": Support(
        "MaxViT, CoAtNet (NHWC)", "block and grid attention + relative position bias", R),
    "timm.models.pvt_v2.Attention": Support("PVT v2", "spatially reduced keys and values (N_k < N_q)", R),
    "timm.models.twins.LocallyGroupedAttn": Support("Twins", "attention within local windows", R),
    "timm.models.twins.GlobalSubSampleAttn": Support("Twins", "sub-sampled keys and values (N_k < N_q)", R),
    "timm.models.vision_transformer_relpos.RelPosAttention": Support(
        "ViT-RelPos", "self-attention + relative position bias (MLP or table)", R),
    "timm.models.fastvit.Attention": Support("FastViT", "self-attention in the last stages", R),
    "timm.models.swin_transformer.WindowAttention": Support(
        "Swin", "shifted-window attention + relative position bias and shift mask", hw.SwinWindowAttention),
    "timm.models.swin_transformer_v2.WindowAttention": Support(
        "Swin V2", "cosine window attention: learned logit scale, continuous position bias, shift mask",
        hw.SwinV2WindowAttention),
    "timm.models.crossvit.CrossAttention": Support(
        "CrossViT", "cross attention: one branch's class token over the other's tokens (N_q = 1)",
        hw.CrossViTCrossAttention),
    "timm.models.cait.TalkingHeadAttn": Support(
        "CaiT", "talking heads: scores mixed across heads before the softmax, probabilities after it",
        hw.CaiTTalkingHeadAttention),
    "timm.models.tnt.Attention": Support("TNT", "inner (pixel) and outer (patch) attention", hw.TNTAttention),
    "timm.models.efficientformer.Attention": Support(
        "EfficientFormer", "self-attention + learned attention biases, D_v = 4 D", hw.EfficientFormerAttention),
    "timm.models.levit.Attention": Support(
        "LeViT", "attention biases, D_v = 2-4 D", hw.LeViTAttention),
    "timm.models.levit.AttentionDownsample": Support(
        "LeViT", "subsampling attention: strided queries (N_q < N_k) + attention biases", hw.LeViTAttentionDownsample),
    "timm.models.mvitv2.MultiScaleAttention": Support(
        "MViTv2", "pooling attention (N_k != N_q) + decomposed relative positions, residual pooling",
        hw.MViTv2Attention),
}

REFUSED: dict[str, Support] = {
    "timm.models.xcit.XCA": Support(
        "XCiT", "cross-covariance attention", None,
        "a softmax over channels (D x D scores per head), not over tokens: its 'head dim' is the token count"),
    "timm.models.coat.FactorAttnConvRelPosEnc": Support(
        "CoaT", "factorized attention", None,
        "softmax over the keys' tokens, then K^T V and Q (K^T V): no softmax(Q K^T) V to make integer"),
    "timm.models.mvitv2.MultiScaleAttentionPoolFirst": Support(
        "MViTv2 (pool-first)", "pooling attention, pool first", None,
        "timm's pool-first path multiplies q by an untransposed k; no timm MViTv2 configuration uses it"),
}


def class_key(module: nn.Module) -> str:
    return f"{type(module).__module__}.{type(module).__qualname__}"


def looks_like_attention(module: nn.Module) -> bool:
    name = type(module).__name__.lower()
    return "attention" in name or name.endswith("attn") or "attn" in name.split("_")
