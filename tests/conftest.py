import os

# ATEN_CPU_CAPABILITY=avx2 (or default) emulates an older CPU for ATen's kernels only; oneDNN still sees
# AMX and torch's bf16 CPU flash attention then packs for it and raises ("pack_vnni2 is only supported
# when avx512 is supported"). A real CPU of that capability has no AMX: cap oneDNN to match, before torch
# loads it, so the emulation is one consistent machine (subprocesses inherit it).
_ONEDNN_ISA = {"default": "SSE41", "avx2": "AVX2"}
if os.environ.get("ATEN_CPU_CAPABILITY", "").lower() in _ONEDNN_ISA:
    os.environ.setdefault("ONEDNN_MAX_CPU_ISA", _ONEDNN_ISA[os.environ["ATEN_CPU_CAPABILITY"].lower()])

import pytest  # noqa: E402
import torch  # noqa: E402

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Under pytest-xdist every worker is a process of its own: one intra-op thread each keeps the workers from
# competing for the cores (the tiny test models gain little from a second thread).
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
