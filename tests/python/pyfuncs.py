"""Python functions the tests serve with seppo-worker --python pyfuncs."""

import os
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
