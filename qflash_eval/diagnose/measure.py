"""The diagnosis statistics, accumulated batch by batch.

Local error (teacher-forced): the fp16 model's attention modules record the q, k, v, bias, mask and scale
they form, and every mode attends on exactly those; its output is compared with fp16 attention head by
head (SQNR, cosine). The probability rows a mode applies are read by attending with identity values
(V = I: the output is P itself), giving the KL divergence from fp16's rows and the fraction of visible
probabilities (>= 1e-3 in fp16) that the mode flushes to zero. Propagated error: each block's output in
the mode's own model against the fp16 model's. Scales: each layer's per-image amax of q, k and v.
"""
from __future__ import annotations

import copy
from collections import defaultdict

import torch
from torch import nn

from ..attention_swap import AttentionConfig, SwappedAttention, swap_attention
from ..modes import MODES, REFERENCE_MODE

VISIBLE = 1e-3  # a probability this large in fp16 counts as flushed when the mode gives exactly 0
MAX_KEYS_FOR_ROWS = 1024  # probability rows are read for layers with at most this many keys


class Recorder:
    """Swaps a model's attention for recording modules that attend in float (as the fp16 model does)."""

    def __init__(self, model: nn.Module, config: AttentionConfig):
        swap_attention(model, config)
        model.qflash_context.observing = True  # float attention, the model's own dtype
        self.modules = [m for m in model.modules() if isinstance(m, SwappedAttention)]
        self.calls: list = []
        for index, module in enumerate(self.modules):
            module.attend = self._recording(module, index)

    def _recording(self, module: SwappedAttention, index: int):
        attend = module.attend

        def record(q, k, v, bias=None, mask=None, scale=None):
            out = attend(q, k, v, bias=bias, mask=mask, scale=scale)
            self.calls.append((index, q, k, v, bias, mask, scale, module.images_group(q.shape[0]), out))
            return out

        return record


def block_outputs(model: nn.Module) -> tuple[list, list]:
    """Forward hooks on the parent of every swapped attention module (its block): (names, outputs list)."""
    names, outputs = [], []
    parents = dict.fromkeys(name.rpartition(".")[0] for name, module in model.named_modules()
                            if isinstance(module, SwappedAttention))
    for name in parents:
        block = model.get_submodule(name) if name else model
        names.append(name or "model")
        block.register_forward_hook(lambda _m, _i, out: outputs.append(out[0] if isinstance(out, tuple) else out))
    return names, outputs


class Sums:
    """Running sums per (layer, head): signal and error energy, dot products and norms, KL, flushed."""

    def __init__(self):
        self.values = defaultdict(lambda: torch.zeros(0, dtype=torch.float64))

    def add(self, key, per_head: torch.Tensor):
        old = self.values[key]
        self.values[key] = per_head.double().cpu() if old.numel() == 0 else old + per_head.double().cpu()

    def get(self, key) -> torch.Tensor:
        return self.values[key]


def per_head(x: torch.Tensor) -> torch.Tensor:
    """(Z, H, ...) -> (H,) sums over everything else."""
    return x.transpose(0, 1).reshape(x.shape[1], -1).sum(dim=1)


def sqnr_db(signal: torch.Tensor, error: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(signal / error.clamp(min=1e-30))


class Diagnosis:
    def __init__(self, base_model: nn.Module, modes: list[str], granularity: str, dtype, device,
                 backend: str = "auto"):
        self.modes, self.granularity, self.dtype, self.device = modes, granularity, dtype, device
        self.backend = backend
        self.reference = copy.deepcopy(base_model).to(device, dtype)
        self.recorder = Recorder(self.reference, AttentionConfig("qflash", granularity))
        self.block_names, self.reference_blocks = block_outputs(self.reference)
        self.mode_models, self.mode_blocks = {}, {}
        for mode in modes:
            model = copy.deepcopy(base_model)
            swap_attention(model, AttentionConfig("qflash" if mode == REFERENCE_MODE else mode, granularity,
                                                  backend=backend))
            model.qflash_context.observing = mode == REFERENCE_MODE  # fp16 against itself: float attention
            self.mode_models[mode] = model.to(device, dtype)
            self.mode_blocks[mode] = block_outputs(self.mode_models[mode])[1]
        self.layer_names = [type(m.inner).__name__ for m in self.recorder.modules]
        self.sums = Sums()
        self.amax = defaultdict(list)  # (layer, tensor) -> per-image amax
        self.images = 0

    @torch.inference_mode()
    def add_batch(self, images: torch.Tensor) -> None:
        images = images.to(self.device, self.dtype)
        self.recorder.calls.clear()
        self.reference_blocks.clear()
        self.reference(images)
        for mode in self.modes:
            self.mode_blocks[mode].clear()
            self.mode_models[mode](images)
            for depth, (ref, out) in enumerate(zip(self.reference_blocks, self.mode_blocks[mode])):
                ref, out = ref.float(), out.float()
                self.sums.add(("block", mode, depth), torch.stack([ref.pow(2).sum(), (out - ref).pow(2).sum()]))
        for index, q, k, v, bias, mask, scale, group, out in self.recorder.calls:
            self._local(index, q, k, v, bias, mask, scale, group, out)
        self.images += images.shape[0]

    def _local(self, index, q, k, v, bias, mask, scale, group, ref):
        for name, t in (("q", q), ("k", k), ("v", v)):
            per_image = t.detach().abs().float().reshape(t.shape[0] // group, -1).amax(dim=1)
            self.amax[(index, name)].extend(per_image.cpu().tolist())
        ref = ref.float()
        probs_ref = None
        if k.shape[2] <= MAX_KEYS_FOR_ROWS:
            probs_ref = self._rows(REFERENCE_MODE, q, k, bias, mask, scale, group).float()
        for mode in self.modes:
            out = self._attend(mode, q, k, v, bias, mask, scale, group).float()
            err = out - ref
            self.sums.add(("signal", mode, index), per_head(ref.pow(2)))
            self.sums.add(("error", mode, index), per_head(err.pow(2)))
            self.sums.add(("dot", mode, index), per_head((out * ref).reshape(*ref.shape[:2], -1).sum(-1, keepdim=True)))
            self.sums.add(("norms", mode, index), per_head(
                (out.reshape(*out.shape[:2], -1).norm(dim=-1) * ref.reshape(*ref.shape[:2], -1).norm(dim=-1)).unsqueeze(-1)))
            if probs_ref is not None:
                probs = self._rows(mode, q, k, bias, mask, scale, group).float().clamp(min=0)
                kl = (probs_ref * (probs_ref.clamp(min=1e-12).log() - probs.clamp(min=1e-12).log())).sum(-1)
                self.sums.add(("kl", mode, index), per_head(kl))
                self.sums.add(("rows", mode, index), per_head(torch.ones_like(kl)))
                visible = probs_ref >= VISIBLE
                self.sums.add(("flushed", mode, index), per_head((visible & (probs == 0)).float()))
                self.sums.add(("visible", mode, index), per_head(visible.float()))

    def _attend(self, mode, q, k, v, bias, mask, scale, group):
        if mode == REFERENCE_MODE:
            from ..swap.core import float_attention

            return float_attention(q, k, v, bias, mask, scale)
        config = AttentionConfig(mode, self.granularity, backend=self.backend)
        return MODES[mode].attend(q, k, v, config, granularity=self.granularity, group=group, static_scales=None,
                                  bias=bias, mask=mask, softmax_scale=scale)

    def _rows(self, mode, q, k, bias, mask, scale, group):
        """The probability rows the mode applies: its attention over identity values."""
        z, h, n_k = k.shape[0], k.shape[1], k.shape[2]
        identity = torch.eye(n_k, dtype=q.dtype, device=q.device).expand(z, h, n_k, n_k)
        return self._attend(mode, q, k, identity, bias, mask, scale, group)

    def summary(self) -> dict:
        """Per mode: per layer and head SQNR / cosine / KL / flushed, propagated SQNR by depth, the worst cell."""
        result = {}
        for mode in self.modes:
            layers = []
            for index, name in enumerate(self.layer_names):
                get = lambda what: self.sums.get((what, mode, index))  # noqa: E731
                cell = {"layer": index, "class": name,
                        "sqnr_db": sqnr_db(get("signal"), get("error")).tolist(),
                        "cosine": (get("dot") / get("norms").clamp(min=1e-30)).tolist()}
                if get("kl").numel():
                    cell["kl"] = (get("kl") / get("rows")).tolist()
                    cell["flushed"] = (get("flushed") / get("visible").clamp(min=1)).tolist()
                layers.append(cell)
            blocks = [self.sums.get(("block", mode, d)) for d in range(len(self.block_names))]
            worst = min(((c["sqnr_db"][h], c["layer"], h) for c in layers for h in range(len(c["sqnr_db"]))))
            result[mode] = {"layers": layers,
                            "propagated_sqnr_db": [float(sqnr_db(b[0], b[1])) for b in blocks if b.numel()],
                            "worst": {"layer": worst[1], "head": worst[2], "sqnr_db": worst[0]}}
        return result

    def scales(self) -> list[dict]:
        out = []
        for index, name in enumerate(self.layer_names):
            entry = {"layer": index, "class": name}
            for t in ("q", "k", "v"):
                values = torch.tensor(self.amax[(index, t)])
                entry[t] = {"mean": float(values.mean()), "min": float(values.min()), "max": float(values.max())}
            out.append(entry)
        return out
