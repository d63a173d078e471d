"""xmargin's CPU backends against PyTorch: fwd+bwd of multilabel_margin_loss at the goal shapes.

    python -m benchmarks.multilabel_hinge_cpu [--rounds R] [--shapes N,C,T ...] [--no-bibtex]
                                              [--backends numba reference] [--fwd]

The goal cases of issue 11 ((8, 16, 2), (256, 1000, 1), (256, 1000, 5), (256, 4000, 200),
(128, 4000, 2000), (4096, 4096, 64) and bibtex's targets), float32 scores and PyTorch's (N, C)
-1-padded targets, three seeds each. torch with one thread and with its default threads, the
numba and reference backends likewise (``XMARGIN_NUM_THREADS``), and xmargin's
``value_and_grad`` on NumPy arrays. Parity with PyTorch float64 on the same data first (a
mismatch is reported and makes the exit status 1); then the same timing as
``python -m benchmarks`` (``torch.utils.benchmark.Timer`` blocks, the implementations
interleaved block by block over several rounds, the seeds rotated call by call; median over
rounds, min–max), and the goals table: torch[1 thread]'s time over numba[1 thread]'s, round by
round. A measurement, not a test; nothing is written.
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.multilabel_hinge_cpu",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--rounds", "--repeats", type=int, dest="rounds",
                        help="interleaved rounds (default: 3, up to 5 where they are cheap)")  # fmt: skip
    parser.add_argument("--shapes", nargs="*", default=None, help="N,C,T triples")
    parser.add_argument("--no-bibtex", action="store_true", help="leave out bibtex's targets")
    parser.add_argument("--backends", nargs="*", default=["numba", "reference"])
    parser.add_argument("--fwd", action="store_true", help="also time the loss alone")
    args = parser.parse_args(argv)

    from . import suite
    from ._common import default_threads, print_table, provenance, shape_triples

    shapes = shape_triples(args.shapes, [w for _, w, _ in suite.GOALS if isinstance(w, tuple)])
    datasets = [] if args.no_bibtex or args.shapes else ["bibtex"]
    prov, threads = provenance(), default_threads()
    timing = dict(rounds=3, max_rounds=5, budget_s=1.5, block_s=0.1)
    if args.rounds:
        timing.update(rounds=args.rounds, max_rounds=args.rounds)
    print(f"multilabel_margin_loss, float32, CPU; xmargin {prov['xmargin_version']} "
          f"(commit {prov['git_commit']}), torch {prov['torch_version']}, numba "
          f"{prov['numba_version']}, numpy {prov['numpy_version']}; {prov['machine']}, "
          f"{prov['timestamp_utc']}; default threads: torch {threads['torch']}, xmargin "
          f"{threads['xmargin']}")  # fmt: skip
    cases = suite.multilabel_cases(shapes, None, datasets, "cpu")
    rows = suite.run_cases(cases, device="cpu", backends=args.backends, with_compile=False,
                           run="multilabel_hinge_cpu", prov=prov,
                           modes=("fwd", "fwd+bwd") if args.fwd else ("fwd+bwd",), **timing)  # fmt: skip
    print_table(rows, [("case", "case", ""), ("N", "N", "d"), ("C", "C", "d"), ("T", "T", "g"),
                       ("mode", "mode", ""), ("backend", "impl", ""), ("threads", "thr", "d"),
                       ("ms", "ms", ".3g"), ("ms_min", "min", ".3g"), ("ms_max", "max", ".3g"),
                       ("speedup_vs_torch", "vs torch", ".2g"), ("speedup_min", "min", ".2g"),
                       ("speedup_max", "max", ".2g"), ("parity", "parity", "")])  # fmt: skip
    backend = "numba" if "numba" in args.backends else args.backends[0]
    lines = suite.goals_lines(suite.goals(rows, backend), backend)
    if len(lines) > 2:
        print("\ngoals (issue 11), fwd+bwd, one thread vs one thread:")
        print("\n".join(lines))
    bad = sorted({f"{r['backend']} at ({r['N']}, {r['C']}, {r['T']}): {r['parity']}"
                  for r in rows if r["parity"] != "ok"})  # fmt: skip
    for b in bad:
        print(f"parity: {b}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
