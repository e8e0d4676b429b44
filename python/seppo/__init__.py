"""seppo: simple embarrassingly parallel. map_parallel over processes on many computers.

    import seppo
    print(seppo.map_parallel("example_module.hello_world", [1, 2, 3, 4, 5]))

A thin layer over seppo's C++ client (the _seppo extension): the same broker, wire protocol,
windows and heartbeats as C++ programs and `seppo map`. See docs/python.md.
"""

import atexit
import os
import sys
import threading

from seppo._errors import (CancelledError, ConnectionError, Error, RefusedError, RemoteError,
                           TypeError, UnknownFunctionError)
from seppo import _seppo

try:  # a build tree's package: its own seppo-worker serves Python functions in local clusters
    from seppo import _build
    if os.access(_build.WORKER, os.X_OK):
        os.environ.setdefault("SEPPO_WORKER", _build.WORKER)
except ImportError:
    pass

__all__ = ["module_path", "map_parallel", "map_results", "imap", "imap_unordered", "submit", "Client",
           "LocalCluster", "Job", "Error", "RemoteError", "ConnectionError",
           "UnknownFunctionError", "RefusedError", "TypeError", "CancelledError"]


def function_name(function):
    """The name workers announce: a str as given, a function as "module.qualname"."""
    if isinstance(function, str):
        return function
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None)
    if not module or not qualname:
        raise TypeError(f"cannot name {function!r}: give a str 'module.function' or a "
                        "module-level function")
    if module == "__main__" or "<locals>" in qualname:
        raise TypeError(f"{module}.{qualname} cannot be served by workers: put it in a "
                        "module that workers import (seppo-worker --python MODULE)")
    return f"{module}.{qualname}"


class Job:
    """A map running in the background (Client.submit); like concurrent.futures.Future."""

    def __init__(self, job):
        self._job = job

    def result(self, timeout=None):
        """Every result in input order; raises the first failed item's RemoteError."""
        return self._job.result(True, -1.0 if timeout is None else float(timeout))

    def results(self, timeout=None):
        """Every item's value, or its RemoteError instance."""
        return self._job.result(False, -1.0 if timeout is None else float(timeout))

    def done(self):
        return self._job.done()

    def wait(self, timeout):
        """True when the job has ended within `timeout` seconds."""
        return self._job.wait(float(timeout))

    def cancel(self):
        """Stops the job; the broker drops its queued tasks. result() then raises
        CancelledError."""
        self._job.cancel()

    @property
    def completed(self):
        """Items finished so far."""
        return self._job.completed


class Client:
    """A connection to a seppo broker.

    Client() talks to SEPPO_BROKER's broker, or to this process' local cluster when it is
    unset. Client(endpoint, curve_secret_key_file=..., curve_server_key_file=...) uses
    CurveZMQ; without keys only a broker on this machine is accepted unless insecure=True.
    One map or stream at a time per Client; submit() runs on a connection of its own.
    """

    def __init__(self, endpoint=None, curve_secret_key_file=None, curve_server_key_file=None,
                 insecure=False, timeout=None, worker_wait=None, _client=None):
        self._client = _client if _client is not None else _seppo.Client(
            endpoint, curve_secret_key_file, curve_server_key_file, insecure, timeout,
            worker_wait)

    @property
    def endpoint(self):
        return self._client.endpoint

    def map_parallel(self, function, inputs):
        """A list of function(x) for x in inputs, in input order. Raises RemoteError for the
        first item that fails (the job is then cancelled)."""
        return self._client.map(function_name(function), inputs, True)

    def map_results(self, function, inputs):
        """Like map_parallel, but a failed item does not stop the others: each entry is the
        item's value or its RemoteError instance."""
        return self._client.map(function_name(function), inputs, False)

    def imap(self, function, inputs):
        """An iterator of results in input order, reading `inputs` lazily (any iterable, an
        endless generator too) with bounded memory. Closing it early cancels the job."""
        return self._client.stream(function_name(function), inputs, True, False)

    def imap_unordered(self, function, inputs):
        """Like imap, in the order results complete."""
        return self._client.stream(function_name(function), inputs, False, False)

    def imap_results(self, function, inputs, ordered=True):
        """Like imap, but failed items are yielded as RemoteError instances; unordered, each
        entry is (index, value)."""
        return self._client.stream(function_name(function), inputs, ordered, True)

    def submit(self, function, inputs):
        """Starts the map in the background and returns a Job at once. `inputs` is read now."""
        return Job(self._client.submit(function_name(function), inputs))

    def status(self, timeout=5.0):
        """The broker's view of the cluster as a dict (docs/protocol.md, STATUS)."""
        return self._client.status(timeout)


def module_path():
    """Where a local cluster made from Python looks for modules: SEPPO_MODULE_PATH's folders,
    then sys.path's (the script's folder first), so a Python module this program can import is
    served by local Python workers too."""
    folders = [f for f in os.environ.get("SEPPO_MODULE_PATH", "").split(":") if f]
    for entry in sys.path:
        folder = os.path.abspath(entry or os.curdir)
        if ":" not in folder and folder not in folders and os.path.isdir(folder):
            folders.append(folder)
    return ":".join(folders)


class LocalCluster:
    """A private broker and worker processes on this machine, as C++'s seppo::LocalCluster:
    workers serve C++ modules (lib<mod>.so) and Python modules (<mod>.py, through
    seppo-worker --python) found in `module_path` (default: seppo.module_path()), each started
    on first use. Stopped by close(), `with`, or at exit."""

    def __init__(self, workers=0, modules=(), module_path=None):
        if module_path is None:
            module_path = globals()["module_path"]()
        self._cluster = _seppo.LocalCluster(workers, list(modules), module_path)

    def client(self):
        return Client(_client=self._cluster.client())

    def map_parallel(self, function, inputs):
        return self.client().map_parallel(function, inputs)

    def map_results(self, function, inputs):
        return self.client().map_results(function, inputs)

    @property
    def endpoint(self):
        return self._cluster.endpoint

    @property
    def workers(self):
        """Worker processes per module kind (one per core by default)."""
        return self._cluster.workers

    def worker_pids(self):
        return self._cluster.worker_pids()

    def close(self):
        """Stops the workers (each finishes its running task) and the broker; clients of this
        cluster then raise ConnectionError."""
        self._cluster.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_default = threading.local()
_default_lock = threading.Lock()
_default_cluster = None


def _new_default_client():
    # SEPPO_BROKER's broker, or else one local cluster for the process, started on first use
    # and stopped at exit, as C++'s seppo::default_client().
    global _default_cluster
    if os.environ.get("SEPPO_BROKER"):
        return Client()
    with _default_lock:
        if _default_cluster is None:
            _default_cluster = LocalCluster()
            atexit.register(_default_cluster.close)
            print("seppo: no broker configured (SEPPO_BROKER is unset): running on a local "
                  f"cluster of {_default_cluster.workers} worker processes", file=sys.stderr)
    return _default_cluster.client()


def _default_client():
    # One Client per thread, since a Client runs one call at a time.
    client = getattr(_default, "client", None)
    if client is None:
        client = _default.client = _new_default_client()
    return client


def map_parallel(function, inputs):
    """function(x) for x in inputs on SEPPO_BROKER's broker (or a local cluster), in order."""
    return _default_client().map_parallel(function, inputs)


def map_results(function, inputs):
    return _default_client().map_results(function, inputs)


def imap(function, inputs):
    # A stream holds its Client until it ends: a Client of its own leaves the default free.
    return _new_default_client().imap(function, inputs)


def imap_unordered(function, inputs):
    return _new_default_client().imap_unordered(function, inputs)


def submit(function, inputs):
    return _default_client().submit(function, inputs)
