"""The QFlash paper's attention workloads (Z, H, N, D) per image, shared by the SQNR table and benchmarks."""

WORKLOADS = {
    "A1": (1, 3, 197, 64),  # ViT/DeiT-Tiny
    "A2": (1, 6, 197, 64),  # ViT/DeiT-Small
    "A3": (1, 12, 197, 64),  # ViT/DeiT-Base
    "A4": (64, 3, 49, 32),  # Swin stage 1
    "A5": (16, 6, 49, 32),  # Swin stage 2
    "A6": (4, 12, 49, 32),  # Swin stage 3
    "A7": (1, 24, 49, 32),  # Swin stage 4
}
SWIN_WORKLOADS = ("A4", "A5", "A6", "A7")


def shape_at_batch(name: str, batch: int) -> tuple[int, int, int, int]:
    z, h, n, d = WORKLOADS[name]
    return z * batch, h, n, d
