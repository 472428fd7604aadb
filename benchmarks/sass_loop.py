"""The SASS of the qflash kernels as their launcher compiles them for sm90, and the instructions of their
key-tile loop by kind: on CUDA or on a CPU (the launch is intercepted and the captured arguments compiled with
Triton's own specialization rules: strides of 1 become constants, pointers and multiples of 16 get divisibility
hints). benchmarks/budget.py puts the histogram beside Nsight Compute's counts.
"""
from __future__ import annotations

import collections
import importlib
import re

# instruction kinds of the SASS histogram, by opcode prefix (first match wins)
KINDS = (
    ("mma", ("IGMMA", "HGMMA", "IMMA", "HMMA", "WARPGROUP")),
    ("shuffle", ("SHFL",)),
    ("load_store", ("LDG", "STG", "LDS", "STS", "LDSM", "LDGSTS", "LDC", "LDGDEPBAR", "DEPBAR", "BAR", "SYNCS",
                    "UTMA", "MEMBAR", "FENCE")),
    ("imad_fma_pipe", ("IMAD", "FFMA", "FMUL", "FADD", "HFMA", "LEA.HI.X")),
    ("convert_pack", ("PRMT", "I2F", "F2I", "F2F", "I2I", "F2FP")),
    ("min_max", ("VIMNMX", "IMNMX", "VIADDMNMX", "FMNMX")),
    ("shift", ("SHF", "SHL", "SHR")),
    ("select_compare", ("SEL", "ISETP", "FSEL", "FSETP", "PLOP3", "P2R", "R2P")),
    ("integer_alu", ("IADD3", "VIADD", "LOP3", "LEA", "IABS", "POPC", "FLO", "BMSK", "SGXT", "MOV")),
    ("uniform", ("U",)),
    ("control", ("BRA", "EXIT", "BSSY", "BSYNC", "NOP", "CALL", "RET")),
)
def kind_of(opcode: str) -> str:
    for kind, prefixes in KINDS:
        if opcode.startswith(prefixes):
            return kind
    return "other"


def opcode(line: str) -> str:
    return re.sub(r"^@!?U?P\w+\s+", "", line).split()[0]


def key_tile_loops(sass: str) -> list[list[str]]:
    """The bodies of the backward branches (loops) of Triton's SASS listing, largest first."""
    labels, body = {}, []
    for line in sass.splitlines():
        if re.match(r"^\.?L\w*:|^LBB\d+:", line.strip()):
            labels[line.strip()[:-1]] = len(body)
        elif "\t" in line and not line.strip().startswith(("//", ".")):
            body.append(line.split("\t", 1)[1].strip().rstrip(";"))
    loops = []
    for j, text in enumerate(body):
        m = re.search(r"BRA\s+`?\(?(\.?L\w+|LBB\d+)", text)
        if m and m.group(1) in labels and labels[m.group(1)] <= j:
            loops.append(body[labels[m.group(1)]:j + 1])
    return sorted(loops, key=len, reverse=True)


def sass_histogram(sass: str) -> dict:
    """Instructions of the largest loop (the key-tile loop) by kind, and in the whole kernel."""
    loops = key_tile_loops(sass)
    loop = loops[0] if loops else []
    every = [ln.split("\t", 1)[1].strip() for ln in sass.splitlines() if "\t" in ln]
    return {"loop_instructions": len(loop), "kernel_instructions": len(every),
            "loop_by_kind": dict(collections.Counter(kind_of(opcode(t)) for t in loop).most_common()),
            "loop_by_opcode": dict(collections.Counter(opcode(t) for t in loop).most_common(24))}


def launcher(pkg):
    return importlib.import_module((pkg or "qflash_kernels") + ".jit.qflash_launch")


def compiled_sass(name: str, batch: int, old: str | None) -> dict:
    """{label: SASS histogram} of the qflash kernels of workload `name` as the launcher compiles them for
    sm90: on CUDA from the JIT cache after a call, on the CPU by intercepting the launch and compiling the
    captured arguments."""
    result = {}
    for label, pkg in (("qflash", "qflash_kernels"), ("qflash_old", old)):
        if pkg is None:
            continue
        for i, sass in enumerate(_captured_sass(importlib.import_module(pkg + ".jit.qflash"), launcher(pkg),
                                                name, batch)):
            result[label + ("" if i == 0 else f"_launch{i + 1}")] = sass_histogram(sass)
    return result


def _captured_sass(kernel_module, launcher, name, batch):
    import torch
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from qflash_eval.workloads import shape_at_batch

    z, h, n, d = shape_at_batch(name, batch)
    jit = kernel_module.qflash_fwd_kernel
    while not isinstance(jit, triton.runtime.JITFunction):
        jit = jit.fn
    captured = []
    real_run = jit.run
    jit.run = lambda *args, grid, warmup, **kwargs: captured.append((args, kwargs))
    try:
        qkv = torch.empty(z, n, 3, h, d, dtype=torch.float16)
        k8 = torch.empty(z, h, n, d, dtype=torch.int8)
        n_pad = -(-n // 64) * 64
        vt = torch.empty(z, h, d, n_pad, dtype=torch.int8).transpose(2, 3)
        out = torch.empty(z, n, h, d, dtype=torch.float16).transpose(1, 2)
        table = torch.zeros(16, z, dtype=torch.int32)
        scales = type("Scales", (), {"table": table})()
        launcher.launch_qflash(qkv[:, :, 0].transpose(1, 2), k8, vt, out, scales, v_operand_order=True,
                               v_rows=n_pad, scales_from_inputs=True)
    finally:
        jit.run = real_run
    names = list(jit.arg_names)
    sources = []
    for args, kwargs in captured:
        options = {"num_warps": kwargs.pop("num_warps", 4), "num_stages": kwargs.pop("num_stages", 3)}
        kwargs.pop("num_ctas", None), kwargs.pop("maxnreg", None)
        values = dict(zip(names, args), **kwargs)
        sig, attrs, constexprs = {}, {}, {}
        for i, arg in enumerate(names):
            value = values[arg]
            if jit.params[i].is_constexpr:
                sig[arg], constexprs[(i,)] = "constexpr", value
            elif isinstance(value, torch.Tensor):
                sig[arg] = "*" + {torch.float16: "fp16", torch.int8: "i8", torch.int32: "i32",
                                  torch.float32: "fp32", torch.bfloat16: "bf16"}[value.dtype]
                attrs[(i,)] = [["tt.divisibility", 16]]
            elif value == 1 and i not in jit.do_not_specialize:
                sig[arg], constexprs[(i,)] = "constexpr", 1
            else:
                sig[arg] = "i64" if abs(value) >= 2**31 else "i32"
                if value % 16 == 0 and i not in jit.do_not_specialize:
                    attrs[(i,)] = [["tt.divisibility", 16]]
        compiled = triton.compile(ASTSource(jit, sig, constexprs, attrs), target=GPUTarget("cuda", 90, 32),
                                  options=options)
        sources.append(compiled.asm["sass"])
    return sources
