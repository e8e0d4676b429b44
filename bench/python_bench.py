#!/usr/bin/env python3
"""The Python package's figures next to Python's own tools, measured in one run (issue 13).

    PYTHONPATH=build/python python3 bench/python_bench.py [--items 100000,1000000] [--repeat 3]

Each figure is the best of --repeat runs, at each item count, all in one run (issue 22), next
to multiprocessing.Pool(2).map of the same Python square measured in that run:
  - a local cluster of 2 workers (what seppo.map_parallel uses with no broker): a Python square
    and C++ example_module.square;
  - a broker and 2 workers from build/ (or $SEPPO_BUILD_DIR) on a private ipc:// endpoint:
    C++ example_module.square, then a Python square (seppo-worker --python);
  - the one-item round trip from Python: p50 vs the C++ client's (build/bench/seppo-roundtrip);
  - the C++ client (build/bench/seppo-maprate: map_parallel over a std::vector of int64) mapping
    example_module.square on a C++ LocalCluster of 2 and through the broker and its 2 C++
    workers, against the same Pool(2).map (issue 28: C++ client vs Pool(2).map).
--json FILE also writes every figure there, for bench/targets.py.
Not a test: timings depend on the machine. See bench/README.md and docs/python.md.
"""

import argparse
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.environ.get("SEPPO_BUILD_DIR", os.path.join(HERE, "..", "build"))
BENCH_MODULE = "def square(x):\n    return x * x\n"


def program(*parts):
    return os.path.join(BUILD, *parts)


class Processes:
    def __init__(self, env):
        self.env = env
        self.running = []

    def start(self, *argv):
        p = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL)
        self.running.append(p)
        return p

    def stop(self, p):
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
        self.running.remove(p)

    def stop_all(self):
        for p in list(reversed(self.running)):
            self.stop(p)


def wait_for_function(env, function, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run([program("cli", "seppo"), "status", "--json"], env=env,
                             capture_output=True, text=True)
        if out.returncode == 0 and function in json.loads(out.stdout)["functions"]:
            return
        time.sleep(0.05)
    sys.exit(f"python_bench: {function} was not announced within {timeout} s")


def best_rate(n, f, repeat):
    """Items per second of the fastest of `repeat` runs of f() (which returns n results)."""
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        out = f()
        elapsed = time.perf_counter() - start
        assert len(out) == n
        best = max(best, n / elapsed)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", default="100000,1000000",
                        help="comma-separated item counts (default 100000,1000000)")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--json", help="also write the figures to this file (bench/targets.py)")
    args = parser.parse_args()
    sizes = [int(x) for x in args.items.split(",")]

    import seppo

    tmp = tempfile.mkdtemp(prefix="seppo-pybench-")
    with open(os.path.join(tmp, "seppo_bench_module.py"), "w") as f:
        f.write(BENCH_MODULE)
    sys.path.insert(0, tmp)
    import seppo_bench_module
    square = seppo_bench_module.square

    endpoint = f"ipc://{tmp}/broker.ipc"
    env = dict(os.environ, SEPPO_BROKER=endpoint, SEPPO_MODULE_PATH=tmp)
    procs = Processes(env)
    rows = []
    pool_rates = {}
    seppo_rates = {}  # (scenario, n) -> items/s
    maprate = program("bench", "seppo-maprate")
    has_maprate = os.access(maprate, os.X_OK)

    def measure_cpp(scenario, where, run_env):
        """The C++ client's best items/s (seppo-maprate), at each size."""
        for n in sizes:
            out = subprocess.run([maprate, where, "example_module.square", str(n),
                                  str(args.repeat)], env=run_env, capture_output=True,
                                 text=True, timeout=600)
            if out.returncode != 0:
                sys.exit(f"python_bench: seppo-maprate failed: {out.stderr.strip()}")
            seppo_rates[scenario, n] = float(out.stdout)

    def measure(scenario, function, map_function):
        map_function(function, range(1000))  # warm up: workers started, module imported
        for n in sizes:
            seppo_rates[scenario, n] = best_rate(n, lambda: map_function(function, range(n)),
                                                 args.repeat)

    try:
        # Pool(2).map of the Python square, the baseline every row is compared with.
        with multiprocessing.Pool(2) as pool:
            pool.map(square, range(1000))
            for n in sizes:
                pool_rates[n] = best_rate(n, lambda: pool.map(square, range(n)), args.repeat)

        # The default local cluster (no broker): what `seppo.map_parallel(f, xs)` runs on.
        module_path = f"{tmp}:{program('examples')}"
        with seppo.LocalCluster(2, module_path=module_path) as local:
            c = local.client()
            measure("local cluster (2 workers), Python square", square, c.map_parallel)
            measure("local cluster (2 workers), C++ example_module.square",
                    "example_module.square", c.map_parallel)

        # The C++ client on a C++ LocalCluster of 2 (no broker), as a C++ program maps.
        if has_maprate:
            measure_cpp("C++ client, C++ LocalCluster of 2, example_module.square", "local",
                        dict(env, SEPPO_MODULE_PATH=program("examples")))

        procs.start(program("broker", "seppo-broker"), "-b", endpoint, "--log-level", "warning")
        cpp = procs.start(program("worker", "seppo-worker"), "-b", endpoint, "-j", "2",
                          "--log-level", "warning", "--module",
                          program("examples", "libexample_module.so"))
        wait_for_function(env, "example_module.square")
        client = seppo.Client(endpoint)
        measure("broker, 2 C++ workers, example_module.square", "example_module.square",
                client.map_parallel)
        if has_maprate:
            measure_cpp("C++ client, broker, 2 C++ workers, example_module.square", endpoint, env)

        # One-item round trips while the C++ workers are up: both clients, same broker.
        us = []
        for i in range(args.samples + 20):
            start = time.perf_counter()
            client.map_parallel("example_module.square", [i])
            if i >= 20:
                us.append((time.perf_counter() - start) * 1e6)
        py_p50 = statistics.median(us)
        cpp_p50 = None
        if os.access(program("bench", "seppo-roundtrip"), os.X_OK):
            out = subprocess.run([program("bench", "seppo-roundtrip"), endpoint,
                                  "example_module.square", str(args.samples)], env=env,
                                 capture_output=True, text=True, check=True)
            cpp_p50 = float(out.stdout)
        procs.stop(cpp)

        procs.start(program("worker", "seppo-worker"), "-b", endpoint, "-j", "2",
                    "--log-level", "warning", "--python", "seppo_bench_module")
        wait_for_function(env, "seppo_bench_module.square")
        measure("broker, 2 Python workers, Python square", square, client.map_parallel)
    finally:
        procs.stop_all()

    print(f"best of {args.repeat}; baseline multiprocessing.Pool(2).map of the Python square: " +
          ", ".join(f"{pool_rates[n]:,.0f} items/s at {n:,} items" for n in sizes))
    print(f"{'scenario':58} {'items':>10} {'seppo items/s':>14} {'Pool(2) items/s':>16} "
          f"{'ratio':>7}")
    for (scenario, n), ours in seppo_rates.items():
        print(f"{scenario:58} {n:>10,} {ours:>14,.0f} {pool_rates[n]:>16,.0f} "
              f"{ours / pool_rates[n]:>6.2f}x")
    if cpp_p50 is None:
        print(f"one-item round trip from Python: p50 {py_p50:.0f} us (no bench/seppo-roundtrip "
              "built to compare with)")
    else:
        print(f"one-item round trip from Python: p50 {py_p50:.0f} us; C++ client p50 "
              f"{cpp_p50:.0f} us ({py_p50 / cpp_p50:.2f}x, goal <= 1.3x)")
    print("goals (issue 22): >= 1x Pool at 100,000 items, >= 2x at 1,000,000; issue 28: the "
          "C++ client >= 2.5x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"repeat": args.repeat,
                       "pool": {str(n): r for n, r in pool_rates.items()},
                       "rows": [{"scenario": scenario, "items": n, "seppo": ours,
                                 "pool": pool_rates[n]}
                                for (scenario, n), ours in seppo_rates.items()],
                       "roundtrip_p50_us": {"python": py_p50, "cpp": cpp_p50}}, f, indent=1)


if __name__ == "__main__":
    main()
