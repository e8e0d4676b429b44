"""The seed's example module (seppo, 2008) in Python, served by Python workers:

    seppo-worker --python example_module_py     # with this folder in SEPPO_MODULE_PATH

It is named example_module_py, not example_module as in 2008, because the C++ example_module
(examples/example_module) announces the same function names: a broker serving both would not
know which one `example_module.hello_world` means. hello_world prints exactly what the 2008
original printed, and what the C++ example_module's hello_world prints.
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
