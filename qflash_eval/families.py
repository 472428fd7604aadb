"""The timm families this tool evaluates in the integer modes, each with its smallest timm variant (the one
the tests, the README's support table and the GPU benchmark use), and the families it refuses."""
from __future__ import annotations

# family -> the smallest timm model of the family
SUPPORTED_FAMILIES = {
    "ViT": "vit_tiny_patch16_224",
    "DeiT": "deit_tiny_patch16_224",
    "Swin": "swin_tiny_patch4_window7_224",
    "Swin V2": "swinv2_tiny_window8_256",
    "BEiT": "beit_base_patch16_224",
    "EVA-02": "eva02_tiny_patch14_224",
    "ViT RoPE": "vit_small_patch16_rope_224",
    "CrossViT": "crossvit_tiny_240",
    "MaxViT": "maxvit_pico_rw_256",
    "PVT v2": "pvt_v2_b0",
    "Twins-PCPVT": "twins_pcpvt_small",
    "Twins-SVT": "twins_svt_small",
    "LeViT": "levit_128s",
    "EfficientFormer": "efficientformer_l1",
    "MViTv2": "mvitv2_tiny",
    "SigLIP (attention pool)": "vit_base_patch16_siglip_224",
    "ViT-RelPos": "vit_relpos_small_patch16_224",
    "FastViT": "fastvit_sa12",
    "TNT": "tnt_s_patch16_224",
    "CaiT": "cait_xxs24_224",
}

# family -> a model of it that is refused by name (registry.REFUSED or no softmax attention at all)
REFUSED_FAMILIES = {
    "XCiT": "xcit_nano_12_p16_224",
    "CoaT": "coat_lite_tiny",
    "FocalNet": "focalnet_tiny_srf",
}
