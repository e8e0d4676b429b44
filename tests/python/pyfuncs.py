"""Python functions the tests serve with seppo-worker --python pyfuncs."""

import os
import threading  # here, when the worker imports this module: on its main thread
import time


def square(x):
    return x * x


def fail(x):
    raise ValueError(f"bad input {x}")


def echo(x):
    return x


def nap(seconds):
    time.sleep(seconds)
    return seconds


def mark_and_nap(args):
    """Writes this process' id into folder `args[0]` (so a test can kill it), then naps."""
    folder, seconds, value = args
    with open(os.path.join(folder, str(os.getpid())), "w"):
        pass
    time.sleep(seconds)
    return value


def unsendable(x):
    return {x}


def _private(x):
    return x


def half(x):
    return x / 2


def add(x, y):
    return x + y


def power(x, exponent=2):
    return x ** exponent


def fail_on_3(x):
    """x * 10, except that 3 raises ValueError and 5 ZeroDivisionError."""
    if x == 3:
        raise ValueError(f"three is bad: {x}")
    if x == 5:
        return x // 0
    return x * 10


def fail_on_two_lines(x):
    """Raises a ValueError whose message's last line reads like another exception."""
    raise ValueError(f"bad input {x}\nKeyError: {x}")


def fail_with_unimported_type(x):
    """Raises a class of a module the caller has not imported (pyfuncs_errors)."""
    import pyfuncs_errors
    raise pyfuncs_errors.Boom(f"boom {x}")


def pair(x):
    """(x, [x]): a tuple result, holding a list."""
    return (x, [x])


def pid(x):
    """The worker process' id (chunks run whole on one process)."""
    return os.getpid()


def as_array(values):
    """A numpy float64 array of the values."""
    import numpy
    return numpy.array(values, dtype=numpy.float64)


# Namedtuples (issue 22): classes both the tests and the workers import from this module.
import collections  # noqa: E402
import typing  # noqa: E402

Point = collections.namedtuple("Point", "x y")


class Pair(typing.NamedTuple):
    left: int
    right: str = ""


def make_point(x):
    return Point(x, -x)


def point_sum(point):
    """The sum of a Point's fields, and its type's name as the function received it."""
    return [point.x + point.y, type(point).__name__]


def thread_of(x):
    """[name of the Python thread the call runs on, whether it is the main thread]."""
    return [threading.current_thread().name,
            threading.get_ident() == threading.main_thread().ident]


def die_once(args):
    """x * x for [x, marker, poison]; the first call with x == poison (while the file `marker`
    does not exist) ends its worker process at once, as a crash would."""
    x, marker, poison = args
    if x == poison and not os.path.exists(marker):
        with open(marker, "w"):
            pass
        os._exit(3)
    return x * x
