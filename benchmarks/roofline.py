"""A roofline model of the GPU pairwise hinge: for each GPU shape, the bytes that must move,
the floor they set at the device's bandwidth, and an estimate of the time of the design the
Triton launcher uses, so that a design can be judged before a device is available.

    python -m benchmarks --device cuda --model      # the model alone (no GPU needed)

The model (every number below is an assumption of the model, not a measurement):

* **Bytes that must move** (DESIGN.md §8): read the scores x (N·C) and the target prefix
  (N·(T+1) entries: the positives and the terminator), write the loss (N·4); fwd+bwd also
  writes the gradient (N·C). That is the floor: ``bytes / bandwidth``.
* **The design's bytes**: what the kernels actually read and write. The kernels validate every
  target value (a row with one outside [-1, C) is NaN), so they read all K target columns
  (K = C in PyTorch's layout); under autograd the GPU backends run a loss-only forward and a
  second, scaled pass in backward, so fwd+bwd reads x (and the targets) twice. Each pass also
  writes and reads the bitmap of positives (C/32 words per row), and a split pass writes and
  reads its partials (N·S·(2·BLOCK_T + 3) words: nothing beside x).
* **The design's parallelism**: ``programs_per_row`` = S programs share each row (the
  launcher's ``programs_per_row``: one, unless N is small against the SM count and K fits
  one threshold tile), each streaming its slice of the row in chunks of ``BLOCK_C`` classes.
  A chunk costs ``CHUNK_LATENCY_US`` (a dependent DRAM round trip plus the chunk's barriers)
  when its program waits on it alone; the kernels issue the next chunk's loads before
  working on the current one (the split kernel always, the one-program-per-row kernel except
  for p = 2 gradients, which have no registers to spare; the model is of p = 1, the
  benchmark's), so two chunks are in flight (``chunks_in_flight``) and a chunk costs half
  that; programs run ``CTAS_PER_SM`` to an SM. Every program first builds its
  row's sorted table (``SETUP_CHUNKS`` chunk times), and a split pass ends with a finishing
  launch (``FINISH_US``). The time of a pass is the larger of its bytes at the device
  bandwidth and its waves of programs times the serial work of one program.

``estimate()`` returns both figures and their ratio; the benchmark prints them beside the
measured times when a GPU is present, and alone (labelled as an estimate) without one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# device presets (peak DRAM bandwidth in GB/s from the vendors' data sheets, SM counts)
DEVICES = {
    "H100 SXM": (3350.0, 132),
    "H100 PCIe": (2000.0, 114),
    "H200": (4800.0, 132),
    "A100 SXM 80GB": (2039.0, 108),
}
CHUNK_LATENCY_US = 0.7  # one serial chunk of one program: DRAM latency (~0.6 us) + barriers
CTAS_PER_SM = 2  # 8-warp programs at 100-128 registers per thread (the launcher's maxnreg)
SETUP_CHUNKS = 3  # a program's setup (targets, sort, prefix sums), in chunk times (launcher's)
FINISH_US = 3.0  # the finishing launch of a split pass: launch gap + reading the partials


@dataclass(frozen=True)
class Design:
    """How the launcher runs one (N, C, K) problem."""

    block_c: int  # classes per chunk
    programs_per_row: int = 1  # programs sharing one row (S)
    threshold_tiles: int = 1  # passes over the row per threshold tile (rows with T > BLOCK_T)
    chunks_in_flight: int = 1  # chunks whose loads one program has issued at a time
    block_t: int = 16  # positive slots per tile (the size of a split's partials)


def triton_design(
    n: int, c: int, k: int, t: int, is_f64: bool = False, sms: int | None = None
) -> Design:
    """The design the Triton launcher picks for this problem (its own heuristics) on a GPU of
    ``sms`` SMs (default: an H100 SXM's)."""
    from xmargin.backends import triton as tb

    cfg = tb.launch_config(n, c, k, is_f64, sms or DEVICES["H100 SXM"][1])
    s = cfg.get("S", 1)
    return Design(
        block_c=cfg["BLOCK_C"],
        programs_per_row=s,
        threshold_tiles=max(1, math.ceil(max(t, 1) / cfg["BLOCK_T"])),
        chunks_in_flight=tb.CHUNKS_IN_FLIGHT,  # next chunk's loads issued early (see above)
        block_t=cfg["BLOCK_T"],
    )


def must_move(
    n: int, c: int, t: int, mode: str, score_bytes: int = 4, target_bytes: int = 8
) -> int:
    """The floor's bytes (see the module docstring)."""
    b = n * c * score_bytes + n * (t + 1) * target_bytes + n * 4
    return b + (n * c * score_bytes if mode == "fwd+bwd" else 0)


def design_bytes(
    n: int,
    c: int,
    k: int,
    mode: str,
    score_bytes: int = 4,
    target_bytes: int = 8,
    tiles: int = 1,
    design: Design | None = None,
) -> int:
    """What the design reads and writes (see the module docstring)."""
    bitmap = 2 * n * math.ceil(c / 32) * 4  # zeroed/set, then read once per chunk's words
    one_pass = n * c * score_bytes * tiles + n * k * target_bytes + bitmap
    if design is not None and design.programs_per_row > 1:
        one_pass += 2 * n * design.programs_per_row * (2 * design.block_t + 3) * 4
    if mode == "fwd":
        return one_pass + n * 4
    return 2 * one_pass + n * 4 + n * c * score_bytes


def estimate(
    n: int,
    c: int,
    k: int,
    t: int,
    mode: str,
    *,
    bandwidth_gbs: float,
    sms: int,
    design: Design,
    score_bytes: int = 4,
) -> dict:
    """Floor and design estimate, in microseconds, for one problem on one device."""
    floor = must_move(n, c, t, mode, score_bytes) / (bandwidth_gbs * 1e3)
    passes = 1 if mode == "fwd" else 2
    moved = design_bytes(n, c, k, mode, score_bytes, tiles=design.threshold_tiles, design=design)
    s = design.programs_per_row
    programs = n * s
    slots = sms * CTAS_PER_SM
    waves = math.ceil(programs / slots)
    # chunks one program walks: its slice of whole chunks, once per threshold tile
    chunks = math.ceil(math.ceil(c / design.block_c) / s) * design.threshold_tiles
    per_program = (chunks / design.chunks_in_flight + SETUP_CHUNKS) * CHUNK_LATENCY_US
    serial = (waves * per_program + (FINISH_US if s > 1 else 0.0)) * passes
    est = max(moved / (bandwidth_gbs * 1e3), serial)
    return {
        "N": n, "C": c, "K": k, "T": t, "mode": mode,
        "must_move_mb": must_move(n, c, t, mode, score_bytes) / 1e6,
        "design_mb": moved / 1e6,
        "floor_us": floor,
        "estimate_us": est,
        "bound": "bandwidth" if est > serial else "serial chunks",
        "x_floor": est / floor,
        "programs": programs,
    }  # fmt: skip


def model_rows(shapes, device: str = "H100 SXM", bandwidth_gbs=None, sms=None) -> list[dict]:
    """The model for every (N, C, T) shape, PyTorch's (N, C) target layout up to C = 32768 and
    (N, T) targets beyond (the layout the suite gives xmargin at extreme label counts)."""
    bw, n_sm = DEVICES.get(device, DEVICES["H100 SXM"])
    bw = bandwidth_gbs or bw
    n_sm = sms or n_sm
    rows = []
    for n, c, t in shapes:
        k = c if c <= 32768 else t
        design = triton_design(n, c, k, t, sms=n_sm)
        for mode in ("fwd", "fwd+bwd"):
            row = estimate(n, c, k, t, mode, bandwidth_gbs=bw, sms=n_sm, design=design)
            row.update(device=device, bandwidth_gbs=bw, sms=n_sm,
                       programs_per_row=design.programs_per_row)  # fmt: skip
            rows.append(row)
    return rows


COLUMNS = [
    ("N", "N", "d"), ("C", "C", "d"), ("T", "T", "d"), ("mode", "mode", ""),
    ("must_move_mb", "must move MB", ".1f"), ("design_mb", "design MB", ".1f"),
    ("programs_per_row", "S", "d"), ("programs", "programs", "d"), ("floor_us", "floor µs", ".0f"),
    ("estimate_us", "estimate µs", ".0f"), ("x_floor", "x floor", ".1f"), ("bound", "bound", ""),
]  # fmt: skip
