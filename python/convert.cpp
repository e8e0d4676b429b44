#include "python/convert.hpp"

#include <climits>
#include <cstring>

#include "seppo/convert.hpp"
#include "seppo/error.hpp"

namespace py = pybind11;

namespace seppo::python {
namespace {

// Deeper than any real data, shallow enough that a self-containing list fails cleanly.
constexpr int kMaxDepth = 64;

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
  } else if (PyList_Check(p) || PyTuple_Check(p)) {
    const py::sequence seq = py::reinterpret_borrow<py::sequence>(value);
    const std::size_t n = py::len(seq);
    out.type = msgpack::type::ARRAY;
    out.via.array.size = static_cast<std::uint32_t>(n);
    out.via.array.ptr = static_cast<msgpack::object*>(
        zone.allocate_align(sizeof(msgpack::object) * (n == 0 ? 1 : n)));
    for (std::size_t i = 0; i < n; ++i) {
      out.via.array.ptr[i] = convert(seq[i], zone, item, bytes, depth + 1);
    }
    bytes += n * sizeof(msgpack::object);
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
  } else if (py::hasattr(value, "__seppo_ext__")) {
    // seppo's own extension values (docs/protocol.md §5.4), e.g. a call with several
    // arguments: (code, payload), the payload packed as the ext's data.
    const py::tuple ext = value.attr("__seppo_ext__");
    const auto code = ext[0].cast<std::int8_t>();
    msgpack::zone scratch;
    const msgpack::object payload = convert(ext[1], scratch, item, bytes, depth + 1);
    msgpack::sbuffer packed;
    msgpack::pack(packed, payload);
    char* data = static_cast<char*>(zone.allocate_align(packed.size() + 1));
    data[0] = static_cast<char>(code);
    std::memcpy(data + 1, packed.data(), packed.size());
    out.type = msgpack::type::EXT;
    out.via.ext.size = static_cast<std::uint32_t>(packed.size());
    out.via.ext.ptr = data;
    bytes += packed.size();
  } else {
    unconvertible(value, item,
                  "; seppo carries None, bool, int, float, str, bytes, list, "
                  "tuple and dict");
  }
  return out;
}

py::object decode(const msgpack::object& o, bool as_key) {
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
    case msgpack::type::EXT:
      return py::bytes(o.via.ext.ptr, o.via.ext.size);
    case msgpack::type::ARRAY: {
      // A map key must be hashable: an array there becomes a tuple.
      if (as_key) {
        py::tuple t(o.via.array.size);
        for (std::uint32_t i = 0; i < o.via.array.size; ++i)
          t[i] = decode(o.via.array.ptr[i], true);
        return t;
      }
      py::list l(o.via.array.size);
      for (std::uint32_t i = 0; i < o.via.array.size; ++i) {
        PyList_SET_ITEM(l.ptr(), i, decode(o.via.array.ptr[i], false).release().ptr());
      }
      return l;
    }
    case msgpack::type::MAP: {
      py::dict d;
      for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
        d[decode(o.via.map.ptr[i].key, true)] = decode(o.via.map.ptr[i].val, false);
      }
      return d;
    }
  }
  return py::none();
}

}  // namespace

msgpack::object to_msgpack(py::handle value, msgpack::zone& zone, const Item& item,
                           std::size_t& bytes) {
  return convert(value, zone, item, bytes, 0);
}

py::object from_msgpack(const msgpack::object& object) {
  return decode(object, false);
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
    const py::tuple args = py::tuple(decode(o.via.array.ptr[0], false));
    if (o.via.array.ptr[1].type == msgpack::type::NIL) return function(*args);
    const py::dict kwargs = decode(o.via.array.ptr[1], false);
    return function(*args, **kwargs);
  }
  return function(decode(item, false));
}

}  // namespace seppo::python
