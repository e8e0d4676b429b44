"""The seppo exception family, mirroring include/seppo/error.hpp.

Catch seppo.Error for any seppo failure. seppo.TypeError and seppo.ConnectionError are also
the built-in TypeError and ConnectionError, so code that catches those keeps working.
"""

import builtins
import concurrent.futures


class Error(Exception):
    """Base of everything seppo raises."""


class ConnectionError(Error, builtins.ConnectionError):
    """The broker could not be reached, went silent past the timeout, or refused the key."""


class RefusedError(Error):
    """The broker answers but refuses the work; .code is "forbidden" or "over_limit"."""

    def __init__(self, message, code=""):
        super().__init__(message)
        self.code = code


class UnknownFunctionError(Error):
    """No worker announced .function within the wait the caller allowed."""

    def __init__(self, message, function=""):
        super().__init__(message)
        self.function = function


class TypeError(Error, builtins.TypeError):
    """A value msgpack cannot carry (the message names its type and item), or a result that
    does not convert."""


class CancelledError(Error, concurrent.futures.CancelledError):
    """Job.result() after the job was cancelled before it finished; also the standard
    library's concurrent.futures.CancelledError."""


class RemoteError(Error):
    """The function failed for one input.

    .function   the name called, e.g. "example_module.square"
    .index      position of the failing input, from 0
    .message    what the function said; for a Python function, its traceback's text
    .host, .pid the worker that reported it (None when no worker did, e.g. it kept dying)
    .code       None when the function raised the error; otherwise why seppo failed the item,
                a failure code of docs/protocol.md §6.1: "timeout", "worker_lost", ...
    """

    def __init__(self, text, function="", index=0, message="", host=None, pid=None, code=None):
        super().__init__(text)
        self.function = function
        self.index = index
        self.message = message
        self.host = host
        self.pid = pid
        self.code = code

    def __reduce__(self):
        return (RemoteError, (str(self), self.function, self.index, self.message, self.host,
                              self.pid, self.code))
