"""A map's chunk answers decoded straight into its list (python/module.cpp, one pass), and
read item by item whenever they are anything else: every value exact, every item in place."""

import math

import pytest

import pyfuncs
import seppo
from conftest import Cluster, wait_until
from test_values import same

INTS = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53 + 1,
        2**63 - 1, -1, -31, -32, -33, -127, -128, -129, -32768, -32769, -2**31, -2**31 - 1,
        -2**32, -2**63 + 1, -2**63]
FLOATS = [0.0, -0.0, 1.0, 2.0**53, 2.0**64, 1e308, 5e-324, -1.5, math.inf, -math.inf, math.nan]
STRINGS = ["", "a" * 31, "b" * 32, "c" * 255, "d" * 256, "é" * 40000, "\u2603", "\x00"]
BYTES = [b"", b"x", b"\x00" * 300, b"\xff" * 70000]
SCALARS = INTS + FLOATS + STRINGS + BYTES + [None, True, False]


@pytest.mark.parametrize("function", [pyfuncs.echo, "test_module.same"])
def test_a_chunk_of_every_scalar_encoding_comes_back_exact(client, function):
    for chunksize in (len(SCALARS), 7, 1):
        out = client.map_parallel(function, SCALARS, chunksize=chunksize)
        assert len(out) == len(SCALARS)
        for got, sent in zip(out, SCALARS):
            assert same(got, sent), (function, chunksize, sent, got)


def test_a_chunk_mixing_scalars_and_other_values_comes_back_exact(client):
    values = [1, [2, 3.0], "x", (4, "y"), None, {"k": [5]}, 2.5, b"z", pyfuncs.Point(1, 2), -7,
              [], (), {}]
    for chunksize in (len(values), 4):
        out = client.map_parallel(pyfuncs.echo, values, chunksize=chunksize)
        assert all(same(got, sent) for got, sent in zip(out, values)), out
    # C++ sees tuples as arrays: lists come back.
    plain = [1, [2, 3.0], "x", None, {"k": [5]}, 2.5, b"z", -7, []]
    out = client.map_parallel("test_module.same", plain, chunksize=len(plain))
    assert all(same(got, sent) for got, sent in zip(out, plain)), out


def test_a_list_of_ints_and_floats_is_packed_straight_and_other_values_in_their_place(client):
    # Exact ints and floats are written from the list itself; a bool, an int or float
    # subclass, a str or None stops that and is converted as any value, in its place; runs
    # past a chunk's 48 KB and the fill's 4 KB block, as a list and as a tuple.
    import enum

    class Small(enum.IntEnum):
        ONE = 1

    class Real(float):
        pass

    runs = [list(range(2**40, 2**40 + 3 * 20000, 3)), [True, False], [Small.ONE],
            [x / 3 for x in range(9000)], ["s"], INTS, [Real(2.5)], FLOATS, [None], [7]]
    values = [v for run in runs for v in run]
    expected = [int(v) if isinstance(v, Small) else float(v) if isinstance(v, Real) else v
                for v in values]
    for sequence in (values, tuple(values)):
        for function in (pyfuncs.echo, "test_module.same"):
            out = client.map_parallel(function, sequence)
            assert len(out) == len(expected)
            for i, (got, sent) in enumerate(zip(out, expected)):
                assert same(got, sent), (function, i, sent, got)
    with pytest.raises(TypeError, match=r"item 20002: int .* does not fit in 64 bits"):
        client.map_parallel("test_module.same", list(range(20002)) + [2**64, 1])


def test_errors_in_the_middle_of_a_chunk_stay_at_their_items(client):
    out = client.map_results(pyfuncs.fail_on_3, range(10), chunksize=10)
    assert [v for i, v in enumerate(out) if i not in (3, 5)] == [0, 10, 20, 40, 60, 70, 80, 90]
    assert isinstance(out[3], seppo.RemoteError) and out[3].index == 3
    assert "three is bad" in out[3].message
    assert isinstance(out[5], seppo.RemoteError) and out[5].index == 5
    with pytest.raises(ValueError, match="three is bad"):
        client.map_parallel(pyfuncs.fail_on_3, range(10), chunksize=10)


def test_a_map_of_unknown_length_places_every_answer(client):
    out = client.map_parallel(pyfuncs.square, (x for x in range(3000)))
    assert out == [x * x for x in range(3000)]
    out = client.map_parallel("example_module.square", iter(range(-1500, 1500)))
    assert out == [x * x for x in range(-1500, 1500)]


def test_a_chunk_answered_in_several_parts_fills_every_slot(tmp_path):
    """A chunk that killed its worker is run again item by item (docs/protocol.md §10): its
    answer then comes in parts, each placed at its own items."""
    c = Cluster(tmp_path)
    try:
        for _ in range(2):  # two processes: one dies, the other answers the parts
            c.worker("--python", "pyfuncs", jobs=1, wait_for="pyfuncs.die_once")
        wait_until(lambda: len(c.status()["workers"]) == 2, what="two workers")
        client = seppo.Client(c.endpoint)
        marker = str(tmp_path / "died")
        n = 40
        out = client.map_parallel(pyfuncs.die_once, [[x, marker, 17] for x in range(n)],
                                  chunksize=n)
        assert out == [x * x for x in range(n)]
        assert (tmp_path / "died").exists()
    finally:
        c.stop()


def test_ranges_are_read_by_arithmetic_to_their_last_item(client):
    for r in (range(0), range(5), range(10, -10, -3), range(2**63 - 5, 2**63 - 1),
              range(-2**63, -2**63 + 4), range(0, 3000, 7), range(5, 0)):
        assert client.map_parallel("test_module.same", r) == list(r), r
    # submit reads its inputs at once, on the caller's thread
    assert client.submit(pyfuncs.square, range(-3, 3)).result() == [9, 4, 1, 0, 1, 4]


def test_a_range_is_packed_many_ints_a_call_across_every_int_encoding(client):
    """A range's ints are written in a loop into the chunk (python/module.cpp, Inputs::fill):
    every msgpack int form, either sign, both directions, chunks cut by items or by bytes."""
    edges = [0, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1,
             -1, -32, -33, -128, -129, -32768, -32769, -2**31, -2**31 - 1, -2**63]
    ranges = [range(max(e - 3, -2**63), min(e + 4, 2**63 - 1)) for e in edges]
    ranges += [range(2**63 - 2, -2**63, -(2**62)), range(-2**63, 2**63 - 1, 2**61 + 1),
               range(7, -8, -1), range(300, -300, -7), range(0), range(3, 3), range(3, 0),
               range(0, -5, -1), range(21)]
    for r in ranges:
        for chunksize in (None, 1, 7):
            assert client.map_parallel("test_module.same", r, chunksize=chunksize) == list(r), \
                (r, chunksize)
    # 9-byte ints past a chunk's 48 KB and the fill's 4 KB block, through C++ and Python.
    r = range(2**40, 2**40 + 3 * 20000, 3)
    assert client.map_parallel("test_module.same", r) == list(r)
    assert client.map_parallel(pyfuncs.echo, r, chunksize=len(r)) == list(r)
    r = range(-2**31 + 3000, -2**31 - 3001, -1)  # 5- and 9-byte ints, squares within 64 bits
    assert client.map_parallel(pyfuncs.square, r) == [x * x for x in r]
