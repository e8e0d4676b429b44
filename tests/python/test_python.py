"""The seppo Python package against real broker and worker processes (conftest.py)."""

import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap

import pytest

import seppo
import pyfuncs
from conftest import CLI, CPP_MODULE, Cluster, wait_until

HELLO = re.compile(r"hello world from \S+, process (\d+) \(input=(\S+), value\*value=(\S+)\)")


def test_python_client_calls_cpp_functions_in_input_order(client):
    assert client.map_parallel("example_module.square", range(1000)) == [
        i * i for i in range(1000)]
    assert list(client.imap("example_module.square", iter(range(50)))) == [
        i * i for i in range(50)]
    assert sorted(client.imap_unordered("example_module.square", range(50))) == [
        i * i for i in range(50)]


class _Claims:
    """An iterable whose __len__ is not what it yields."""

    def __init__(self, claimed, items):
        self.claimed, self.items = claimed, items

    def __len__(self):
        return self.claimed

    def __iter__(self):
        return iter(self.items)


def test_map_parallel_trusts_what_the_input_yields_not_its_length(client):
    # The results go straight into a list of the input's length: a wrong __len__ must not leave
    # holes or drop results.
    for claimed, n in [(10, 3), (3, 10), (0, 5), (5, 0), (1000, 1000)]:
        out = client.map_parallel("example_module.square", _Claims(claimed, range(n)))
        assert out == [i * i for i in range(n)], (claimed, n)
    # Called again on the same client, with the room its buffers kept from the calls above.
    assert client.map_parallel("example_module.square", range(20000)) == [
        i * i for i in range(20000)]


class _Snooping:
    """A sized iterable whose items, as they are read, walk every list the collector knows."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __iter__(self):
        import gc
        for i in range(self.n):
            for o in gc.get_objects():
                if isinstance(o, list) and len(o) == self.n:
                    for _ in o:  # an empty slot read here would crash the process
                        pass
            yield i


def test_map_parallel_result_list_is_never_seen_half_filled(client):
    assert client.map_parallel("example_module.square", _Snooping(300)) == [
        i * i for i in range(300)]


def test_ranges_lists_and_tuples_read_by_position_give_what_iterating_gives(client):
    # Read without an iterator (a range without making its ints): the same items, the same
    # errors, at the edges of 64 bits too.
    for r in [range(0), range(7, -7, -3), range(-2**63, -2**63 + 3), range(2**63 - 3, 2**63),
              range(2**63 - 1, -2**63, -2**62), [3, -4, 5.5, "x"], (1, (2, 3))]:
        assert client.map_parallel("pyfuncs.echo", r) == list(r), r
    with pytest.raises(TypeError, match="item 1: int 9223372036854775808 does not fit"):
        client.map_parallel("pyfuncs.echo", range(2**63 - 1, 2**63 + 1))


def test_module_level_map_parallel_uses_seppo_broker(cluster):
    lines = seppo.map_parallel("example_module.hello_world", [1, 2, 3, 4, 5])
    assert [HELLO.fullmatch(line).group(2) for line in lines] == [
        "1.000000", "2.000000", "3.000000", "4.000000", "5.000000"]


def test_function_objects_are_sent_by_module_and_qualname(client):
    assert seppo.function_name(pyfuncs.square) == "pyfuncs.square"
    assert client.map_parallel(pyfuncs.square, range(100)) == [i * i for i in range(100)]


def test_values_cross_both_ways_unchanged(client):
    values = [None, True, False, 0, -5, 2**63 - 1, -2**63, 1.5, "text", "ünïcode", b"\x00\xff",
              [1, [2, "x"]], {"a": 1, "b": [None]}, {}, []]
    assert client.map_parallel(pyfuncs.echo, values) == values
    assert client.map_parallel(pyfuncs.echo, [(1, 2)]) == [(1, 2)]  # tuples stay tuples (ext 2)


def test_a_python_function_runs_on_one_thread_whatever_the_load(client):
    # A worker runs a lone C++ module task on its socket loop's thread, the process's main
    # thread; a Python function must not: the interpreter's MainThread would then run a lone
    # item and another thread queued ones (threading, asyncio and signal behave differently).
    lone = [client.map_parallel(pyfuncs.thread_of, [i])[0] for i in range(5)]
    queued = client.map_parallel(pyfuncs.thread_of, range(200))
    assert all(not on_main for _, on_main in lone + queued), lone
    assert {name for name, _ in lone} <= {name for name, _ in queued}, (lone, queued)


def test_cpp_caller_and_seppo_map_reach_python_workers(cluster):
    out = subprocess.run([CLI, "map", "pyfuncs.square"], input="1\n2\n3\n", env=cluster.env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "1\n4\n9\n"


def test_remote_python_error_carries_fields_and_traceback(client, cluster):
    # The function's own ValueError, with the RemoteError (fields, traceback) as its cause.
    with pytest.raises(ValueError) as caught:
        client.map_parallel(pyfuncs.fail, [7])
    assert type(caught.value) is ValueError and str(caught.value) == "bad input 7"
    e = caught.value.__cause__
    assert isinstance(e, seppo.RemoteError)
    assert e.function == "pyfuncs.fail" and e.index == 0
    assert "ValueError: bad input 7" in e.message
    assert "Traceback (most recent call last)" in e.message and "pyfuncs.py" in e.message
    assert isinstance(e.pid, int) and e.host
    assert isinstance(e, seppo.Error)
    assert e.code is None  # the function's own error: seppo did not fail the item


def test_an_item_seppo_failed_carries_its_code_raised_or_returned_and_pickled(tmp_path):
    # A cluster of its own: the item kills its worker process three times.
    c = Cluster(tmp_path)
    try:
        c.worker("--module", CPP_MODULE, wait_for="example_module.crash")
        client = seppo.Client(c.endpoint)
        out = client.map_results("example_module.crash", [1])
        assert isinstance(out[0], seppo.RemoteError) and out[0].code == "worker_lost"
        assert "worker lost" in out[0].message
        assert pickle.loads(pickle.dumps(out[0])).code == "worker_lost"
        with pytest.raises(seppo.RemoteError) as caught:
            client.map_parallel("example_module.crash", [2])
        assert caught.value.code == "worker_lost"
    finally:
        c.stop()


def test_map_results_keeps_going_past_failed_items(client):
    out = client.map_results("example_module.square", [1, "x", 3])
    assert out[0] == 1 and out[2] == 9
    assert isinstance(out[1], seppo.RemoteError) and out[1].index == 1


def test_unknown_function_is_reported(cluster):
    c = seppo.Client(cluster.endpoint, worker_wait=0.5)
    with pytest.raises(seppo.UnknownFunctionError) as caught:
        c.map_parallel("no_such_module.nothing", [1])
    assert caught.value.function == "no_such_module.nothing"


def test_unsendable_values_are_type_errors_naming_type_and_item(client):
    with pytest.raises(seppo.TypeError, match=r"item 2: .*'set'"):
        client.map_parallel("example_module.square", [1, 2, {3}])
    with pytest.raises(TypeError, match=r"item 1: int .* does not fit in 64 bits"):
        client.map_parallel("example_module.square", [1, 2**64])
    with pytest.raises(seppo.RemoteError, match=r"cannot send a value of type 'set'"):
        client.map_parallel(pyfuncs.unsendable, [1])
    # The client is still usable afterwards.
    assert client.map_parallel("example_module.square", [3]) == [9]


def test_submit_returns_a_job_with_results_and_cancel(client):
    job = client.submit("example_module.square", range(100))
    assert job.result(timeout=30) == [i * i for i in range(100)]
    slow = client.submit(pyfuncs.nap, [0.05] * 400)
    slow.cancel()
    with pytest.raises(seppo.CancelledError):
        slow.result(timeout=30)


def jobs_of(cluster, function):
    return [j for j in cluster.status()["jobs"] if j["function"] == function]


def test_ctrl_c_cancels_the_job_at_the_broker(cluster):
    script = textwrap.dedent("""
        import sys, seppo
        try:
            seppo.Client(sys.argv[1]).map_parallel("pyfuncs.nap", [0.05] * 4000)
        except KeyboardInterrupt:
            print("KeyboardInterrupt", flush=True)
            sys.exit(0)
        sys.exit(3)
    """)
    child = subprocess.Popen([sys.executable, "-c", script, cluster.endpoint], env=cluster.env,
                             stdout=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: jobs_of(cluster, "pyfuncs.nap"), what="the job at the broker")
        os.kill(child.pid, signal.SIGINT)
        out, _ = child.communicate(timeout=20)
        assert child.returncode == 0 and out.strip() == "KeyboardInterrupt"
        wait_until(lambda: not jobs_of(cluster, "pyfuncs.nap"), what="the broker to drop it")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_a_killed_python_workers_items_are_run_again(client, tmp_path):
    job = client.submit(pyfuncs.mark_and_nap, [(str(tmp_path), 0.3, i) for i in range(6)])
    victim = wait_until(lambda: os.listdir(tmp_path), what="a worker to start an item")[0]
    os.kill(int(victim), signal.SIGKILL)
    assert job.result(timeout=30) == list(range(6))


def peak_rss_kib_of_imap(cluster, n):
    script = textwrap.dedent("""
        import resource, sys, seppo
        n = int(sys.argv[2])
        count = total = 0
        for y in seppo.Client(sys.argv[1]).imap("example_module.square", (i for i in range(n))):
            count += 1
            total += y
        assert count == n and total == sum(i * i for i in range(n)), (count, total)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """)
    out = subprocess.run([sys.executable, "-c", script, cluster.endpoint, str(n)],
                         env=cluster.env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


def test_memory_stays_bounded_over_ten_million_inputs_from_a_generator(cluster):
    small = peak_rss_kib_of_imap(cluster, 1_000_000)
    large = peak_rss_kib_of_imap(cluster, 10_000_000)
    # The windows bound what is in flight whatever n is: ten times the items may not cost
    # ten times the memory (a list of 10 million results alone would take over 350 MB).
    assert large < 300 * 1024, f"peak RSS {large} KiB over 10 million items"
    assert large < small + 100 * 1024, f"peak RSS {small} KiB for 1M items, {large} KiB for 10M"


def test_the_seeds_example_runs_on_python_workers(tmp_path):
    c = Cluster(tmp_path)
    try:
        worker = c.worker("--python", "example_module_py", jobs=1,
                          wait_for="example_module_py.hello_world")
        lines = seppo.Client(c.endpoint).map_parallel("example_module_py.hello_world", [1, 2.5])
        matches = [HELLO.fullmatch(line) for line in lines]
        assert [m.group(2) for m in matches] == ["1.000000", "2.500000"]
        assert [m.group(3) for m in matches] == ["1.000000", "6.250000"]
        assert all(int(m.group(1)) != worker.pid for m in matches)  # a forked worker process
    finally:
        c.stop()


def test_an_exception_of_the_input_iterable_comes_through_unchanged(client):
    def inputs():
        yield 1
        yield 2
        raise ValueError("the input ran dry")

    with pytest.raises(ValueError, match="the input ran dry"):
        list(client.imap("example_module.square", inputs()))
    with pytest.raises(ValueError, match="the input ran dry"):
        client.map_parallel("example_module.square", inputs())
    assert client.map_parallel("example_module.square", [4]) == [16]


def test_a_python_worker_reports_a_module_it_cannot_import(cluster):
    out = subprocess.run([cluster.worker_program, "-b", cluster.endpoint, "--python",
                          "no_such_python_module"], env=cluster.env, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 1
    assert "cannot import Python module no_such_python_module" in out.stderr
    assert "ModuleNotFoundError" in out.stderr


def test_module_level_calls_from_several_threads_do_not_collide(cluster):
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda k: seppo.map_parallel("example_module.square", range(k, k + 200)),
                             range(8)))
    assert outs == [[i * i for i in range(k, k + 200)] for k in range(8)]
