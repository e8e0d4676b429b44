#include "python/convert.hpp"

#include <pybind11/eval.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <type_traits>

#include "protocol/msgpack_reader.hpp"
#include "seppo/convert.hpp"
#include "seppo/error.hpp"

namespace py = pybind11;

namespace seppo::python {
namespace {

// Deeper than any real data, shallow enough that a self-containing list fails cleanly.
constexpr int kMaxDepth = 64;

// The names of module `code` run once in this process' interpreter (a worker has one, made after
// its fork; a client has its own), kept for ever in `*cache`. Needs the GIL.
py::dict& python_namespace(const char* code, py::dict*& cache) {
  if (cache == nullptr) {
    auto* names = new py::dict();
    (*names)["__builtins__"] = py::module_::import("builtins");
    py::exec(code, *names);
    cache = names;
  }
  return *cache;
}

// Namedtuples (ext 4, docs/python.md "Namedtuples"): a sender names the class "module.qualname"
// (a script's __main__ by the script's name, as functions are named); a receiver makes one of
// that class only when a module this process has imported already holds it (looked up in
// module and class dictionaries: nothing is imported, no __getattr__ runs), it is a tuple class
// with `_fields` of the same length, and then by tuple.__new__ (no __new__ or __init__ of the
// class runs). Otherwise the receiver gets a plain tuple.
constexpr const char* kNamedTuples = R"PY(
import os as _os, sys as _sys

_classes = {}

def _script_name():
    path = getattr(_sys.modules.get("__main__"), "__file__", None) or ""
    return _os.path.splitext(_os.path.basename(path))[0] if path.endswith(".py") else None

# Dictionaries and MROs are read through type's and module's own descriptors, and a value is
# classified by type(value) only: no __getattr__, __getattribute__ or __class__ of a value a
# module holds runs (a proxy such as Django's LazyObject would import, werkzeug's would raise).
_ModuleType = type(_sys)
_type_dict = type.__dict__["__dict__"].__get__
_type_mro = type.__dict__["__mro__"].__get__
_module_dict = _ModuleType.__dict__["__dict__"].__get__
_MAX_NAME, _MAX_PARTS, _MAX_CLASSES = 512, 32, 4096

def _fields(cls):
    for k in _type_mro(cls):
        fields = _type_dict(k).get("_fields")
        if fields is not None:
            return fields
    return None

def name_of(value):
    cls = type(value)
    if not issubclass(type(_fields(cls)), tuple):
        return None  # a tuple subclass of another kind (os.stat_result): a plain tuple
    module = cls.__module__
    if module == "__main__":
        module = _script_name() or module
    return f"{module}.{cls.__qualname__}"

def _find(name):
    if len(name) > _MAX_NAME:
        return None
    parts = name.split(".")
    if len(parts) > _MAX_PARTS:
        return None
    prefixes = [parts[0]]
    for part in parts[1:-1]:
        prefixes.append(prefixes[-1] + "." + part)
    for i in range(len(parts) - 1, 0, -1):
        module_name = prefixes[i - 1]
        found = _sys.modules.get(module_name)
        if found is None and module_name == _script_name():
            found = _sys.modules.get("__main__")
        if not issubclass(type(found), _ModuleType):
            continue
        found = _module_dict(found).get(parts[i])
        for part in parts[i + 1:]:
            found = _type_dict(found).get(part) if issubclass(type(found), type) else None
        if issubclass(type(found), type) and issubclass(found, tuple) and \
                issubclass(type(_fields(found)), tuple):
            return found
    return None

def make(name, values):
    cls = _classes.get(name)
    if cls is None:
        cls = _find(name)
        if cls is None:
            return values
        if len(_classes) < _MAX_CLASSES:
            _classes[name] = cls
    if len(_fields(cls)) != len(values):
        return values
    return tuple.__new__(cls, values)
)PY";

py::dict* named_tuples = nullptr;

using Item = std::function<std::string()>;

std::string type_of(py::handle value) {
  return Py_TYPE(value.ptr())->tp_name;
}

[[noreturn]] void unconvertible(py::handle value, const Item& item, const char* why) {
  throw TypeError(item() + ": cannot send a value of type '" + type_of(value) + "'" + why);
}

const char* copy_into(msgpack::zone& zone, const char* data, std::size_t size) {
  char* out = static_cast<char*>(zone.allocate_align(size == 0 ? 1 : size));
  if (size != 0) std::memcpy(out, data, size);
  return out;
}

msgpack::object convert(py::handle value, msgpack::zone& zone, const Item& item, std::size_t& bytes,
                        int depth);

// ext `code` whose data is `payload` packed, in `zone`.
msgpack::object as_ext(std::int8_t code, const msgpack::object& payload, msgpack::zone& zone,
                       std::size_t& bytes) {
  msgpack::sbuffer packed;
  msgpack::pack(packed, payload);
  char* data = static_cast<char*>(zone.allocate_align(packed.size() + 1));
  data[0] = static_cast<char>(code);
  std::memcpy(data + 1, packed.data(), packed.size());
  msgpack::object out;
  out.type = msgpack::type::EXT;
  out.via.ext.size = static_cast<std::uint32_t>(packed.size());
  out.via.ext.ptr = data;
  bytes += packed.size();
  return out;
}

// A list's or tuple's items as a msgpack array in `zone`.
msgpack::object convert_sequence(py::handle value, msgpack::zone& zone, const Item& item,
                                 std::size_t& bytes, int depth) {
  PyObject* p = value.ptr();
  const bool is_list = PyList_Check(p);
  const std::size_t n =
      static_cast<std::size_t>(is_list ? PyList_GET_SIZE(p) : PyTuple_GET_SIZE(p));
  msgpack::object out;
  out.type = msgpack::type::ARRAY;
  out.via.array.size = static_cast<std::uint32_t>(n);
  out.via.array.ptr = static_cast<msgpack::object*>(
      zone.allocate_align(sizeof(msgpack::object) * (n == 0 ? 1 : n)));
  for (std::size_t i = 0; i < n; ++i) {
    // A list may shrink while converting (a __del__, another thread): re-read its size.
    if (is_list && static_cast<std::size_t>(PyList_GET_SIZE(p)) <= i) {
      out.via.array.size = static_cast<std::uint32_t>(i);
      break;
    }
    PyObject* element = is_list ? PyList_GET_ITEM(p, i) : PyTuple_GET_ITEM(p, i);
    out.via.array.ptr[i] = convert(element, zone, item, bytes, depth + 1);
  }
  bytes += n * sizeof(msgpack::object);
  return out;
}

// A numpy value: "numpy.ndarray", or a scalar (numpy.int64, numpy.bool_...: "numpy.*" with
// .item()); found by type name, so numpy is never imported for values that are not its own.
enum class Numpy { kNone, kArray, kScalar };
Numpy numpy_kind(PyObject* p) {
  const char* name = Py_TYPE(p)->tp_name;
  if (std::strncmp(name, "numpy.", 6) != 0) return Numpy::kNone;
  if (std::strcmp(name, "numpy.ndarray") == 0) return Numpy::kArray;
  return PyObject_HasAttrString(p, "item") != 0 ? Numpy::kScalar : Numpy::kNone;
}

// An ndarray as ext 3: [dtype.str, shape, the C-contiguous bytes]: one copy of its buffer, no
// Python object per element. Only numbers and bools: an object array holds pointers.
msgpack::object ndarray(py::handle value, msgpack::zone& zone, const Item& item,
                        std::size_t& bytes) {
  py::object array = py::reinterpret_borrow<py::object>(value);
  py::object dtype = array.attr("dtype");
  const std::string kind = dtype.attr("kind").cast<std::string>();
  if (kind.size() != 1 || std::string("biufc").find(kind[0]) == std::string::npos) {
    unconvertible(value, item,
                  (" of dtype " + py::str(dtype).cast<std::string>() +
                   "; seppo carries arrays of bools and numbers (use .tolist())")
                      .c_str());
  }
  if (dtype.attr("byteorder").cast<std::string>() == ">") {
    dtype = dtype.attr("newbyteorder")("<");
  }
  // The same array when it is C-contiguous and little-endian already (0-d stays 0-d).
  array = array.attr("astype")(dtype, py::arg("order") = "C", py::arg("copy") = false);
  const std::string dtype_str = dtype.attr("str").cast<std::string>();
  Py_buffer view;
  if (PyObject_GetBuffer(array.ptr(), &view, PyBUF_C_CONTIGUOUS) != 0) {
    PyErr_Clear();
    unconvertible(value, item, " (its buffer cannot be read)");
  }
  struct Release {
    Py_buffer* view;
    ~Release() { PyBuffer_Release(view); }
  } release{&view};
  if (static_cast<std::uint64_t>(view.len) > UINT32_MAX) {
    unconvertible(value, item, " (over 4 GiB: msgpack's limit for one value)");
  }
  msgpack::zone scratch;
  const py::tuple shape = array.attr("shape");
  msgpack::object parts[3];
  parts[0].type = msgpack::type::STR;
  parts[0].via.str.size = static_cast<std::uint32_t>(dtype_str.size());
  parts[0].via.str.ptr = dtype_str.data();
  parts[1].type = msgpack::type::ARRAY;
  parts[1].via.array.size = static_cast<std::uint32_t>(shape.size());
  parts[1].via.array.ptr = static_cast<msgpack::object*>(
      scratch.allocate_align(sizeof(msgpack::object) * (shape.size() + 1)));
  for (std::size_t i = 0; i < shape.size(); ++i) {
    parts[1].via.array.ptr[i].type = msgpack::type::POSITIVE_INTEGER;
    parts[1].via.array.ptr[i].via.u64 = shape[i].cast<std::uint64_t>();
  }
  parts[2].type = msgpack::type::BIN;
  parts[2].via.bin.size = static_cast<std::uint32_t>(view.len);
  parts[2].via.bin.ptr = static_cast<const char*>(view.buf);
  msgpack::object payload;
  payload.type = msgpack::type::ARRAY;
  payload.via.array.size = 3;
  payload.via.array.ptr = parts;
  return as_ext(kNdarrayExt, payload, zone, bytes);
}

msgpack::object convert(py::handle value, msgpack::zone& zone, const Item& item, std::size_t& bytes,
                        int depth) {
  if (depth > kMaxDepth) unconvertible(value, item, " (nested too deep, or containing itself)");
  msgpack::object out;
  PyObject* p = value.ptr();
  if (p == Py_None) {
    out.type = msgpack::type::NIL;
  } else if (PyBool_Check(p)) {
    out.type = msgpack::type::BOOLEAN;
    out.via.boolean = p == Py_True;
  } else if (PyLong_Check(p)) {
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(p, &overflow);
    if (overflow != 0) {
      // Only 64-bit integers cross the wire; silently truncating would change results.
      PyErr_Clear();
      throw TypeError(item() + ": int " + py::repr(value).cast<std::string>() +
                      " does not fit in 64 bits (seppo carries int64 only)");
    }
    if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
    if (v < 0) {
      out.type = msgpack::type::NEGATIVE_INTEGER;
      out.via.i64 = v;
    } else {
      out.type = msgpack::type::POSITIVE_INTEGER;
      out.via.u64 = static_cast<std::uint64_t>(v);
    }
  } else if (PyFloat_Check(p)) {
    out.type = msgpack::type::FLOAT64;
    out.via.f64 = PyFloat_AS_DOUBLE(p);
  } else if (PyUnicode_Check(p)) {
    Py_ssize_t size = 0;
    const char* data = PyUnicode_AsUTF8AndSize(p, &size);
    if (data == nullptr) {
      PyErr_Clear();
      unconvertible(value, item, " (a str that is not valid UTF-8)");
    }
    out.type = msgpack::type::STR;
    out.via.str.size = static_cast<std::uint32_t>(size);
    out.via.str.ptr = copy_into(zone, data, static_cast<std::size_t>(size));
    bytes += static_cast<std::size_t>(size);
  } else if (PyBytes_Check(p) || PyByteArray_Check(p)) {
    const bool is_bytes = PyBytes_Check(p);
    const char* data = is_bytes ? PyBytes_AS_STRING(p) : PyByteArray_AS_STRING(p);
    const Py_ssize_t size = is_bytes ? PyBytes_GET_SIZE(p) : PyByteArray_GET_SIZE(p);
    out.type = msgpack::type::BIN;
    out.via.bin.size = static_cast<std::uint32_t>(size);
    out.via.bin.ptr = copy_into(zone, data, static_cast<std::size_t>(size));
    bytes += static_cast<std::size_t>(size);
  } else if (PyTuple_Check(p)) {
    // A tuple is ext 2 around its array (docs/protocol.md §5.4): a Python receiver gets a
    // tuple back, C++ conversions see the array. A namedtuple is ext 4, [its class's name,
    // the array].
    py::object name;
    if (!PyTuple_CheckExact(p))
      name = python_namespace(kNamedTuples, named_tuples)["name_of"](value);
    msgpack::zone scratch;
    const msgpack::object array = convert_sequence(value, scratch, item, bytes, depth);
    if (name && !name.is_none()) {
      const std::string text = name.cast<std::string>();
      msgpack::object parts[2];
      parts[0].type = msgpack::type::STR;
      parts[0].via.str.size = static_cast<std::uint32_t>(text.size());
      parts[0].via.str.ptr = text.data();
      parts[1] = array;
      msgpack::object named;
      named.type = msgpack::type::ARRAY;
      named.via.array.size = 2;
      named.via.array.ptr = parts;
      out = as_ext(kNamedTupleExt, named, zone, bytes);
    } else {
      out = as_ext(kTupleExt, array, zone, bytes);
    }
  } else if (PyList_Check(p)) {
    out = convert_sequence(value, zone, item, bytes, depth);
  } else if (PyDict_Check(p)) {
    const std::size_t n = static_cast<std::size_t>(PyDict_Size(p));
    out.type = msgpack::type::MAP;
    out.via.map.size = static_cast<std::uint32_t>(n);
    out.via.map.ptr = static_cast<msgpack::object_kv*>(
        zone.allocate_align(sizeof(msgpack::object_kv) * (n == 0 ? 1 : n)));
    std::size_t i = 0;
    for (auto kv : py::reinterpret_borrow<py::dict>(value)) {
      if (i == n) break;  // changed while converting: never write past the allocation
      out.via.map.ptr[i].key = convert(kv.first, zone, item, bytes, depth + 1);
      out.via.map.ptr[i].val = convert(kv.second, zone, item, bytes, depth + 1);
      ++i;
    }
    out.via.map.size = static_cast<std::uint32_t>(i);
    bytes += n * sizeof(msgpack::object_kv);
  } else if (const Numpy numpy = numpy_kind(p); numpy == Numpy::kArray) {
    out = ndarray(value, zone, item, bytes);
  } else if (numpy == Numpy::kScalar) {
    // numpy.int64(3), numpy.bool_(True), numpy.float32(0.5): their Python value.
    const py::object plain = value.attr("item")();
    if (numpy_kind(plain.ptr()) != Numpy::kNone) unconvertible(value, item, "");
    out = convert(plain, zone, item, bytes, depth + 1);
  } else if (py::hasattr(value, "__seppo_ext__")) {
    // seppo's own extension values (docs/protocol.md §5.4), e.g. a call with several
    // arguments: (code, payload), the payload packed as the ext's data.
    const py::tuple ext = value.attr("__seppo_ext__");
    const auto code = ext[0].cast<std::int8_t>();
    msgpack::zone scratch;
    const msgpack::object payload = convert(ext[1], scratch, item, bytes, depth + 1);
    out = as_ext(code, payload, zone, bytes);
  } else {
    unconvertible(value, item,
                  "; seppo carries None, bool, int, float, str, bytes, list, "
                  "tuple, dict and numpy arrays and scalars");
  }
  return out;
}

// dtype.str as ndarray() sends it: '<' or '|', a kind of "biufc", a size of 1 to 16 bytes.
bool plain_dtype(const std::string& dtype) {
  if (dtype.size() < 3 || dtype.size() > 4 || (dtype[0] != '<' && dtype[0] != '|')) return false;
  if (std::string("biufc").find(dtype[1]) == std::string::npos) return false;
  for (std::size_t i = 2; i < dtype.size(); ++i) {
    if (dtype[i] < '0' || dtype[i] > '9') return false;
  }
  return true;
}

// An ndarray (ext 3): a numpy array with one copy of the bytes, or without numpy a dict
// {"dtype", "shape", "data"}. The dtype is checked first: numpy.dtype() of a string from the
// network could otherwise make an object array out of bytes.
py::object decode_ndarray(const msgpack::object& o) {
  if (o.type != msgpack::type::ARRAY || o.via.array.size != 3 ||
      o.via.array.ptr[0].type != msgpack::type::STR ||
      o.via.array.ptr[1].type != msgpack::type::ARRAY ||
      o.via.array.ptr[2].type != msgpack::type::BIN) {
    throw ProtocolError("an ndarray (ext 3) is not [dtype, shape, data]");
  }
  const std::string dtype(o.via.array.ptr[0].via.str.ptr, o.via.array.ptr[0].via.str.size);
  if (!plain_dtype(dtype)) throw ProtocolError("an ndarray (ext 3) of dtype " + dtype);
  const msgpack::object_array& dims = o.via.array.ptr[1].via.array;
  const msgpack::object_bin& data = o.via.array.ptr[2].via.bin;
  // Sizes checked before numpy allocates anything: a shape from the network is untrusted.
  const std::uint64_t itemsize = std::stoull(dtype.substr(2));
  std::uint64_t count = 1;
  py::tuple shape(dims.size);
  for (std::uint32_t i = 0; i < dims.size; ++i) {
    if (dims.ptr[i].type != msgpack::type::POSITIVE_INTEGER || dims.ptr[i].via.u64 > UINT32_MAX) {
      throw ProtocolError("an ndarray (ext 3) with a bad shape");
    }
    count = std::min<std::uint64_t>(count * dims.ptr[i].via.u64, std::uint64_t{UINT32_MAX} + 1);
    shape[i] = py::int_(dims.ptr[i].via.u64);
  }
  if (itemsize == 0 || count * itemsize != data.size) {
    throw ProtocolError("an ndarray (ext 3) holds fewer or more bytes than its shape");
  }
  py::object numpy;
  try {
    numpy = py::module_::import("numpy");
  } catch (py::error_already_set&) {
    PyErr_Clear();
    py::dict d;
    d["dtype"] = py::str(dtype);
    d["shape"] = shape;
    d["data"] = py::bytes(data.ptr, data.size);
    return d;
  }
  py::object array = numpy.attr("empty")(shape, numpy.attr("dtype")(dtype));
  Py_buffer view;
  if (PyObject_GetBuffer(array.ptr(), &view, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) != 0) {
    throw py::error_already_set();
  }
  const bool fits = static_cast<std::uint64_t>(view.len) == data.size;
  if (fits && data.size != 0) std::memcpy(view.buf, data.ptr, data.size);
  PyBuffer_Release(&view);
  if (!fits) throw ProtocolError("an ndarray (ext 3) holds fewer or more bytes than its shape");
  return array;
}

// `depth`: the nesting so far. msgpack's own limit restarts inside each extension (a tuple's
// bytes are unpacked anew), so a tuple of a tuple of ... is counted here.
py::object decode(const msgpack::object& o, bool as_key, std::size_t depth) {
  if (depth > static_cast<std::size_t>(kMaxDepth))
    throw ProtocolError("msgpack value nested too deep");
  switch (o.type) {
    case msgpack::type::NIL:
      return py::none();
    case msgpack::type::BOOLEAN:
      return py::bool_(o.via.boolean);
    case msgpack::type::POSITIVE_INTEGER:
      return py::reinterpret_steal<py::object>(PyLong_FromUnsignedLongLong(o.via.u64));
    case msgpack::type::NEGATIVE_INTEGER:
      return py::reinterpret_steal<py::object>(PyLong_FromLongLong(o.via.i64));
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64:
      return py::float_(o.via.f64);
    case msgpack::type::STR: {
      // Invalid UTF-8 from a C++ function must not make the whole result unreadable.
      PyObject* s = PyUnicode_DecodeUTF8(o.via.str.ptr, o.via.str.size, "surrogateescape");
      if (s == nullptr) throw py::error_already_set();
      return py::reinterpret_steal<py::object>(s);
    }
    case msgpack::type::BIN:
      return py::bytes(o.via.bin.ptr, o.via.bin.size);
    case msgpack::type::EXT: {
      if (o.via.ext.type() == kTupleExt) {
        const msgpack::object_handle inner = unpack_untrusted(o.via.ext.data(), o.via.ext.size);
        const msgpack::object& a = inner.get();
        if (a.type != msgpack::type::ARRAY) throw ProtocolError("a tuple (ext 2) is not an array");
        py::tuple t(a.via.array.size);
        for (std::uint32_t i = 0; i < a.via.array.size; ++i) {
          PyTuple_SET_ITEM(t.ptr(), i,
                           decode(a.via.array.ptr[i], as_key, depth + 1).release().ptr());
        }
        return t;
      }
      if (o.via.ext.type() == kNdarrayExt) {
        const msgpack::object_handle inner = unpack_untrusted(o.via.ext.data(), o.via.ext.size);
        return decode_ndarray(inner.get());
      }
      if (o.via.ext.type() == kNamedTupleExt) {
        const msgpack::object_handle inner = unpack_untrusted(o.via.ext.data(), o.via.ext.size);
        const msgpack::object& n = inner.get();
        if (n.type != msgpack::type::ARRAY || n.via.array.size != 2 ||
            n.via.array.ptr[0].type != msgpack::type::STR ||
            n.via.array.ptr[1].type != msgpack::type::ARRAY) {
          throw ProtocolError("a namedtuple (ext 4) is not [class name, array]");
        }
        const msgpack::object_array& a = n.via.array.ptr[1].via.array;
        py::tuple t(a.size);
        for (std::uint32_t i = 0; i < a.size; ++i) {
          PyTuple_SET_ITEM(t.ptr(), i, decode(a.ptr[i], as_key, depth + 1).release().ptr());
        }
        const py::str name(n.via.array.ptr[0].via.str.ptr, n.via.array.ptr[0].via.str.size);
        return python_namespace(kNamedTuples, named_tuples)["make"](name, t);
      }
      return py::bytes(o.via.ext.ptr, o.via.ext.size);
    }
    case msgpack::type::ARRAY: {
      // A map key must be hashable: an array there becomes a tuple.
      if (as_key) {
        py::tuple t(o.via.array.size);
        for (std::uint32_t i = 0; i < o.via.array.size; ++i)
          t[i] = decode(o.via.array.ptr[i], true, depth + 1);
        return t;
      }
      py::list l(o.via.array.size);
      for (std::uint32_t i = 0; i < o.via.array.size; ++i) {
        PyList_SET_ITEM(l.ptr(), i, decode(o.via.array.ptr[i], false, depth + 1).release().ptr());
      }
      return l;
    }
    case msgpack::type::MAP: {
      py::dict d;
      for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
        d[decode(o.via.map.ptr[i].key, true, depth + 1)] =
            decode(o.via.map.ptr[i].val, false, depth + 1);
      }
      return d;
    }
  }
  return py::none();
}

// `seppo-worker --python builtins` (docs/python.md, "Builtins"): the builtins that a tiny
// argument can make allocate without bound, wrapped to refuse that first. The limit is on what
// one call may build: bytes(n) and a format spec's width or precision at most kBuiltinBytes;
// pow of two ints without a modulus only when the result can fit the 64 bits seppo carries back
// (bits(a**b) >= b * (bits(a) - 1), so a result refused here would fail anyway, after gigabytes);
// round(int, -n) for n over 20 is 0 for every 64-bit int, computed without 10**n.
constexpr const char* kBoundedBuiltins = R"PY(
import builtins as _b, re as _re

LIMIT = 16 << 20  # bytes one call may build: 16 MiB

def _refuse(what):
    raise ValueError(f"{what}: over the {LIMIT} bytes (16 MiB) one call of a builtin served by "
                     "seppo-worker --python builtins may build")

def bytes(*args, **kwargs):
    n = args[0] if args else kwargs.get("source")
    if isinstance(n, int) and n > LIMIT:
        _refuse(f"bytes({n})")
    return _b.bytes(*args, **kwargs)

def format(value, format_spec=""):
    if isinstance(format_spec, str):
        # CPython reads a width in any Unicode decimal digits (Arabic-Indic ones too): past a fill
        # character (any one before an align), only ASCII, so the digits seen here are all.
        rest = format_spec[2:] if format_spec[1:2] in ("<", ">", "=", "^") else format_spec
        if not rest.isascii():
            raise ValueError(f"format spec {format_spec!r}: a character that is not ASCII "
                             "(other than a fill), which seppo-worker --python builtins "
                             "refuses so that a width or precision stays under its limit")
        for digits in _re.findall(r"[0-9]+", rest):
            if len(digits) > 9 or int(digits) > LIMIT:
                _refuse(f"format spec {format_spec!r}: a width or precision of {digits}")
    return _b.format(value, format_spec)

def pow(base, exp, mod=None):
    if (mod is None and isinstance(base, int) and isinstance(exp, int) and exp > 0
            and abs(base) > 1 and exp * (abs(base).bit_length() - 1) > 64):
        raise ValueError(f"pow({base}, {exp}): the result has over 64 bits, more than seppo "
                         "carries (int64), so seppo-worker --python builtins refuses to compute it")
    return _b.pow(base, exp, mod)

def round(number, ndigits=None):
    if (isinstance(number, int) and isinstance(ndigits, int) and ndigits < -20
            and number.bit_length() <= 64):
        ndigits = -20  # the same 0: |number| < 2**64 < 10**20 / 2
    return _b.round(number, ndigits)
)PY";

}  // namespace

py::object served_builtin(const std::string& name, py::object function) {
  static py::dict* bounded = nullptr;
  if (name == "bytes" || name == "format" || name == "pow" || name == "round") {
    return python_namespace(kBoundedBuiltins, bounded)[name.c_str()];
  }
  return function;
}

msgpack::object to_msgpack(py::handle value, msgpack::zone& zone, const Item& item,
                           std::size_t& bytes) {
  // Exact ints and floats (most values) first: no type ladder, no depth check.
  PyObject* p = value.ptr();
  msgpack::object out;
  if (PyLong_CheckExact(p)) {
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(p, &overflow);
    if (overflow == 0) {  // an exact int cannot fail otherwise; over 64 bits: convert's error
      if (v < 0) {
        out.type = msgpack::type::NEGATIVE_INTEGER;
        out.via.i64 = v;
      } else {
        out.type = msgpack::type::POSITIVE_INTEGER;
        out.via.u64 = static_cast<std::uint64_t>(v);
      }
      return out;
    }
  } else if (PyFloat_CheckExact(p)) {
    out.type = msgpack::type::FLOAT64;
    out.via.f64 = PyFloat_AS_DOUBLE(p);
    return out;
  }
  return convert(value, zone, item, bytes, 0);
}

std::size_t write_scalar(unsigned char* out, PyObject* value) {
  if (PyLong_CheckExact(value)) {
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
    return overflow != 0 ? 0 : write_int(out, v);  // over 64 bits: convert's error
  }
  if (PyFloat_CheckExact(value)) {
    const double d = PyFloat_AS_DOUBLE(value);
    std::uint64_t bits = 0;
    std::memcpy(&bits, &d, sizeof bits);
    bits = to_big_endian(bits);
    out[0] = 0xcb;  // always float64 (seppo/msgpack.hpp)
    std::memcpy(out + 1, &bits, sizeof bits);
    return 1 + sizeof bits;
  }
  return 0;
}

bool pack_scalar_entry(msgpack::sbuffer& buffer, PyObject* value) {
  unsigned char entry[2 + kMaxScalarBytes];
  entry[0] = 0x92;  // [0, value]: a fixarray of two whose first element is the fixint 0
  entry[1] = 0x00;
  const std::size_t size = write_scalar(entry + 2, value);
  if (size == 0) return false;
  buffer.write(reinterpret_cast<const char*>(entry), 2 + size);
  return true;
}

py::object from_msgpack(const msgpack::object& object) {
  return decode(object, false, 0);
}

namespace {

// A scalar's Python value as decode() makes it, or null with the Python error set.
PyObject* scalar_to_python(const msgpack::object& o) {
  switch (o.type) {
    case msgpack::type::NIL:
      Py_RETURN_NONE;
    case msgpack::type::BOOLEAN:
      if (o.via.boolean) Py_RETURN_TRUE;
      Py_RETURN_FALSE;
    case msgpack::type::POSITIVE_INTEGER:
      return o.via.u64 <= static_cast<std::uint64_t>(INT64_MAX)
                 ? PyLong_FromLongLong(static_cast<long long>(o.via.u64))
                 : PyLong_FromUnsignedLongLong(o.via.u64);
    case msgpack::type::NEGATIVE_INTEGER:
      return PyLong_FromLongLong(o.via.i64);
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64:
      return PyFloat_FromDouble(o.via.f64);
    case msgpack::type::STR:
      return PyUnicode_DecodeUTF8(o.via.str.ptr, o.via.str.size, "surrogateescape");
    case msgpack::type::BIN:
      return PyBytes_FromStringAndSize(o.via.bin.ptr, o.via.bin.size);
    default:
      PyErr_SetString(PyExc_SystemError, "seppo: not a scalar");
      return nullptr;
  }
}

}  // namespace

namespace {

// The integer of sizeof(T) big-endian bytes at `p`.
template <class T>
T big_endian(const unsigned char* p) {
  using U = std::make_unsigned_t<T>;
  U v;
  std::memcpy(&v, p, sizeof v);
  if constexpr (sizeof v == 2) v = __builtin_bswap16(v);
  if constexpr (sizeof v == 4) v = __builtin_bswap32(v);
  if constexpr (sizeof v == 8) v = __builtin_bswap64(v);
  return static_cast<T>(v);
}

}  // namespace

bool scalar_entries_to_python(const char* data, std::size_t size, std::uint32_t count,
                              PyObject** out) {
  const auto* p = reinterpret_cast<const unsigned char*>(data);
  const unsigned char* const end = p + size;
  std::uint32_t n = 0;
  std::uint32_t made = 0;
  {
    wire::MsgpackReader header(p, size);
    if (!header.array_header(n) || n != count) return false;
    p += header.offset();
  }
  bool ok = true;
  while (made < count) {
    // [0, value]: a fixarray of two whose first element is the positive fixint 0.
    if (end - p < 3 || p[0] != 0x92 || p[1] != 0x00) {
      ok = false;
      break;
    }
    const unsigned char b = p[2];
    p += 3;
    PyObject* object = nullptr;
    // The usual results inline: fixints, 8- to 64-bit integers, float64.
    if (b <= 0x7f) {
      object = PyLong_FromLong(b);
    } else if (b >= 0xe0) {
      object = PyLong_FromLong(static_cast<std::int8_t>(b));
    } else if (b >= 0xcc && b <= 0xd3) {
      const std::size_t bytes = std::size_t{1} << ((b - 0xcc) & 3);
      if (static_cast<std::size_t>(end - p) < bytes) {
        ok = false;
        break;
      }
      if (b <= 0xcf) {
        const std::uint64_t v = bytes == 1   ? big_endian<std::uint8_t>(p)
                                : bytes == 2 ? big_endian<std::uint16_t>(p)
                                : bytes == 4 ? big_endian<std::uint32_t>(p)
                                             : big_endian<std::uint64_t>(p);
        object = v <= static_cast<std::uint64_t>(INT64_MAX)
                     ? PyLong_FromLongLong(static_cast<long long>(v))
                     : PyLong_FromUnsignedLongLong(v);
      } else {
        const std::int64_t v = bytes == 1   ? big_endian<std::int8_t>(p)
                               : bytes == 2 ? big_endian<std::int16_t>(p)
                               : bytes == 4 ? big_endian<std::int32_t>(p)
                                            : big_endian<std::int64_t>(p);
        object = PyLong_FromLongLong(v);
      }
      p += bytes;
    } else if (b == 0xcb) {
      if (end - p < 8) {
        ok = false;
        break;
      }
      const std::uint64_t bits = big_endian<std::uint64_t>(p);
      double d = 0;
      std::memcpy(&d, &bits, sizeof d);
      object = PyFloat_FromDouble(d);
      p += 8;
    } else {
      wire::MsgpackReader in(p, static_cast<std::size_t>(end - p));
      msgpack::object value;
      if (!in.scalar(b, value)) {
        ok = false;
        break;
      }
      p += in.offset();
      object = scalar_to_python(value);
    }
    if (object == nullptr) {
      PyErr_Clear();  // read again item by item, which reports it
      ok = false;
      break;
    }
    out[made++] = object;
  }
  if (ok && p == end) return true;
  for (std::uint32_t i = 0; i < made; ++i) Py_CLEAR(out[i]);
  return false;
}

py::object call_with(py::handle function, const msgpack::object& item) {
  if (item.type == msgpack::type::EXT && item.via.ext.type() == kCallExt) {
    const msgpack::object_handle call = unpack_untrusted(item.via.ext.data(), item.via.ext.size);
    const msgpack::object& o = call.get();
    if (o.type != msgpack::type::ARRAY || o.via.array.size != 2 ||
        o.via.array.ptr[0].type != msgpack::type::ARRAY ||
        (o.via.array.ptr[1].type != msgpack::type::MAP &&
         o.via.array.ptr[1].type != msgpack::type::NIL)) {
      throw ProtocolError("a call (ext 1) is not [args array, kwargs map]");
    }
    const py::tuple args = py::tuple(decode(o.via.array.ptr[0], false, 1));
    if (o.via.array.ptr[1].type == msgpack::type::NIL) return function(*args);
    const py::dict kwargs = decode(o.via.array.ptr[1], false, 1);
    return function(*args, **kwargs);
  }
  // One argument: a vectorcall, without the tuple pybind11's call operator builds for it.
  const py::object argument = decode(item, false, 0);
  PyObject* result = PyObject_CallOneArg(function.ptr(), argument.ptr());
  if (result == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(result);
}

}  // namespace seppo::python
