"""seppo.Executor: concurrent.futures' Executor over seppo (see docs/python.md).

submit() queues the call and returns a concurrent.futures.Future at once. A dispatcher thread
takes every call queued meanwhile and sends those of one function as one seppo job (a stream
on a connection of its own), so a thousand submits are a few jobs on the wire, not a thousand;
each Future is settled as its item's result arrives.
"""

import concurrent.futures
import os
import queue
import threading
import weakref

from seppo import _errors

# Calls sent as one job at most; more wait for the next round.
_BATCH = 10000


class _Call:
    """fn(*args, **kwargs) on the wire: msgpack ext 1 holding [args, kwargs] (protocol.md §5.4).
    A call with one positional argument and no keywords is sent as the plain value instead, so
    C++ functions can be submitted too."""

    __slots__ = ("__seppo_ext__",)

    def __init__(self, args, kwargs):
        self.__seppo_ext__ = (1, [list(args), kwargs if kwargs else None])


def call_value(args, kwargs):
    """The item that makes a worker call fn(*args, **kwargs)."""
    if len(args) == 1 and not kwargs:
        return args[0]
    return _Call(args, kwargs)


class Executor(concurrent.futures.Executor):
    """A concurrent.futures.Executor running calls on seppo workers, with
    ProcessPoolExecutor's interface:

        with seppo.Executor() as ex:
            f = ex.submit(pow, 2, 10)  ->  a concurrent.futures.Future
            ex.map(fn, xs, ys, timeout=None, chunksize=1)

    max_workers sizes the local cluster it starts when neither `endpoint` nor SEPPO_BROKER
    names a broker (None: one worker per core); 0 or less is a ValueError. With a broker, the
    broker's workers run the calls and max_workers is ignored. `fn` is a module-level function
    (or "module.function") that the workers can import, as for seppo.map_parallel. A failed
    call's Future holds the function's exception (its own type when it can be had, with the
    seppo.RemoteError as __cause__)."""

    def __init__(self, max_workers=None, endpoint=None, mp_context=None, initializer=None,
                 initargs=(), *, max_tasks_per_child=None, **client_options):
        import seppo
        if max_workers is not None and max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None or max_tasks_per_child is not None:
            raise NotImplementedError("seppo workers are long-lived processes shared by every "
                                      "caller: initializer and max_tasks_per_child do not apply")
        del mp_context, initargs  # processes are seppo's workers
        self._seppo = seppo
        self._cluster = None
        if endpoint is None and not os.environ.get("SEPPO_BROKER"):
            if max_workers is None:
                self._cluster = seppo._default_local_cluster()
                self._owns_cluster = False
            else:
                self._cluster = seppo.LocalCluster(max_workers)
                self._owns_cluster = True
        self._endpoint = endpoint
        self._client_options = client_options
        self._calls = queue.SimpleQueue()
        self._shutdown = False
        self._lock = threading.Lock()
        self._runners = set()
        self.jobs_started = 0  # seppo jobs sent so far (each carries many calls)
        self._dispatcher = threading.Thread(target=self._dispatch, name="seppo-executor",
                                            daemon=True)
        self._dispatcher.start()
        # As ProcessPoolExecutor: calls still pending when the interpreter exits are finished,
        # not dropped with the daemon threads (a weak reference: no executor kept alive by it).
        me = weakref.ref(self)

        def finish_at_exit():
            executor = me()
            if executor is not None:
                executor.shutdown(wait=True)

        threading._register_atexit(finish_at_exit)

    def _client(self):
        if self._cluster is not None:
            return self._cluster.client()
        return self._seppo.Client(self._endpoint, **self._client_options)

    def submit(self, fn, /, *args, **kwargs):
        """Schedules fn(*args, **kwargs) and returns a concurrent.futures.Future."""
        name = self._seppo.function_name(fn)
        future = concurrent.futures.Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._calls.put((name, call_value(args, kwargs), future))
        return future

    submit.__doc__ = concurrent.futures.Executor.submit.__doc__

    def map(self, fn, *iterables, timeout=None, chunksize=1):
        """fn over the iterables' items (zip), results in order, as Executor.map: the
        iterables are read at once, a result that is not ready `timeout` seconds after this
        call raises TimeoutError, and a failed item raises its exception when reached. Calls
        are batched on the wire whatever `chunksize` says (it is accepted for
        ProcessPoolExecutor compatibility)."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        return super().map(fn, *iterables, timeout=timeout)

    def shutdown(self, wait=True, *, cancel_futures=False):
        """No new calls; with cancel_futures, calls not yet sent are cancelled; with wait,
        returns once every sent call has finished. A local cluster this Executor started is
        stopped then."""
        with self._lock:
            if not self._shutdown:
                self._shutdown = True
                if cancel_futures:
                    self._cancel_queued()
                self._calls.put(None)
        if wait:
            self._dispatcher.join()
            for runner in list(self._runners):
                runner.join()
            if self._owns_cluster_now():
                self._cluster.close()

    def _owns_cluster_now(self):
        return self._cluster is not None and getattr(self, "_owns_cluster", False)

    def _cancel_queued(self):
        kept = []
        while True:
            try:
                call = self._calls.get_nowait()
            except queue.Empty:
                break
            if call is None:
                kept.append(call)
            else:
                call[2].cancel()
        for call in kept:
            self._calls.put(call)

    def _dispatch(self):
        while True:
            first = self._calls.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < _BATCH:
                try:
                    call = self._calls.get_nowait()
                except queue.Empty:
                    break
                if call is None:
                    stop = True
                    break
                batch.append(call)
            by_function = {}
            for name, value, future in batch:
                if future.set_running_or_notify_cancel():
                    by_function.setdefault(name, []).append((value, future))
            for name, calls in by_function.items():
                self.jobs_started += 1
                runner = threading.Thread(target=self._run, args=(name, calls),
                                          name="seppo-executor-job", daemon=True)
                self._runners.add(runner)
                runner.start()
            self._runners = {r for r in self._runners if r.is_alive()}
            if stop:
                return

    def _run(self, name, calls):
        futures = [future for _, future in calls]
        try:
            stream = self._client().imap_results(name, [value for value, _ in calls],
                                                 ordered=False)
            for index, value in stream:
                if isinstance(value, _errors.RemoteError):
                    futures[index].set_exception(self._seppo._native_error(value))
                else:
                    futures[index].set_result(value)
        except BaseException as e:  # the whole job failed: every call not settled yet
            for future in futures:
                if not future.done():
                    future.set_exception(e)
