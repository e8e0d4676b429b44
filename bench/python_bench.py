#!/usr/bin/env python3
"""The Python package's figures next to Python's own tools, measured in one run (issue 13).

    PYTHONPATH=build/python python3 bench/python_bench.py [--items N] [--samples N]

Starts a broker and workers from build/ (or $SEPPO_BUILD_DIR) on a private ipc:// endpoint:
  (1) Python client over 2 C++ workers, example_module.square: items/s vs Pool(2).map
  (2) 2 Python workers (seppo-worker --python), a trivial Python square: items/s vs Pool(2).map
  (3) one-item round trip from Python: p50 vs the C++ client's p50 (build/bench/seppo-roundtrip)
Not a test: timings depend on the machine. See docs/python.md.
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


def rate(n, f):
    start = time.perf_counter()
    out = f()
    elapsed = time.perf_counter() - start
    assert len(out) == n
    return n / elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args()

    import seppo

    tmp = tempfile.mkdtemp(prefix="seppo-pybench-")
    with open(os.path.join(tmp, "seppo_bench_module.py"), "w") as f:
        f.write(BENCH_MODULE)
    sys.path.insert(0, tmp)
    import seppo_bench_module

    endpoint = f"ipc://{tmp}/broker.ipc"
    env = dict(os.environ, SEPPO_BROKER=endpoint, SEPPO_MODULE_PATH=tmp)
    procs = Processes(env)
    rows = []
    try:
        procs.start(program("broker", "seppo-broker"), "-b", endpoint, "--log-level", "warning")
        cpp = procs.start(program("worker", "seppo-worker"), "-b", endpoint, "-j", "2",
                          "--log-level", "warning", "--module",
                          program("examples", "libexample_module.so"))
        wait_for_function(env, "example_module.square")
        client = seppo.Client(endpoint)
        n = args.items
        inputs = range(n)

        with multiprocessing.Pool(2) as pool:
            pool_rate = rate(n, lambda: pool.map(seppo_bench_module.square, inputs))
        client.map_parallel("example_module.square", range(1000))  # warm up
        seppo_rate = rate(n, lambda: client.map_parallel("example_module.square", inputs))
        rows.append(("(1) Python client, 2 C++ workers, example_module.square",
                     f"{seppo_rate:,.0f} items/s", f"Pool(2).map {pool_rate:,.0f} items/s",
                     f"{seppo_rate / pool_rate:.2f}x", "goal >= 2x"))

        # (3) while the C++ workers are up: both clients against the same broker and workers.
        us = []
        for i in range(args.samples + 20):
            start = time.perf_counter()
            client.map_parallel("example_module.square", [i])
            if i >= 20:
                us.append((time.perf_counter() - start) * 1e6)
        py_p50 = statistics.median(us)
        out = subprocess.run([program("bench", "seppo-roundtrip"), endpoint,
                              "example_module.square", str(args.samples)], env=env,
                             capture_output=True, text=True, check=True)
        cpp_p50 = float(out.stdout)
        latency_row = ("(3) one-item round trip from Python", f"p50 {py_p50:.0f} us",
                       f"C++ client p50 {cpp_p50:.0f} us", f"{py_p50 / cpp_p50:.2f}x",
                       "goal <= 1.3x")
        procs.stop(cpp)

        procs.start(program("worker", "seppo-worker"), "-b", endpoint, "-j", "2",
                    "--log-level", "warning", "--python", "seppo_bench_module")
        wait_for_function(env, "seppo_bench_module.square")
        client.map_parallel(seppo_bench_module.square, range(1000))  # warm up
        with multiprocessing.Pool(2) as pool:
            pool_rate = rate(n, lambda: pool.map(seppo_bench_module.square, inputs))
        pyw_rate = rate(n, lambda: client.map_parallel(seppo_bench_module.square, inputs))
        rows.append(("(2) 2 Python workers, Python square", f"{pyw_rate:,.0f} items/s",
                     f"Pool(2).map {pool_rate:,.0f} items/s", f"{pyw_rate / pool_rate:.2f}x",
                     "goal >= 1x"))
        rows.append(latency_row)
    finally:
        procs.stop_all()

    print(f"{'scenario':58} {'seppo':>22} {'Python baseline':>30} {'ratio':>7}  goal")
    for name, ours, theirs, ratio, goal in rows:
        print(f"{name:58} {ours:>22} {theirs:>30} {ratio:>7}  {goal}")


if __name__ == "__main__":
    main()
