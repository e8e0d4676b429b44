"""A pair of brokers (docs/protocol.md §15) from Python: seppo.Client given both endpoints,
comma-separated, keeps its job through the primary's SIGKILL (issue 25 §2)."""

import os
import signal
import subprocess
import threading

from conftest import BROKER, CPP_MODULE, WORKER, stop, wait_until


def test_client_given_both_endpoints_survives_the_primary(tmp_path):
    import seppo
    primary, backup = f"ipc://{tmp_path}/primary.ipc", f"ipc://{tmp_path}/backup.ipc"
    ha = [f"ipc://{tmp_path}/ha-primary", f"ipc://{tmp_path}/ha-backup"]
    both = f"{primary},{backup}"
    env = {k: v for k, v in os.environ.items() if k != "SEPPO_BROKER"}
    processes = []

    def start(argv):
        processes.append(subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL))
        return processes[-1]

    try:
        first = start([BROKER, "-b", primary, "--log-level", "error", "--ha-role", "primary",
                       "--ha-bind", ha[0], "--ha-peer", ha[1]])
        start([BROKER, "-b", backup, "--log-level", "error", "--ha-role", "backup",
               "--ha-bind", ha[1], "--ha-peer", ha[0]])
        start([WORKER, "-b", both, "-j", "2", "--log-level", "error", "--module", CPP_MODULE])
        client = seppo.Client(both)
        assert client.endpoint == both
        wait_until(lambda: client.map_parallel("example_module.square", [3]) == [9],
                   what="the pair serving")
        # 40 items of 100 ms on 2 worker processes, the primary killed after 0.5 s.
        killer = threading.Timer(0.5, lambda: os.kill(first.pid, signal.SIGKILL))
        killer.start()
        inputs = [100 + i for i in range(40)]
        results = client.map_parallel("example_module.sleep_ms", inputs, chunksize=1)
        killer.join()
        assert results == inputs
        assert first.wait(5) == -signal.SIGKILL
    finally:
        for process in reversed(processes):
            stop(process)
