"""seppo: simple embarrassingly parallel. map_parallel over processes on many computers.

    import seppo
    print(seppo.map_parallel("example_module.hello_world", [1, 2, 3, 4, 5]))

A thin layer over seppo's C++ client (the _seppo extension): the same broker, wire protocol,
windows and heartbeats as C++ programs and `seppo map`. See docs/python.md.
"""

import atexit
import builtins
import concurrent.futures
import os
import sys
import threading

from seppo._errors import (CancelledError, ConnectionError, Error, RefusedError, RemoteError,
                           TypeError, UnknownFunctionError)
from seppo import _seppo
from seppo._executor import call_value

def _installed_worker():
    # The seppo-worker installed with this package: a build tree's own (PYTHONPATH=build/python),
    # else the one pip put in this environment's scripts folder (venv/bin, ~/.local/bin), found
    # from the package's own record (or, in a venv, its bin/); else None, and
    # libseppo looks in its install prefix and PATH.
    try:
        from seppo import _build
        return _build.WORKER
    except ImportError:
        pass
    candidates = []
    try:
        import importlib.metadata
        here = os.path.dirname(os.path.abspath(__file__))
        dist = importlib.metadata.distribution("seppo")
        # Only this package's own record: another seppo on sys.path is not this one.
        if os.path.abspath(str(dist.locate_file("seppo"))) == here:
            candidates += [str(dist.locate_file(f)) for f in dist.files or ()
                           if f.name == "seppo-worker"]
    except Exception:  # no record (a Debian package, a copied folder): not pip's install
        pass
    if sys.prefix != sys.base_prefix:  # a virtual environment: its own bin/
        import sysconfig
        candidates.append(os.path.join(sysconfig.get_path("scripts"), "seppo-worker"))
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return os.path.abspath(candidate)
    return None


if not os.environ.get("SEPPO_WORKER"):  # the user's choice stays
    _worker = _installed_worker()
    if _worker and os.access(_worker, os.X_OK):
        os.environ["SEPPO_WORKER"] = _worker

__version__ = _seppo.__version__

__all__ = ["module_path", "map_parallel", "map_results", "imap", "imap_unordered", "starmap",
           "submit", "Client", "Executor",
           "LocalCluster", "Job", "Error", "RemoteError", "ConnectionError",
           "UnknownFunctionError", "RefusedError", "TypeError", "CancelledError"]


def function_name(function):
    """The name workers announce: a str as given, a function as "module.qualname".

    A function of a script's __main__ is named after the script's file ("myscript.f" for
    myscript.py), which workers import by that name, as multiprocessing's spawn does: code
    under `if __name__ == "__main__":` does not run there. Lambdas, nested functions and
    functions typed into an interactive session have no file to import: TypeError."""
    if isinstance(function, str):
        return function
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None)
    if not module or not qualname:
        raise TypeError(f"cannot name {function!r}: give a str 'module.function' or a "
                        "module-level function")
    if "<lambda>" in qualname or "<locals>" in qualname:
        raise TypeError(f"{module}.{qualname} cannot be served by workers: a lambda or a "
                        "function defined inside another has no name to import; define it "
                        "at the top level of a module (or of your script)")
    if module == "__main__":
        return f"{_main_module_name(qualname)}.{qualname}"
    return f"{module}.{qualname}"


def _main_module_name(qualname):
    # The name under which workers can import this process' __main__: its file's name.
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    stem = os.path.splitext(os.path.basename(path))[0] if path else ""
    if not path or not path.endswith(".py") or not stem.isidentifier():
        raise TypeError(f"__main__.{qualname} cannot be served by workers: it was defined "
                        "in an interactive session (or a script that is not a .py file), "
                        "which workers cannot import; put it in a module file and import it")
    other = sys.modules.get(stem)
    if other is not None and os.path.abspath(getattr(other, "__file__", "") or "") != \
            os.path.abspath(path):
        raise TypeError(f"__main__.{qualname}: the script {path} would be imported as "
                        f"'{stem}', which is another module here; rename the script")
    return stem


def _native_error(error):
    """The exception a Python function raised, rebuilt as its own type when the caller can have
    that type (a builtin, or a class of a module this process has imported already: a name read
    from a remote message never makes it import anything) and build it from its message, with the
    RemoteError (the remote traceback and where it ran) as __cause__, as multiprocessing.Pool
    does. Anything else (a C++ function's error, a timeout, a lost worker) stays RemoteError."""
    if not isinstance(error, RemoteError) or error.code is not None:
        return error
    # The worker sends the exception whole ("Type: message", on as many lines as the message
    # has), then the traceback.
    lines = (error.message or "").split("\n")
    try:
        at = lines.index("Traceback (most recent call last):")
    except ValueError:
        at = None
    # A builtin (divmod) or a C function of a Python module raises with no Python frame, so
    # no traceback: "Type: text" alone, from a function of a module imported here.
    untraced = at is None and (error.function or "").rpartition(".")[0] in sys.modules
    if not at and not untraced:
        return error
    name, _, text = "\n".join(lines[:at]).partition(": ")
    module, _, qualname = name.rpartition(".")
    try:
        if module:
            cls = sys.modules[module]  # KeyError: not imported here, stays RemoteError
            for part in qualname.split("."):
                cls = getattr(cls, part)
        else:
            cls = getattr(builtins, name)
        if not (isinstance(cls, type) and issubclass(cls, Exception)):
            return error
        native = cls(text) if text else cls()
    except Exception:  # not imported here, or not built from its message
        return error
    native.__cause__ = error
    return native


def _raise_native(error):
    native = _native_error(error)
    if native is error:
        raise error
    raise native from error


class Job(concurrent.futures.Future):
    """A map running in the background (Client.submit): a concurrent.futures.Future whose
    result is the list of results in input order, so as_completed, wait, add_done_callback,
    exception() and cancel() work. Its exception is the lowest-index failed item's."""

    def __init__(self, job, function=""):
        super().__init__()
        self._job = job
        self._function = function
        self.set_running_or_notify_cancel()
        threading.Thread(target=self._watch, name="seppo-job", daemon=True).start()

    def _watch(self):
        try:
            values = self._job.result(False, -1.0)
        except BaseException as e:  # the job failed as a whole (connection, cancelled...)
            self._settle(exception=e)
            return
        for value in values:
            if isinstance(value, RemoteError):
                self._settle(exception=_native_error(value))
                return
        self._settle(result=values)

    def _settle(self, result=None, exception=None):
        try:
            if exception is not None:
                self.set_exception(exception)
            else:
                self.set_result(result)
        except concurrent.futures.InvalidStateError:
            pass  # cancelled meanwhile (checking first would race with cancel())

    def result(self, timeout=None):
        """Every result in input order; raises the lowest-index failed item's exception, or
        TimeoutError. Ctrl-C while waiting cancels the job."""
        try:
            return super().result(timeout)
        except KeyboardInterrupt:
            self.cancel()
            raise
        except concurrent.futures.CancelledError as e:
            if isinstance(e, CancelledError):
                raise
            raise CancelledError(f"the seppo job of {self._function} was cancelled") from None

    def results(self, timeout=None):
        """Every item's value, or its RemoteError instance."""
        return self._job.result(False, -1.0 if timeout is None else float(timeout))

    def wait(self, timeout):
        """True when the job has ended within `timeout` seconds."""
        return self._job.wait(float(timeout))

    def cancel(self):
        """Stops the job (the broker drops its queued tasks); result() then raises
        concurrent.futures.CancelledError. False when it had finished already."""
        base = concurrent.futures._base
        with self._condition:
            if self._state == base.FINISHED:
                return False
            if self._state in (base.CANCELLED, base.CANCELLED_AND_NOTIFIED):
                return True
            self._state = base.CANCELLED_AND_NOTIFIED
            for waiter in self._waiters:
                waiter.add_cancelled(self)
            self._condition.notify_all()
        self._job.cancel()
        self._invoke_callbacks()
        return True

    @property
    def completed(self):
        """Items finished so far."""
        return self._job.completed


def _zipped(inputs, iterables):
    # Several iterables: one call per tuple of their items (ext "call", protocol.md §5.4).
    if not iterables:
        return inputs
    return (call_value(args, None) for args in zip(inputs, *iterables))


def _starred(iterable):
    return (call_value(tuple(args), None) for args in iterable)


class _Results:
    """imap's iterator: the C++ stream, with a Python function's exceptions as their own type."""

    __slots__ = ("_stream",)

    def __init__(self, stream):
        self._stream = stream

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return self._stream.__next__()
        except RemoteError as e:
            _raise_native(e)

    def close(self):
        """Ends the stream; the broker drops the job's queued tasks."""
        self._stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _check(chunksize, timeout):
    # chunksize: items per task (None: adaptive); timeout: seconds one item may run (None: none).
    if chunksize is not None and chunksize < 1:
        raise ValueError("chunksize must be at least 1")
    # NaN, inf and absurd values would overflow the milliseconds the engine takes.
    if timeout is not None and not 0 < timeout <= 1e12:
        raise ValueError("timeout must be a positive number of seconds (None: no limit)")


class Client:
    """A connection to a seppo broker.

    Client() talks to SEPPO_BROKER's broker, or to this process' local cluster when it is
    unset. Client(endpoint, curve_secret_key_file=..., curve_server_key_file=...) uses
    CurveZMQ; without keys only a broker on this machine is accepted unless insecure=True.
    A pair of brokers (a hot standby) is given as both endpoints, comma-separated, the
    primary's first ("tcp://a:5555,tcp://b:5555"): the client moves to the active one.
    One map or stream at a time per Client; submit() runs on a connection of its own.
    """

    def __init__(self, endpoint=None, curve_secret_key_file=None, curve_server_key_file=None,
                 insecure=False, timeout=None, worker_wait=None, _client=None):
        if _client is None and endpoint is None and not os.environ.get("SEPPO_BROKER"):
            # This process' default local cluster, the one map_parallel uses (it searches
            # sys.path), not a second one.
            _client = _default_local_cluster().client()._client
        self._client = _client if _client is not None else _seppo.Client(
            endpoint, curve_secret_key_file, curve_server_key_file, insecure, timeout,
            worker_wait)

    @property
    def endpoint(self):
        """The broker's endpoint this client talks to (a local cluster's private ipc:// one)."""
        return self._client.endpoint

    def map_parallel(self, function, inputs, *iterables, chunksize=None, timeout=None):
        """A list of function(x) for x in inputs, in input order; with several iterables,
        function(x, y, ...) for their items in parallel (zip), as the built-in map. Raises the
        first failed item's exception (the job is then cancelled): a Python function's own
        exception type when it can be had here, with the RemoteError as __cause__;
        RemoteError otherwise.

        chunksize: items per task (default: adapted to the function's measured cost).
        timeout: seconds one item may run; a slower item fails with RemoteError code
        "timeout" (and is not retried)."""
        _check(chunksize, timeout)
        try:
            return self._client.map(function_name(function), _zipped(inputs, iterables), True,
                                    chunksize, timeout)
        except RemoteError as e:
            _raise_native(e)

    map = map_parallel

    def starmap(self, function, iterable, chunksize=None, timeout=None):
        """function(*args) for args in iterable, in order, as multiprocessing.Pool.starmap."""
        return self.map_parallel(function, _starred(iterable), chunksize=chunksize,
                                 timeout=timeout)

    def map_results(self, function, inputs, chunksize=None, timeout=None):
        """Like map_parallel, but a failed item does not stop the others: each entry is the
        item's value or its RemoteError instance."""
        _check(chunksize, timeout)
        return self._client.map(function_name(function), inputs, False, chunksize, timeout)

    def imap(self, function, inputs, chunksize=None, timeout=None):
        """An iterator of results in input order, reading `inputs` lazily (any iterable, an
        endless generator too) with bounded memory. A failed item raises its exception (as
        map_parallel) at its position, and iterating further yields the items after it, as
        multiprocessing.Pool.imap does. Closing it early (or dropping it) cancels the job.
        chunksize and timeout: as map_parallel's."""
        return _Results(self._stream(function, inputs, True, False, chunksize, timeout))

    def istarmap(self, function, iterable, chunksize=None, timeout=None):
        """Like imap, calling function(*args) for args in iterable."""
        return self.imap(function, _starred(iterable), chunksize, timeout)

    def imap_unordered(self, function, inputs, chunksize=None, timeout=None):
        """Like imap, in the order results complete."""
        return _Results(self._stream(function, inputs, False, False, chunksize, timeout))

    def imap_results(self, function, inputs, ordered=True, chunksize=None, timeout=None):
        """Like imap, but failed items are yielded as RemoteError instances; unordered, each
        entry is (index, value)."""
        return self._stream(function, inputs, ordered, True, chunksize, timeout)

    def _stream(self, function, inputs, ordered, results, chunksize, timeout):
        _check(chunksize, timeout)
        return self._client.stream(function_name(function), inputs, ordered, results, chunksize,
                                   timeout)

    def submit(self, function, inputs, chunksize=None, timeout=None):
        """Starts the map in the background and returns a Job at once (a
        concurrent.futures.Future of the list of results). `inputs` is read now.
        chunksize and timeout: as map_parallel's."""
        _check(chunksize, timeout)
        name = function_name(function)
        return Job(self._client.submit(name, inputs, chunksize, timeout), name)

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
        """A new Client of this cluster."""
        return Client(_client=self._cluster.client())

    def map_parallel(self, function, inputs, *iterables, chunksize=None, timeout=None):
        """Client.map_parallel on this cluster."""
        return self.client().map_parallel(function, inputs, *iterables, chunksize=chunksize,
                                          timeout=timeout)

    def map_results(self, function, inputs, chunksize=None, timeout=None):
        """Client.map_results on this cluster."""
        return self.client().map_results(function, inputs, chunksize, timeout)

    @property
    def endpoint(self):
        """The cluster's private broker endpoint (ipc://)."""
        return self._cluster.endpoint

    @property
    def workers(self):
        """Worker processes per module kind (one per core by default)."""
        return self._cluster.workers

    def worker_pids(self):
        """The process ids of the cluster's worker processes."""
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


def _default_local_cluster():
    # One local cluster for the process, started on first use and stopped at exit, as C++'s
    # seppo::default_client(); it searches module_path() (sys.path too).
    global _default_cluster
    with _default_lock:
        if _default_cluster is None:
            _default_cluster = LocalCluster()
            atexit.register(_default_cluster.close)
            print("seppo: no broker configured (SEPPO_BROKER is unset): running on a local "
                  f"cluster of {_default_cluster.workers} worker processes", file=sys.stderr)
        return _default_cluster


def _new_default_client():
    # SEPPO_BROKER's broker, or else this process' local cluster.
    if os.environ.get("SEPPO_BROKER"):
        return Client()
    return _default_local_cluster().client()


# Objects made before a fork(), kept for ever in the child: their connections belong to the
# parent (libseppo leaks them in a child rather than waiting for the parent's threads).
_forked_away = []


def _after_fork_in_child():
    # As Python's own libraries do: the child starts afresh. A local cluster is its parent's
    # (its workers and broker stay with the parent, which stops them); the child's first call
    # starts one of its own, or connects to SEPPO_BROKER's broker.
    global _default, _default_lock, _default_cluster
    _forked_away.append((_default, _default_cluster))
    if _default_cluster is not None:
        try:
            atexit.unregister(_default_cluster.close)
        except Exception:
            pass
    _default = threading.local()
    _default_lock = threading.Lock()
    _default_cluster = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _default_client():
    # One Client per thread, since a Client runs one call at a time.
    client = getattr(_default, "client", None)
    if client is None:
        client = _default.client = _new_default_client()
    return client


def map_parallel(function, inputs, *iterables, chunksize=None, timeout=None):
    """function(x) for x in inputs on SEPPO_BROKER's broker (or a local cluster), in order;
    see Client.map_parallel."""
    return _default_client().map_parallel(function, inputs, *iterables, chunksize=chunksize,
                                          timeout=timeout)


def map_results(function, inputs, chunksize=None, timeout=None):
    """Like map_parallel, but each entry is the item's value or its RemoteError."""
    return _default_client().map_results(function, inputs, chunksize, timeout)


def imap(function, inputs, chunksize=None, timeout=None):
    """Results in input order as they come; see Client.imap."""
    # A stream holds its Client until it ends: a Client of its own leaves the default free.
    return _new_default_client().imap(function, inputs, chunksize, timeout)


def imap_unordered(function, inputs, chunksize=None, timeout=None):
    """Results in completion order; see Client.imap."""
    return _new_default_client().imap_unordered(function, inputs, chunksize, timeout)


def starmap(function, iterable, chunksize=None, timeout=None):
    """function(*args) for args in iterable, in order, as multiprocessing.Pool.starmap."""
    return _default_client().starmap(function, iterable, chunksize=chunksize, timeout=timeout)


def submit(function, inputs, chunksize=None, timeout=None):
    """Starts the map in the background: a Job (a concurrent.futures.Future)."""
    return _default_client().submit(function, inputs, chunksize, timeout)


from seppo._executor import Executor  # noqa: E402  (uses the names above)
