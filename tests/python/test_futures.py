"""Issue 22: what multiprocessing.Pool and concurrent.futures users expect, compared with the
standard library itself where the two can run the same calls (a differential test)."""

import concurrent.futures
import multiprocessing
import os
import subprocess
import sys
import textwrap
import time

import pytest

import seppo
import pyfuncs
from conftest import run_python


def outcomes(iterator):
    """Each item of an iterator as ("ok", value) or ("err", exception type), going on after
    errors as Pool's imap allows; bounded by a count."""
    out = []
    for _ in range(1000):
        try:
            out.append(("ok", next(iterator)))
        except StopIteration:
            return out
        except Exception as e:  # noqa: BLE001 - the type is the point
            out.append(("err", type(e)))
    raise AssertionError("iterator did not end")


@pytest.fixture(scope="module")
def pool():
    with multiprocessing.get_context("fork").Pool(2) as p:
        yield p


def test_imap_after_a_failed_item_raises_there_and_yields_the_rest_like_pool(client, pool):
    inputs = list(range(8))
    expected = outcomes(pool.imap(pyfuncs.fail_on_3, inputs))
    assert expected[3] == ("err", ValueError) and expected[5] == ("err", ZeroDivisionError)
    assert outcomes(iter(client.imap(pyfuncs.fail_on_3, inputs))) == expected
    assert outcomes(iter(seppo.imap(pyfuncs.fail_on_3, inputs))) == expected


def test_exceptions_keep_their_type_with_the_remote_traceback_as_cause(client, pool):
    with pytest.raises(ValueError) as pool_caught:
        pool.map(pyfuncs.fail_on_3, [1, 3])
    with pytest.raises(ValueError) as caught:
        client.map_parallel(pyfuncs.fail_on_3, [1, 3])
    assert type(caught.value) is type(pool_caught.value)
    assert str(caught.value) == str(pool_caught.value) == "three is bad: 3"
    cause = caught.value.__cause__
    assert isinstance(cause, seppo.RemoteError) and cause.index == 1
    assert "Traceback (most recent call last)" in cause.message
    with pytest.raises(ZeroDivisionError):
        client.map_parallel(pyfuncs.fail_on_3, [5])
    # A message of several lines keeps its type and its whole text (its last line once made
    # the caller raise KeyError).
    with pytest.raises(ValueError) as pool_caught:
        pool.map(pyfuncs.fail_on_two_lines, ["k"])
    with pytest.raises(ValueError) as caught:
        client.map_parallel(pyfuncs.fail_on_two_lines, ["k"])
    assert type(caught.value) is type(pool_caught.value)
    assert str(caught.value) == str(pool_caught.value) == "bad input k\nKeyError: k"
    # A C++ function's error has no Python type: RemoteError as before.
    with pytest.raises(seppo.RemoteError):
        client.map_parallel("example_module.fail", [1])


def test_an_exception_of_a_module_the_caller_never_imported_stays_remote_error(client):
    # The module name comes from a worker's message: importing it would run its code here.
    assert "pyfuncs_errors" not in sys.modules
    with pytest.raises(seppo.RemoteError) as caught:
        client.map_parallel(pyfuncs.fail_with_unimported_type, [1])
    assert "pyfuncs_errors.Boom: boom 1" in caught.value.message
    assert "pyfuncs_errors" not in sys.modules


def test_map_with_several_iterables_and_starmap_match_pool(client, pool):
    xs, ys = list(range(20)), list(range(100, 117))  # zip stops at the shorter
    assert client.map_parallel(pyfuncs.add, xs, ys) == list(map(pyfuncs.add, xs, ys))
    pairs = [(i, i % 4) for i in range(30)]
    assert client.starmap(pyfuncs.power, pairs) == pool.starmap(pyfuncs.power, pairs)
    assert seppo.starmap(pyfuncs.add, [("a", "b"), ("c", "d")]) == ["ab", "cd"]
    assert list(client.istarmap(pyfuncs.add, pairs)) == [a + b for a, b in pairs]


def test_job_is_a_future_for_as_completed_and_wait(client):
    jobs = [client.submit(pyfuncs.square, range(i, i + 5)) for i in range(4)]
    assert all(isinstance(j, concurrent.futures.Future) for j in jobs)
    done = set(concurrent.futures.as_completed(jobs, timeout=30))
    assert done == set(jobs)
    finished, pending = concurrent.futures.wait(jobs, timeout=30)
    assert finished == set(jobs) and not pending
    assert jobs[2].result() == [i * i for i in range(2, 7)]
    failing = client.submit(pyfuncs.fail_on_3, [1, 3, 5])
    assert isinstance(failing.exception(timeout=30), ValueError)
    called = []
    failing.add_done_callback(called.append)
    assert called == [failing]


def test_a_cancelled_job_is_cancelled_for_futures_too(client):
    job = client.submit(pyfuncs.nap, [2.0] * 4)
    assert job.cancel()
    assert job.cancelled() and job.done()
    with pytest.raises(concurrent.futures.CancelledError):
        job.result(timeout=10)
    finished, _ = concurrent.futures.wait([job], timeout=10)
    assert finished == {job}


def test_executor_gives_what_process_pool_executor_gives(cluster):
    calls = [(pyfuncs.square, (i,), {}) for i in range(50)] + [
        (pyfuncs.power, (i,), {"exponent": 3}) for i in range(20)] + [
        (pyfuncs.add, ("x", "y"), {}), (pyfuncs.fail_on_3, (3,), {}),
        (pyfuncs.fail_on_3, (5,), {}), ("example_module.square", (7,), {})]

    def run(executor):
        futures = [executor.submit(fn, *args, **kwargs) for fn, args, kwargs in calls]
        assert set(concurrent.futures.as_completed(futures, timeout=60)) == set(futures)
        out = []
        for f in futures:
            e = f.exception()
            out.append(("err", type(e), str(e)) if e else ("ok", f.result()))
        return out, list(executor.map(pyfuncs.add, range(10), range(10, 30))), list(
            executor.map(pyfuncs.square, range(10), chunksize=3))

    with concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(
            "fork")) as ppe:
        expected = run(_CppAware(ppe))
    with seppo.Executor(endpoint=cluster.endpoint) as ex:
        got = run(ex)
    assert got == expected


class _CppAware:
    """A ProcessPoolExecutor that runs "example_module.square" as Python squares, so the
    same call list can go through both."""

    def __init__(self, ppe):
        self._ppe = ppe

    def submit(self, fn, *args, **kwargs):
        if fn == "example_module.square":
            fn = pyfuncs.square
        return self._ppe.submit(fn, *args, **kwargs)

    def map(self, *args, **kwargs):
        return self._ppe.map(*args, **kwargs)


def test_executor_interface(cluster):
    with pytest.raises(ValueError):
        seppo.Executor(0)
    with pytest.raises(ValueError):
        seppo.Executor(-1)
    ex = seppo.Executor(endpoint=cluster.endpoint)
    assert isinstance(ex, concurrent.futures.Executor)
    with pytest.raises(concurrent.futures.TimeoutError):
        list(ex.map(pyfuncs.nap, [3.0], timeout=0.2))
    slow = [ex.submit(pyfuncs.nap, 0.2) for _ in range(2)]
    ex.shutdown(wait=True)
    assert all(f.done() and f.result() == 0.2 for f in slow)
    with pytest.raises(RuntimeError):
        ex.submit(pyfuncs.square, 1)


def test_a_thousand_submits_are_batched_into_few_jobs(cluster):
    with seppo.Executor(endpoint=cluster.endpoint) as ex:
        futures = [ex.submit(pyfuncs.square, i) for i in range(1000)]
        assert [f.result(timeout=60) for f in futures] == [i * i for i in range(1000)]
        # One seppo job per round of the dispatcher: far fewer than the calls.
        assert ex.jobs_started < 100


def test_submit_as_the_first_call_loads_the_module_on_the_default_local_cluster():
    out = run_python("""
        import seppo, pyfuncs
        print(seppo.submit(pyfuncs.square, [1, 2, 3]).result(timeout=30))
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "[1, 4, 9]\n"


def test_client_without_a_broker_is_the_default_local_cluster_searching_sys_path():
    out = run_python("""
        import seppo, pyfuncs
        print(seppo.Client().map_parallel(pyfuncs.square, [4]))
        print(seppo.map_parallel(pyfuncs.square, [5]))
        print(seppo.Client().endpoint == seppo._default_cluster.endpoint)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "[16]\n[25]\nTrue\n"
    assert out.stderr.count("running on a local cluster") == 1


FORK_CHILD_EXITS = """
    import os, sys, time, seppo, pyfuncs
    assert seppo.map_parallel(pyfuncs.square, [2]) == [4]
    job = seppo.submit(pyfuncs.square, [3])
    assert job.result(timeout=30) == [9]
    pid = os.fork()
    if pid == 0:
        sys.exit(0)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            print("child exited", os.waitstatus_to_exitcode(status))
            break
        time.sleep(0.01)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        print("child hung")
    print(seppo.map_parallel(pyfuncs.square, [6]))
"""


def test_a_child_forked_after_use_exits_within_a_second_local_cluster():
    out = run_python(FORK_CHILD_EXITS)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "child exited 0\n[36]\n"


def test_a_child_forked_after_use_exits_within_a_second_broker(cluster):
    out = run_python(FORK_CHILD_EXITS, SEPPO_BROKER=cluster.endpoint)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "child exited 0\n[36]\n"


MULTIPROCESSING_CHILD = """
    import multiprocessing, seppo, pyfuncs

    def child(x):
        return seppo.map_parallel(pyfuncs.square, [x, x + 1])

    if __name__ == "__main__":
        assert seppo.map_parallel(pyfuncs.square, [2]) == [4]
        with multiprocessing.get_context("fork").Pool(2) as pool:
            print(pool.map(child, [1, 10]))
        print(seppo.map_parallel(pyfuncs.square, [3]))
"""


def test_a_multiprocessing_fork_child_can_use_seppo_broker(cluster):
    out = run_python(MULTIPROCESSING_CHILD, SEPPO_BROKER=cluster.endpoint)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "[[1, 4], [100, 121]]\n[9]\n"


def test_a_multiprocessing_fork_child_can_use_seppo_local_cluster():
    out = run_python(MULTIPROCESSING_CHILD, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "[[1, 4], [100, 121]]\n[9]\n"


def test_map_takes_chunksize_and_a_per_item_timeout(client):
    assert client.map_parallel(pyfuncs.square, range(100), chunksize=7) == [
        i * i for i in range(100)]
    assert seppo.starmap(pyfuncs.add, [(1, 2)] * 10, chunksize=3) == [3] * 10
    with pytest.raises(seppo.RemoteError) as caught:
        client.map_parallel(pyfuncs.nap, [0.01, 5.0], timeout=0.5)
    assert caught.value.code == "timeout" and caught.value.index == 1
    with pytest.raises(ValueError):
        client.map_parallel(pyfuncs.square, [1], chunksize=0)


def test_every_call_takes_chunksize_and_a_per_item_timeout_as_pool(client):
    # A chunk runs whole on one worker process: with chunksize=5, each run of 5 shares a pid.
    for pids in (client.map_results(pyfuncs.pid, range(20), chunksize=5),
                 list(client.imap(pyfuncs.pid, range(20), chunksize=5)),
                 client.submit(pyfuncs.pid, range(20), chunksize=5).result(timeout=60)):
        assert all(len(set(pids[i:i + 5])) == 1 for i in range(0, 20, 5)), pids
    assert sorted(client.imap_unordered(pyfuncs.square, range(30), chunksize=4)) == sorted(
        i * i for i in range(30))
    assert list(client.istarmap(pyfuncs.add, [(1, 2)] * 6, chunksize=2)) == [3] * 6
    naps = [0.01, 5.0, 0.01]
    timed_out = client.map_results(pyfuncs.nap, naps, timeout=0.5)
    assert timed_out[0] == 0.01 and timed_out[2] == 0.01 and timed_out[1].code == "timeout"
    assert [type(v) for v in client.imap_results(pyfuncs.nap, naps, timeout=0.5)] == [
        float, seppo.RemoteError, float]
    with pytest.raises(seppo.RemoteError) as caught:
        list(client.imap(pyfuncs.nap, naps, timeout=0.5))
    assert caught.value.code == "timeout"
    with pytest.raises(seppo.RemoteError) as caught:
        list(seppo.imap_unordered(pyfuncs.nap, naps, timeout=0.5))
    assert caught.value.code == "timeout"
    with pytest.raises(seppo.RemoteError) as caught:
        client.submit(pyfuncs.nap, naps, timeout=0.5).result(timeout=60)
    assert caught.value.code == "timeout"
    for call in (client.imap, client.submit, client.map_results, seppo.imap):
        with pytest.raises(ValueError):
            call(pyfuncs.square, [1], chunksize=0)
        with pytest.raises(ValueError):
            call(pyfuncs.square, [1], timeout=0)


def test_a_function_of_the_scripts_main_runs_on_the_local_cluster(tmp_path):
    script = tmp_path / "my_script.py"
    script.write_text(textwrap.dedent("""
        import seppo

        def cube(x):
            return x ** 3

        if __name__ == "__main__":
            print(seppo.map_parallel(cube, [1, 2, 3]))
            for bad in (lambda x: x, ):
                try:
                    seppo.map_parallel(bad, [1])
                except TypeError as e:
                    print("lambda:", "lambda" in str(e))
    """))
    env = {k: v for k, v in os.environ.items() if k not in ("SEPPO_BROKER", "SEPPO_MODULE_PATH")}
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                         timeout=90, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "[1, 8, 27]\nlambda: True\n"


def test_a_function_typed_interactively_gets_a_clear_error():
    out = run_python("""
        import seppo
        def f(x):
            return x
        try:
            seppo.function_name(f)
        except TypeError as e:
            print(e)
    """)
    assert out.returncode == 0, out.stderr
    assert "interactive session" in out.stdout


def test_version_and_typed_marker():
    assert seppo.__version__.count(".") == 2
    assert os.path.exists(os.path.join(os.path.dirname(seppo.__file__), "py.typed"))


def test_builtins_and_standard_library_functions_run_on_the_default_local_cluster():
    out = run_python("""
        import math, time, seppo
        print(seppo.map_parallel(pow, [2, 3], [10, 2]))
        print(seppo.map_parallel(divmod, [7, 9], [2, 4]))
        print(seppo.map_parallel(str, [1, 2.5]), seppo.map_parallel(math.sqrt, [4.0]))
        print(seppo.map_parallel(time.sleep, [0.01]))
        try:
            seppo.map_parallel(divmod, [1], [0])
        except ZeroDivisionError as e:
            print("ZeroDivisionError", type(e.__cause__).__name__)
        try:
            seppo.map_parallel(exec, ["print(1)"])
        except seppo.UnknownFunctionError as e:
            print("refused", e.function)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "[1024, 9]", "[(3, 1), (2, 1)]", "['1', '2.5'] [2.0]", "[None]",
        "ZeroDivisionError RemoteError", "refused builtins.exec"]


def test_a_broker_serves_the_builtins_a_worker_exposes_and_never_exec(cluster):
    cluster.worker("--python", "builtins", "--python", "time", wait_for="builtins.pow")
    client = seppo.Client(cluster.endpoint)
    assert client.map_parallel(pow, [2, 3], [3, 3]) == [8, 27]
    assert client.map_parallel(divmod, [7], [2]) == [(3, 1)]
    assert client.map_parallel(str, [3]) == ["3"]
    assert client.map_parallel(time.sleep, [0.0]) == [None]
    functions = cluster.functions()
    assert "time.sleep" in functions
    assert not {"builtins.exec", "builtins.eval", "builtins.open", "builtins.compile",
                "builtins.getattr", "builtins.__import__"} & functions


def test_builtins_that_a_tiny_argument_would_make_allocate_without_bound_are_refused(cluster):
    # bytes(10**12), pow(10, 10**9), format(1, '1000000000') would each build gigabytes (or run
    # for minutes) on every worker from a few bytes: refused with the limit named. The item
    # timeout keeps a worker without the bounds from hanging the test.
    if "builtins.pow" not in cluster.functions():
        cluster.worker("--python", "builtins", wait_for="builtins.pow")
    client = seppo.Client(cluster.endpoint)
    for function, args, limit in [(bytes, [[10**12]], "16777216 bytes"),
                                  (pow, [[10], [10**9]], "64 bits"),
                                  (format, [[1], ["1000000000"]], "16777216 bytes"),
                                  (format, [[1.5], [".99999999999f"]], "16777216 bytes"),
                                  # CPython reads any Unicode digits: \u0662 is 2, a width
                                  # of 20 million written in Arabic-Indic digits.
                                  (format, [[1], ["\u0662" + "\u0660" * 7]], "not ASCII"),
                                  (format, [["x"], ["\u2605^\u0662" + "\u0660" * 7]],
                                   "not ASCII")]:
        with pytest.raises(ValueError, match=limit):
            client.map_parallel(function, *args, timeout=20)
    # Within the bounds, each is the builtin itself.
    assert client.map_parallel(bytes, [3, [65, 66]]) == [b"\0\0\0", b"AB"]
    assert client.map_parallel(pow, [3, -2, 4.0, 7], [39, 63, 0.5, -1]) == [
        3**39, -2**63, 2.0, 7**-1]
    assert client.starmap(pow, [(2, 10**9, 7)]) == [pow(2, 10**9, 7)]
    assert client.map_parallel(format, [1.5, 42, "x"], ["10.3f", ">5", "\u2605^5"]) == [
        "     1.500", "   42", "\u2605\u2605x\u2605\u2605"]
    # round(int, -n) builds 10**n: answered as 0 without it (every 64-bit int rounds to 0).
    assert client.map_parallel(round, [1234, 2**63 - 1, 7], [-2, -10**9, -19],
                               timeout=20) == [1200, 0, 0]
