"""Local clusters serving Python functions: no broker to start (seppo.LocalCluster, the default
local mode, seppo map --local). Each runs in a child process, as a program would: a local
cluster forks its manager, which must not copy this test process' client threads."""

import os
import re
import subprocess

from conftest import BUILD, CLI, EXAMPLES, run_python

HELLO = re.compile(r"hello world from \S+, process (\d+) \(input=(\S+), value\*value=(\S+)\)")


def test_default_local_mode_serves_the_seeds_python_example_and_cpp_functions(tmp_path):
    out = run_python("""
        import os, seppo, example_module_py
        for r in seppo.map_parallel(example_module_py.hello_world, range(5)):
            print(r)
        print(seppo.map_parallel("example_module.square", [1, 2, 3]))
        print(list(seppo.imap(example_module_py.square, iter(range(4)))))
    """, tmp_path, SEPPO_MODULE_PATH=os.path.join(BUILD, "examples"))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    matches = [HELLO.fullmatch(line) for line in lines[:5]]
    assert [m.group(2) for m in matches] == [f"{i}.000000" for i in range(5)]
    assert all(int(m.group(1)) != os.getpid() for m in matches)
    assert lines[5:] == ["[1, 4, 9]", "[0, 1, 4, 9]"]
    assert "no broker configured (SEPPO_BROKER is unset): running on a local cluster" in out.stderr


def test_local_cluster_reports_a_missing_python_function_or_a_failed_import(tmp_path):
    (tmp_path / "broken_mod.py").write_text("raise RuntimeError('broken on purpose')\n")
    out = run_python("""
        import seppo, pyfuncs
        with seppo.LocalCluster(2) as cluster:
            assert cluster.map_parallel(pyfuncs.square, range(50)) == [i * i for i in range(50)]
            try:
                cluster.map_parallel("pyfuncs.no_such_function", [1])
            except seppo.UnknownFunctionError as e:
                print("missing:", e)
            try:
                cluster.map_parallel("broken_mod.f", [1])
            except seppo.UnknownFunctionError as e:
                print("broken:", e)
            try:
                cluster.map_parallel(pyfuncs.fail, [3])
            except ValueError as e:
                print("remote:", e.__cause__.message.splitlines()[0])
            pids = cluster.worker_pids()
        try:
            cluster.map_parallel(pyfuncs.square, [1])
        except seppo.ConnectionError as e:
            print("closed:", e)
        print("pids", *pids)
    """, tmp_path)
    assert out.returncode == 0, out.stderr
    assert re.search(r"missing: .*pyfuncs.no_such_function.*has no such function; it has "
                     r".*pyfuncs.square", out.stdout)
    assert re.search(r"broken: broken_mod.f: Python module broken_mod .*cannot be served: .*"
                     r"RuntimeError: broken on purpose", out.stdout, re.S)
    assert "remote: ValueError: bad input 3" in out.stdout
    assert "closed:" in out.stdout
    pids = [int(p) for p in out.stdout.split("pids")[1].split()]
    for pid in pids:  # close() stopped the workers
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_seppo_map_local_serves_a_python_module(tmp_path):
    env = dict(os.environ, SEPPO_MODULE_PATH=os.path.abspath(EXAMPLES))
    env.pop("SEPPO_BROKER", None)
    out = subprocess.run([CLI, "map", "--local=2", "example_module_py.square"],
                         input="1\n2\n3\n", env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "1\n4\n9\n"
