"""An exception class in a module only workers import (test_futures: a caller never imports a
module because a worker's message names it)."""


class Boom(Exception):
    pass
