#!/usr/bin/env python3
"""Issue 28's target table, from the figures one run of bench/run-all.sh wrote.

    bench/targets.py [--bench FILE] [--python FILE] [--scale FILE] [--reference FILE] [--quick]

--bench is seppo-bench --results' file (key, seppo, baseline: tab-separated), --python
bench/python_bench.py --json's, --scale bench/scale.sh's (SCALE_RESULTS). Each row is a target
of issue 28: seppo's figure, the baseline measured in the same run, their ratio, the goal and
whether it is met; a row whose figures are in no file says "not run". The "no regression" rows
compare with bench/reference.json (the last recorded figures, dated) within its stated
tolerance, since those rows have no same-run baseline. Prints a Markdown table.
"""

import argparse
import json
import math
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def read_tsv(path):
    out = {}
    if path and os.path.exists(path):
        for line in open(path):
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 3:
                out[parts[0]] = (float(parts[1]), float(parts[2]))
    return out


def rate(x):
    if x >= 1e6:
        return f"{x / 1e6:.2f} M/s"
    if x >= 1e3:
        return f"{x / 1e3:.1f} k/s"
    return f"{x:.0f} /s"


def count(x):
    return f"{x / 1e3:.1f} k" if x >= 1e4 else f"{x:,.0f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", help="seppo-bench --results FILE")
    parser.add_argument("--python", help="bench/python_bench.py --json FILE")
    parser.add_argument("--scale", help="bench/scale.sh's SCALE_RESULTS FILE")
    parser.add_argument("--reference", default=os.path.join(HERE, "reference.json"))
    parser.add_argument("--quick", action="store_true",
                        help="the figures come from a --quick run (smaller sizes)")
    args = parser.parse_args()

    figures = read_tsv(args.bench)
    figures.update(read_tsv(args.scale))
    python = {}
    if args.python and os.path.exists(args.python):
        data = json.load(open(args.python))
        for row in data["rows"]:
            python[row["scenario"], row["items"]] = (row["seppo"], row["pool"])
    reference = json.load(open(args.reference)) if os.path.exists(args.reference) else {}

    rows = []  # (measure, seppo, baseline, ratio, goal, verdict)
    met = missing = 0

    def add(measure, goal, got=None, fmt=None, base_text=None, ratio=None, ok=None):
        nonlocal met, missing
        if got is None:
            rows.append((measure, "–", "–", "–", goal, "not run"))
            missing += 1
            return
        seppo, base = got
        base_shown = base_text if base_text is not None else fmt(base)
        rows.append((measure, fmt(seppo), base_shown, ratio, goal, "met" if ok else "NOT met"))
        met += bool(ok)

    def same_run(measure, key, goal, bound, fmt, higher_is_better, unit="×"):
        got = figures.get(key)
        if got is None or math.isnan(got[1]):
            add(measure, goal)
            return
        r = got[0] / got[1]
        add(measure, goal, got, fmt, ratio=f"{r:.2f}{unit}",
            ok=r >= bound if higher_is_better else r <= bound)

    same_run("(b) tasks/s at chunk size 1, 2 workers, window 1000 (seppo's client and the relay)",
             "b.tasks_per_s", "≥ 1.0× the relay's messages/s", 1.0, rate, True)
    same_run("(m) broker instructions per single-item task, queues deep (callgrind)", "m.broker",
             "≤ 1.0× relay per message", 1.0, count, False)
    same_run("(o) broker instructions per task, one task in flight (callgrind)", "o.broker",
             "≤ 1.5× relay (latency mode)", 1.5, count, False)
    same_run("(c) one-item round trip p50", "c.p50_us", "≤ 1.1× relay", 1.1,
             lambda us: f"{us:.0f} µs", False)
    same_run("(a) adaptive chunks, trivial items, items/s", "a.items_per_s",
             "≥ 0.9 of batched relay", 0.9, rate, True)

    for n in (100000, 1000000):
        got = python.get(("C++ client, C++ LocalCluster of 2, example_module.square", n))
        measure = f"C++ client (LocalCluster of 2) vs `Pool(2).map`, square, {n:,} items"
        if got is None:
            add(measure, "≥ 2.5×")
        else:
            add(measure, "≥ 2.5×", got, rate, ratio=f"{got[0] / got[1]:.2f}×",
                ok=got[0] / got[1] >= 2.5)
    for n, bound in ((100000, 1.0), (1000000, 2.0)):
        got = python.get(("local cluster (2 workers), Python square", n))
        measure = f"Python function, default local cluster, vs `Pool(2).map`, {n:,} items"
        goal = f"≥ {bound:.0f}×"
        if got is None:
            add(measure, goal)
        else:
            add(measure, goal, got, rate, ratio=f"{got[0] / got[1]:.2f}×",
                ok=got[0] / got[1] >= bound)

    got = figures.get("j.200x100ms.efficiency")
    if got is None:
        add("(j200s) 2,000 × 100 ms items on 200 connections, efficiency", "≥ 95%")
    else:
        add("(j200s) 2,000 × 100 ms items on 200 connections, efficiency", "≥ 95%", got,
            lambda e: f"{100 * e:.1f}%", base_text="ideal (items × 100 ms / 200)",
            ratio=f"{100 * got[0]:.1f}%", ok=got[0] >= 0.95)

    sizes = sorted(int(k.rsplit(".", 1)[1]) for k in figures if k.startswith("n.per_task."))
    if sizes:
        top = figures[f"n.per_task.{sizes[-1]}"]
        add(f"(n) broker core per task, {sizes[-1]:,} simulated workers vs 2 (callgrind)",
            "≤ 1.2×", top, count, ratio=f"{top[0] / top[1]:.2f}×", ok=top[0] / top[1] <= 1.2)
    else:
        add("(n) broker core per task, 10,000 simulated workers vs 2 (callgrind)", "≤ 1.2×")

    # No regression: against the last recorded figures (bench/reference.json), within its
    # tolerance: timed rows move with the machine's load, memory with the allocator's timing.
    ref_date = reference.get("date", "?")
    for key, entry in reference.get("figures", {}).items():
        tolerance = reference["tolerance"][entry["kind"]]
        measure = f"{entry['measure']}: no regression"
        got = figures.get(key)
        if entry["kind"].endswith("memory"):
            goal = f"≤ {tolerance:.2f}× reference"
            fmt = lambda mb: f"{mb:.1f} MB"
        else:
            goal = f"≥ {tolerance:.2f}× reference"
            fmt = lambda e: f"{100 * e:.1f}%"
        if got is None:
            add(measure, goal)
            continue
        r = got[0] / entry["value"]
        ok = r <= tolerance if entry["kind"].endswith("memory") else r >= tolerance
        add(measure, goal, (got[0], entry["value"]), fmt,
            base_text=f"{fmt(entry['value'])} ({ref_date})", ratio=f"{r:.2f}×", ok=ok)

    print("### Targets (issue 28)" + (" — quick run: smaller sizes, indicative only"
                                      if args.quick else ""))
    print()
    print("| measure | seppo | baseline (same run) | ratio | goal | |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    run = len(rows) - missing
    print()
    print(f"{met} of {run} targets measured in this run met ({missing} not run). Timed rows "
          "move with the machine's load (compare with the baseline beside them, not with other "
          "runs); callgrind rows are exact. No-regression rows compare with the figures of "
          f"{ref_date} in {os.path.relpath(args.reference)} (tolerance: "
          + ", ".join(f"{k} {v}×" for k, v in reference.get("tolerance", {}).items()) + ").")


if __name__ == "__main__":
    main()
