"""MATES's selection rule and the state of its rounds (Yu et al. 2024, "MATES: Model-Aware Data
Selection for Efficient Pretraining with Data Influence Models", NeurIPS 2024; used by
``training.hooks.mates``): the Gumbel top-k rule of the official ``select_data.py`` (the k smallest
predicted influence / tau + Gumbel noise: the official sign, lower predicted loss after a step is
better), the probe labels gathered back in candidate order across DDP ranks, and each round's
index arrays packed into the JSON hook state (base64 of an .npz: compact and exact).
"""

from __future__ import annotations

import numpy as np

from training.hooks.samplers import rng


def gumbel_select(pred: np.ndarray, k: int, temperature: float, seed: int, round_: int) -> np.ndarray:
    """Indices of the k smallest pred/tau + Gumbel(0, 1) (MATES ``select_data.py``), sorted."""
    g = rng(seed, 4242, round_).gumbel(size=len(pred))
    s = np.asarray(pred, dtype=float) / temperature + g
    return np.sort(np.argsort(s, kind="stable")[:k])



ROUND_ARRAYS = ("selected", "pool", "pred", "keep")


def sha_of(indices) -> str:
    import hashlib

    return hashlib.sha256(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()[:16]


def pack_arrays(arrays: dict) -> str:
    """Arrays as base64 of an .npz (compact and exact inside the JSON hook state)."""
    import base64
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def unpack_arrays(text: str) -> dict:
    import base64
    import io

    with np.load(io.BytesIO(base64.b64decode(text))) as z:
        return {k: z[k] for k in z.files}


def gather_in_order(mine: list[float], total: int, rank: int, world_size: int) -> list[float]:
    """Probe labels of every rank, back in candidate order (rank k probed candidates k::world)."""
    if world_size == 1:
        return list(mine)
    import torch.distributed as dist

    parts = [None] * world_size
    dist.all_gather_object(parts, list(mine))
    out = [0.0] * total
    for k, part in enumerate(parts):
        out[k::world_size] = part
    return out

