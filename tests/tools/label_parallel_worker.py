"""One rank of a label-parallel fused_linear_multilabel_margin_loss run (tests/test_fused.py).

    python label_parallel_worker.py RANK WORLD PORT OUT CASE [CASE ...]

For each case: builds its test problem from a fixed seed, keeps this rank's shard of the
classes (unequal shards), runs the loss over a gloo process group with torch autograd, and
writes the loss and the gradients of hidden, the weight shard and the bias shard to
``OUT``/<CASE>-rank<R>.npz.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_fused import label_parallel_case, shard_bounds

import xmargin


def main() -> None:
    rank, world, port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    out, cases = Path(sys.argv[4]), sys.argv[5:]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    for case in cases:
        run(rank, world, out, case)
    dist.barrier()  # (no rank tears its connections down while another still uses them)
    dist.destroy_process_group()


def run(rank: int, world: int, out: Path, case: str) -> None:
    h, W, b, t, kw = label_parallel_case(case)
    lo, hi = shard_bounds(W.shape[0], world)[rank]
    th = torch.tensor(h, requires_grad=True)
    tW = torch.tensor(W[lo:hi], requires_grad=True)
    tb = torch.tensor(b[lo:hi], requires_grad=True)
    loss = xmargin.fused_linear_multilabel_margin_loss(
        th, tW, torch.tensor(t), tb, group=dist.group.WORLD, class_start=lo,
        num_classes=W.shape[0], **kw,
    )  # fmt: skip
    # reduction="none": per-row grad_output weights, as the test's reference uses
    weights = torch.linspace(0.5, 1.5, loss.numel(), dtype=loss.dtype) if loss.ndim else 1.0
    (loss * weights).sum().backward()
    np.savez(out / f"{case}-rank{rank}.npz", loss=loss.detach().numpy(), h=th.grad.numpy(),
             W=tW.grad.numpy(), b=tb.grad.numpy())  # fmt: skip


if __name__ == "__main__":
    main()
