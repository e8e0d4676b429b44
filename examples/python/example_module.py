"""The seed's example module (seppo, 2008), served by Python workers:

    seppo-worker --python example_module        # with this folder in SEPPO_MODULE_PATH

hello_world prints exactly what the 2008 original printed, and what the C++ example_module's
hello_world prints, so callers see the same text whichever workers served them.
"""

import os
import socket


def hello_world(value):
    value2 = value * value
    fqdn = socket.getfqdn()
    pid = os.getpid()
    host_str = "%s, process %d" % (fqdn, pid)
    result = 'hello world from %s (input=%f, value*value=%f)' % (host_str, value, value2)
    return result


def square(value):
    return value * value
