"""Random-weight models of every supported family, made lively: timm's initialisation (weights of std 0.02,
zero-initialised residual norms in LeViT and Swin V2, layer scales of 1e-5) gives near-uniform attention
that barely reaches the logits. Here linear and conv weights are variance-preserving (std 1 / sqrt(fan-in)),
every norm weight is 1, every layer scale 0.5 and learned latent queries N(0, 1)."""
import timm
import torch
from torch import nn


def lively_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                module.weight.normal_(0.0, module.weight[0].numel() ** -0.5)
            elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)) and module.weight is not None:
                module.weight.fill_(1.0)
        for pname, p in model.named_parameters():
            last = pname.rsplit(".", 1)[-1]
            if last in ("gamma", "gamma_1", "gamma_2") or ".ls" in f".{pname}" or "layer_scale" in pname:
                p.fill_(0.5)
            elif last == "latent":
                p.normal_()
    return model


def input_for(model: nn.Module, images: int = 1) -> torch.Tensor:
    return torch.randn(images, *model.pretrained_cfg["input_size"], generator=torch.Generator().manual_seed(1))
