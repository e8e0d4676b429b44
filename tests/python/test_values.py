"""Issue 22: values cross the wire exactly (type and value), in every direction."""

import math
import subprocess

import pytest

import pyfuncs
from conftest import CLI

FLOATS = [2.0, -0.0, 0.0, 1.0, -3.0, 1e15, 2.0**63, -2.0**63, 2.0**64, 0.5, math.inf, -math.inf]


def same(a, b):
    """Equal in type and value, nan equal to nan and -0.0 told from 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) ==
                                                      math.copysign(1, b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def test_whole_number_floats_stay_floats_through_python(client):
    out = client.map_parallel(pyfuncs.echo, FLOATS + [math.nan])
    assert all(same(a, b) for a, b in zip(out, FLOATS + [math.nan])), out
    assert client.map_parallel(pyfuncs.half, [4, 4.0, 3]) == [2.0, 2.0, 1.5]
    assert [type(v) for v in client.map_parallel(pyfuncs.half, [4, 6])] == [float, float]


def test_whole_number_floats_stay_floats_through_cpp(client):
    out = client.map_parallel("test_module.same", FLOATS + [math.nan])
    assert all(same(a, b) for a, b in zip(out, FLOATS + [math.nan])), out
    halves = client.map_parallel("test_module.over_two", [4.0, 5.0, -0.0])
    assert all(same(a, b) for a, b in zip(halves, [2.0, 2.5, -0.0])), halves
    nested = [[1.0, {"x": 2.0}], {"k": [-0.0]}]
    assert same(client.map_parallel("test_module.same", [nested])[0], nested)


def test_seppo_map_prints_floats_as_floats(cluster):
    def json_map(function, text):
        out = subprocess.run([CLI, "map", "--json", function], input=text, env=cluster.env,
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout.splitlines()

    assert json_map("test_module.over_two", "4\n5\n4.0\n") == ["2.0", "2.5", "2.0"]
    assert json_map("test_module.same", '2.0\n2\n[1.0, -0.0, 3]\n{"a": 1.0}\n') == [
        "2.0", "2", "[1.0,-0.0,3]", '{"a":1.0}']
    assert json_map("pyfuncs.echo", "2.0\n") == ["2.0"]


hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

SCALARS = (st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1)
           | st.floats(allow_nan=True, allow_infinity=True)
           | st.sampled_from([0.0, -0.0, 1.0, 2.0, -3.0, 1e15, 2.0**53, math.nan])
           | st.text() | st.binary())
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=5)
                      | st.dictionaries(st.text(max_size=8) | st.integers(-5, 5), inner,
                                        max_size=5), max_leaves=20)


@hypothesis.settings(max_examples=150, deadline=None, database=None,
                     suppress_health_check=list(hypothesis.HealthCheck))
@hypothesis.given(st.lists(VALUES, min_size=1, max_size=20))
def test_values_round_trip_exactly_through_python_and_cpp_identity(client, values):
    for function in (pyfuncs.echo, "test_module.same"):
        out = client.map_parallel(function, values)
        assert len(out) == len(values)
        for got, sent in zip(out, values):
            assert same(got, sent), (function, sent, got)
