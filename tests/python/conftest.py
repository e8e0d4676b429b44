"""Real broker and worker processes for the Python tests, started here and stopped by PID.

meson test sets SEPPO_BUILD_DIR (programs) and PYTHONPATH (the built package)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.environ.get("SEPPO_BUILD_DIR", os.path.join(HERE, "..", "..", "build"))
BROKER = os.path.join(BUILD, "broker", "seppo-broker")
WORKER = os.path.join(BUILD, "worker", "seppo-worker")
CLI = os.path.join(BUILD, "cli", "seppo")
CPP_MODULE = os.path.join(BUILD, "examples", "libexample_module.so")
TEST_MODULE = os.environ.get("SEPPO_TEST_MODULE",
                             os.path.join(BUILD, "tests", "libtest_module.so"))
EXAMPLES = os.path.join(HERE, "..", "..", "examples", "python")


def run_python(script, cwd=None, timeout=60, **env):
    """Runs `script` in a new python3 without SEPPO_BROKER and SEPPO_MODULE_PATH (unless given
    in `env`), importing the built package, the examples and pyfuncs."""
    environment = {k: v for k, v in os.environ.items() if k not in ("SEPPO_BROKER",
                                                                    "SEPPO_MODULE_PATH")}
    environment.update(env)
    # Absolute: the child may run in `cwd`, whose modules the script may import.
    environment["PYTHONPATH"] = os.pathsep.join(
        [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        + [os.path.abspath(EXAMPLES), HERE])
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=environment,
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)


def wait_until(condition, timeout=20.0, what="condition"):
    """Polls `condition` until it returns a true value, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def stop(process, grace=5.0):
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


class Cluster:
    def __init__(self, tmp):
        self.tmp = tmp
        self.endpoint = f"ipc://{tmp}/broker.ipc"
        self.processes = []
        self.worker_program = WORKER
        self.env = dict(os.environ, SEPPO_BROKER=self.endpoint,
                        SEPPO_MODULE_PATH=f"{HERE}:{EXAMPLES}")
        self.broker = self.start([BROKER, "-b", self.endpoint, "--heartbeat-ms", "200",
                                  "--log-level", "error"])

    def start(self, argv):
        process = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL)
        self.processes.append(process)
        return process

    def status(self):
        out = subprocess.run([CLI, "status", "--json"], env=self.env, capture_output=True,
                             text=True, timeout=20, check=True).stdout
        return json.loads(out)

    def functions(self):
        return set(self.status()["functions"])

    def worker(self, *args, jobs=2, wait_for=None):
        process = self.start([WORKER, "-b", self.endpoint, "-j", str(jobs), "--heartbeat-ms",
                              "200", "--log-level", "error", *args])
        if wait_for:
            wait_until(lambda: wait_for in self.functions(), what=f"{wait_for} announced")
        return process

    def stop(self):
        for process in reversed(self.processes):
            stop(process)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """A broker, C++ workers serving example_module and test_module, and Python workers serving
    pyfuncs."""
    c = Cluster(tmp_path_factory.mktemp("seppo"))
    try:
        c.worker("--module", CPP_MODULE, "--module", TEST_MODULE,
                 wait_for="example_module.square")
        wait_until(lambda: "test_module.same" in c.functions(), what="test_module announced")
        c.worker("--python", "pyfuncs", wait_for="pyfuncs.square")
        os.environ["SEPPO_BROKER"] = c.endpoint
        yield c
    finally:
        c.stop()


@pytest.fixture
def client(cluster):
    import seppo
    return seppo.Client(cluster.endpoint)
