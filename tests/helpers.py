import math

import torch


def random_qkv(rng, z, h, n, d, dtype=torch.float16, device="cpu", fused=True, spread=2.0):
    """Q, K, V as timm hands them over: strided views of one fused (Z, N, 3, H, D) tensor."""
    if fused:
        qkv = torch.randn(z, n, 3, h, d, generator=rng) * spread
        qkv = qkv.to(device=device, dtype=dtype).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]
    return tuple((torch.randn(z, h, n, d, generator=rng) * spread).to(device=device, dtype=dtype) for _ in range(3))


def swin_bias_and_mask(rng, h, n, windows, device="cpu"):
    bias = (torch.randn(h, n, n, generator=rng) * 2).to(device)
    mask = torch.where(torch.rand(windows, n, n, generator=rng) < 0.3, -100.0, 0.0).to(device)
    mask[:, torch.arange(n), torch.arange(n)] = 0.0  # every query sees at least itself, as in Swin
    return bias, mask


def sqnr_db(out: torch.Tensor, ref: torch.Tensor) -> float:
    return 20 * math.log10(ref.double().norm().item() / (out.double() - ref.double()).norm().item())


def tiny_vit(**kw):
    """A small random-weight timm ViT (64 x 64 images, 10 classes): shapes and plumbing only."""
    import timm

    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, num_classes=10, **kw).eval()
