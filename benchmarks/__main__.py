"""``python -m benchmarks``: xmargin against PyTorch, every usable backend, one table.

    python -m benchmarks --quick          # under 2 minutes on 2 CPU cores
    python -m benchmarks                  # the full grid (about 15 minutes on 2 CPU cores)
    python -m benchmarks --device cuda    # on a GPU: the GPU grid, GB/s, torch.compile

multilabel_margin_loss over the (N, C, T) grid of DESIGN.md §8, a sweep of T at fixed (N, C)
and the label statistics of CAL500 and bibtex (their real targets, random scores); the other
five losses at one shape. For each: parity with PyTorch float64 on the same data, then fwd and
fwd+bwd timings (medians, min and max). Writes ``benchmarks/results/<machine>.csv`` (rows keyed
by device, run, backend, loss, case, shape and mode), a Markdown table and a PNG of time vs T
(log-log, one line per implementation) next to it.
"""

from __future__ import annotations

import argparse
import sys

from ._common import RESULTS, machine_name, print_table, write_csv


def _markdown(rows: list[dict], path) -> None:
    head = "| loss | case | N | C | T | mode | implementation | ms (median) | min–max | vs torch | parity |"
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        speed = "" if r["speedup_vs_torch"] is None else f"{r['speedup_vs_torch']:.1f}x"
        lines.append(
            f"| {r['loss']} | {r['case']} | {r['N']} | {r['C']} | {r['T']} | {r['mode']} | "
            f"{r['backend']} | {r['ms']:.3g} | {r['ms_min']:.3g}–{r['ms_max']:.3g} | {speed} | "
            f"{r['parity']} |"
        )
    path.write_text("\n".join(lines) + "\n")


def plot(rows: list[dict], sweep: dict, path, title: str) -> bool:
    """Time vs T at the sweep's (N, C), log-log, one line per implementation."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install 'xmargin[bench]')")
        return False
    sel = [r for r in rows if r["loss"] == "multilabel_margin_loss" and r["N"] == sweep["N"]
           and r["C"] == sweep["C"]]  # fmt: skip
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, mode in zip(axes, ("fwd", "fwd+bwd"), strict=True):
        for name in dict.fromkeys(r["backend"] for r in sel):
            pts = sorted(
                (r["T"], r["ms"]) for r in sel if r["backend"] == name and r["mode"] == mode
            )
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("T (positive labels per sample)")
        ax.set_title(f"{mode}, N={sweep['N']}, C={sweep['C']}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("time per call (ms)")
    axes[1].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="small grid, few repeats (< 2 min)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--backends", nargs="*", help="xmargin backends (default: all usable)")
    parser.add_argument("--no-compile", action="store_true", help="leave out torch.compile")
    parser.add_argument("--repeats", type=int, help="timed runs per implementation")
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args(argv)

    import torch

    import xmargin

    from . import suite

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: run without --device cuda for the CPU suite")
        return 2
    gpu = args.device.startswith("cuda")
    probe = torch.zeros(1, 1, device=args.device)
    backends = args.backends or [b for b in xmargin.backends.available(probe)]
    if gpu:
        shapes, sweep = suite.GRID_GPU, suite.SWEEP_GPU
        repeats = args.repeats or (20 if args.quick else 50)
        other = (4096, 4096)
    elif args.quick:
        shapes, sweep = suite.GRID_QUICK, suite.SWEEP_QUICK
        repeats = args.repeats or 3
        other = (256, 1000)
    else:
        shapes, sweep = suite.GRID_FULL, suite.SWEEP_FULL
        repeats = args.repeats or 5
        other = (1024, 1000)
    with_compile = not args.no_compile and (gpu or not args.quick)
    name = machine_name(args.device)
    run = "quick" if args.quick else "full"
    print(f"xmargin {xmargin.__version__}, torch {torch.__version__}, device {name} "
          f"({torch.get_num_threads()} CPU threads), backends: {', '.join(backends)}, "
          f"torch.compile: {'yes' if with_compile else 'no'}, {run} run")  # fmt: skip
    cases = suite.multilabel_cases(shapes, sweep, ["CAL500", "bibtex"], args.device)
    for c in cases:
        if c.label in ("CAL500", "bibtex"):
            print(f"  {c.label}: N={c.N}, C={c.C}, mean T={c.T} (real targets, random scores)")
    cases += suite.other_cases(*other, device=args.device)
    rows = suite.run_cases(cases, device=args.device, backends=backends, with_compile=with_compile,
                           repeats=repeats, device_name=name, run=run)  # fmt: skip
    columns = [("loss", "loss", ""), ("case", "case", ""), ("N", "N", "d"), ("C", "C", "d"),
               ("T", "T", "g"), ("mode", "mode", ""), ("backend", "impl", ""), ("ms", "ms", ".3g"),
               ("speedup_vs_torch", "vs torch", ".1f")]  # fmt: skip
    if gpu:
        columns.append(("gbps", "GB/s", ".0f"))
    columns.append(("parity", "parity", ""))
    print_table(rows, columns)
    if not args.no_save:
        stem = name if run == "full" else f"{name}-quick"
        write_csv(RESULTS / f"{name}.csv", rows,
                  key=("device", "run", "backend", "loss", "case", "N", "C", "T", "mode"))  # fmt: skip
        _markdown(rows, RESULTS / f"{stem}.md")
        saved = [f"{name}.csv", f"{stem}.md"]
        if plot(rows, sweep, RESULTS / f"{stem}.png", f"multilabel_margin_loss on {name}"):
            saved.append(f"{stem}.png")
        print("wrote " + ", ".join(f"benchmarks/results/{s}" for s in saved))
    return 0


if __name__ == "__main__":
    sys.exit(main())
