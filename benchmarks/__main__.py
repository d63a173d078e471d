"""``python -m benchmarks``: xmargin against PyTorch, every usable backend, one table.

    python -m benchmarks --quick          # under 2 minutes on 2 CPU cores
    python -m benchmarks                  # the full grid (about 15 minutes on 2 CPU cores)
    python -m benchmarks --device cuda    # on a GPU: the GPU grid, GB/s, torch.compile

multilabel_margin_loss over the (N, C, T) grid of DESIGN.md §8 and issue 11's goal shapes, a
sweep of T at fixed (N, C) and the label statistics of CAL500 and bibtex (their real targets,
random scores); the other five losses at (4096, 1000). For each: parity with PyTorch float64 on
the same data, then fwd and fwd+bwd timings. On the CPU every torch row has a one-thread twin
("torch[1 thread]"), and so do the numba and reference backends and xmargin on NumPy
(``XMARGIN_NUM_THREADS=1``); speed-ups compare one thread with one thread and default with
default. Timings: ``torch.utils.benchmark.Timer`` blocks, the implementations interleaved block
by block over several rounds, three seeds rotated call by call; median over rounds, min–max.
Then the goals table (fwd+bwd, numba[1 thread] vs torch[1 thread]).

Writes ``benchmarks/output/<machine>[-quick].csv`` (``benchmarks/results/``, the committed
results, with ``--save``; rows keyed by device, run, backend, loss,
case, shape and mode; each with its provenance: versions, commit, threads, machine, UTC time),
a Markdown report (provenance, goals, every row) and a PNG of time vs T (log-log, one line per
implementation) next to it.
"""

from __future__ import annotations

import argparse
import sys
import time

from ._common import default_threads, machine_name, out_dir, print_table, provenance, write_csv

KEY = ("device", "run", "backend", "loss", "case", "N", "C", "T", "mode")


def _header(prov: dict, threads: dict, run: str, settings: str) -> list[str]:
    return [
        f"xmargin {prov['xmargin_version']} (commit {prov['git_commit']}), "
        f"torch {prov['torch_version']}, numba {prov['numba_version']}, "
        f"triton {prov['triton_version']}, numpy {prov['numpy_version']}",
        f"machine {prov['machine']}, {run} run started {prov['timestamp_utc']}; default threads: "
        f"torch {threads['torch']}, xmargin {threads['xmargin']} ('[1 thread]' rows: 1)",
        settings,
    ]


def _markdown(rows: list[dict], goal_lines: list[str], header: list[str], path) -> None:
    lines = [f"# xmargin benchmarks: {header[1].split(',')[0]}", ""]
    lines += [f"- {h}" for h in header] + [""]
    if goal_lines:
        lines += ["## Goals (issue 11): fwd+bwd, one thread against one thread", ""]
        lines += [*goal_lines, ""]
    lines += [
        "## All rows",
        "",
        "`vs torch`: torch's time over this one's at the same thread count (median of the "
        "per-round ratios, min–max); ms: median over rounds, min–max over rounds.",
        "",
        "| loss | case | N | C | T | mode | implementation | threads | ms (median) | min–max "
        "| vs torch | parity |",
        "|" + "---|" * 12,
    ]
    for r in rows:
        speed = ("" if r["speedup_vs_torch"] is None else
                 f"{r['speedup_vs_torch']:.2g}x ({r['speedup_min']:.2g}–{r['speedup_max']:.2g})")  # fmt: skip
        lines.append(
            f"| {r['loss']} | {r['case']} | {r['N']} | {r['C']} | {r['T']} | {r['mode']} | "
            f"{r['backend']} | {r['threads'] if r['threads'] is not None else ''} | "
            f"{r['ms']:.3g} | {r['ms_min']:.3g}–{r['ms_max']:.3g} | {speed} | {r['parity']} |"
        )
    path.write_text("\n".join(lines) + "\n")


def plot(rows: list[dict], sweep: dict, path, title: str) -> bool:
    """Time vs T at the sweep's (N, C), log-log, one line per implementation (dashed: the
    default thread count, solid: one thread)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install 'xmargin[bench]')")
        return False
    sel = [r for r in rows if r["loss"] == "multilabel_margin_loss" and r["N"] == sweep["N"]
           and r["C"] == sweep["C"]]  # fmt: skip
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True)
    for ax, mode in zip(axes, ("fwd", "fwd+bwd"), strict=True):
        for name in dict.fromkeys(r["backend"] for r in sel):
            pts = sorted(
                (r["T"], r["ms"]) for r in sel if r["backend"] == name and r["mode"] == mode
            )
            if pts:
                style = "-" if "1 thread" in name else "--"
                ax.plot(*zip(*pts, strict=True), style, marker="o", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("T (positive labels per sample)")
        ax.set_title(f"{mode}, N={sweep['N']}, C={sweep['C']}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("time per call (ms)")
    axes[1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _add_model(rows: list[dict], device: str) -> None:
    """The roofline model's floor and estimate beside each measured multilabel GPU row."""
    import torch

    from . import roofline
    from .multilabel_hinge_gpu import _timer, copy_bandwidth

    props = torch.cuda.get_device_properties(torch.device(device))
    bw = copy_bandwidth(device, 1 << 30, _timer("cuda", 20))  # the device's own, measured
    for r in rows:
        if r.get("loss") != "multilabel_margin_loss" or r.get("mode") not in ("fwd", "fwd+bwd"):
            continue
        n, c, t = int(r["N"]), int(r["C"]), round(float(r["T"]))
        k = c if c <= 32768 else t
        est = roofline.estimate(n, c, k, t, r["mode"], bandwidth_gbs=bw,
                                sms=props.multi_processor_count,
                                design=roofline.triton_design(n, c, k, t))  # fmt: skip
        r["model_floor_ms"] = est["floor_us"] / 1e3
        r["model_ms"] = est["estimate_us"] / 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="small grid, 3 rounds (< 2 min)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--backends", nargs="*", help="xmargin backends (default: all usable)")
    parser.add_argument("--no-compile", action="store_true", help="leave out torch.compile")
    parser.add_argument("--no-single-thread", action="store_true",
                        help="leave out the '[1 thread]' rows")  # fmt: skip
    parser.add_argument("--rounds", "--repeats", type=int, dest="rounds",
                        help="interleaved rounds per implementation (at least 3 seeds: 3)")  # fmt: skip
    parser.add_argument("--no-save", action="store_true", help="print only")
    parser.add_argument("--save", action="store_true",
                        help="write to benchmarks/results (committed) instead of "
                        "benchmarks/output (ignored by git)")  # fmt: skip
    parser.add_argument("--model", action="store_true",
                        help="with --device cuda: the roofline model of every GPU shape (an "
                        "estimate; beside the measured times when a GPU is present)")  # fmt: skip
    args = parser.parse_args(argv)
    started = time.perf_counter()

    import torch

    import xmargin

    from . import roofline, suite

    if args.model and args.device.startswith("cuda"):
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(torch.device(args.device))
            from .multilabel_hinge_gpu import _timer, copy_bandwidth

            bw = copy_bandwidth(args.device, 1 << 30, _timer("cuda", 20))
            rows = roofline.model_rows(suite.GRID_GPU, props.name, bw, props.multi_processor_count)
            label = f"{props.name}, measured copy bandwidth {bw:.0f} GB/s"
        else:
            rows = roofline.model_rows(suite.GRID_GPU)
            label = "H100 SXM preset (3350 GB/s, 132 SMs): no GPU here"
        print(f"roofline model of the triton design — an ESTIMATE, not a measurement ({label})")
        print_table(rows, roofline.COLUMNS)
        return 0

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: run without --device cuda for the CPU suite")
        return 2
    gpu = args.device.startswith("cuda")
    probe = torch.zeros(1, 1, device=args.device)
    backends = args.backends or [b for b in xmargin.backends.available(probe)]
    # rounds: at least `rounds` (one per seed), more while the slowest implementation's rounds
    # fit in `budget` seconds; on the CPU a block (one implementation's turn) lasts >= block_s
    if gpu:
        shapes, sweep, other = suite.GRID_GPU, suite.SWEEP_GPU, (4096, 4096)
        timing = dict(rounds=3, max_rounds=3, budget_s=None, block_s=0.0)
    elif args.quick:
        shapes, sweep, other = suite.GRID_QUICK, suite.SWEEP_QUICK, (1024, 1000)
        timing = dict(rounds=3, max_rounds=3, budget_s=None, block_s=0.03)
    else:
        shapes, sweep, other = suite.GRID_FULL, suite.SWEEP_FULL, (4096, 1000)
        timing = dict(rounds=3, max_rounds=5, budget_s=1.5, block_s=0.1)
    if args.rounds:
        timing.update(rounds=args.rounds, max_rounds=args.rounds)
    with_compile = not args.no_compile and (gpu or not args.quick)
    name = machine_name(args.device)
    run = "quick" if args.quick else "full"
    prov = provenance(args.device)
    threads = default_threads()
    settings = (
        ("torch.utils.benchmark.Timer blocks of >= "
         f"{timing['block_s'] * 1e3:.0f} ms" if not gpu else "triton.testing.do_bench")
        + f", implementations interleaved block by block over {timing['rounds']}"
        + (f"–{timing['max_rounds']}" if timing["max_rounds"] != timing["rounds"] else "")
        + f" rounds, {suite.SEEDS} seeds rotated call by call; torch.compile: "
        + ("yes" if with_compile else "no")
    )  # fmt: skip
    header = _header(prov, threads, run, settings)
    print("\n".join(header) + f"\nbackends: {', '.join(backends)}")
    cases = suite.multilabel_cases(shapes, sweep, suite.DATASETS, args.device)
    for c in cases:
        if c.label in suite.DATASETS:
            print(f"  {c.label}: N={c.N}, C={c.C}, mean T={c.T} (real targets, random scores)")
    cases += suite.other_cases(*other, device=args.device)
    rows = suite.run_cases(cases, device=args.device, backends=backends, with_compile=with_compile,
                           one_thread_rows=not args.no_single_thread, run=run, prov=prov,
                           **timing)  # fmt: skip
    columns = [("loss", "loss", ""), ("case", "case", ""), ("N", "N", "d"), ("C", "C", "d"),
               ("T", "T", "g"), ("mode", "mode", ""), ("backend", "impl", ""),
               ("threads", "thr", ""), ("ms", "ms", ".3g"), ("ms_min", "min", ".3g"),
               ("ms_max", "max", ".3g"), ("speedup_vs_torch", "vs torch", ".2g")]  # fmt: skip
    if gpu:
        columns.append(("gbps", "GB/s", ".0f"))
        _add_model(rows, args.device)
        columns += [("model_floor_ms", "floor ms", ".3g"), ("model_ms", "model ms", ".3g")]
    columns.append(("parity", "parity", ""))
    print_table(rows, columns)
    goal_lines = suite.goals_lines(suite.goals(rows))
    if len(goal_lines) > 2:
        print("\ngoals (issue 11), fwd+bwd, one thread vs one thread:")
        print("\n".join(goal_lines))
    if not args.no_save:
        stem = name if run == "full" else f"{name}-quick"
        where = out_dir(args.save)
        write_csv(where / f"{stem}.csv", rows, key=KEY, require="git_commit")
        _markdown(rows, goal_lines if len(goal_lines) > 2 else [], header, where / f"{stem}.md")
        saved = [f"{stem}.csv", f"{stem}.md"]
        if plot(rows, sweep, where / f"{stem}.png", f"multilabel_margin_loss on {name}"):
            saved.append(f"{stem}.png")
        print("wrote " + ", ".join(f"benchmarks/{where.name}/{s}" for s in saved))
    print(f"took {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
