#include "client/python/device_array.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace py = pybind11;

namespace strata::python {
namespace {

absl::Status Bad(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("__cuda_array_interface__: ", what));
}

bool IsInt(py::handle h) { return PyLong_Check(h.ptr()) && !PyBool_Check(h.ptr()); }

// A tuple of non-negative ints.
absl::StatusOr<std::vector<int64_t>> Ints(py::handle h, absl::string_view field, bool allow_negative) {
  if (!PyTuple_Check(h.ptr())) return Bad(absl::StrCat("`", field, "` must be a tuple of ints"));
  std::vector<int64_t> out;
  for (py::handle item : py::reinterpret_borrow<py::tuple>(h)) {
    if (!IsInt(item)) return Bad(absl::StrCat("`", field, "` must be a tuple of ints"));
    const int64_t v = item.cast<int64_t>();
    if (v < 0 && !allow_negative) {
      return Bad(absl::StrCat("`", field, "` holds a negative value"));
    }
    out.push_back(v);
  }
  return out;
}

// The item size of a numpy-style typestr: "<f2", "|u1", "<V2", ...
absl::StatusOr<size_t> ItemSize(py::handle h) {
  if (!PyUnicode_Check(h.ptr())) return Bad("`typestr` must be a string");
  const std::string s = h.cast<std::string>();
  size_t size = 0;
  if (s.size() < 3 || (s[0] != '<' && s[0] != '>' && s[0] != '|' && s[0] != '=') ||
      !absl::SimpleAtoi(absl::string_view(s).substr(2), &size) || size == 0) {
    return Bad(absl::StrCat("`typestr` \"", s, "\" is not <byte order><kind><item size>"));
  }
  return size;
}

absl::StatusOr<std::optional<DeviceArray>> FromInterface(py::handle iface) {
  if (!PyDict_Check(iface.ptr())) return Bad("not a dict");
  py::dict d = py::reinterpret_borrow<py::dict>(iface);
  for (const char* field : {"shape", "typestr", "data", "version"}) {
    if (!d.contains(field)) return Bad(absl::StrCat("no `", field, "`"));
  }
  if (!IsInt(d["version"])) return Bad("`version` must be an int");
  const int64_t version = d["version"].cast<int64_t>();
  if (version != 2 && version != 3) {
    return Bad(absl::StrCat("version ", version, " is not supported (2 or 3)"));
  }
  if (d.contains("mask") && !d["mask"].is_none()) return Bad("masked arrays are not supported");
  auto shape = Ints(d["shape"], "shape", /*allow_negative=*/false);
  if (!shape.ok()) return shape.status();
  auto itemsize = ItemSize(d["typestr"]);
  if (!itemsize.ok()) return itemsize.status();
  py::handle data = d["data"];
  if (!PyTuple_Check(data.ptr()) || py::len(data) != 2 ||
      !IsInt(py::reinterpret_borrow<py::tuple>(data)[0]) ||
      !PyBool_Check(py::reinterpret_borrow<py::tuple>(data)[1].ptr())) {
    return Bad("`data` must be (pointer: int, read_only: bool)");
  }
  py::tuple pair = py::reinterpret_borrow<py::tuple>(data);
  DeviceArray a;
  a.ptr = pair[0].cast<uintptr_t>();
  a.readonly = pair[1].cast<bool>();
  // Packed row-major strides, checked where the interface gives strides.
  size_t bytes = *itemsize;
  for (int64_t n : *shape) bytes *= static_cast<size_t>(n);
  a.bytes = bytes;
  if (d.contains("strides") && !d["strides"].is_none()) {
    auto strides = Ints(d["strides"], "strides", /*allow_negative=*/true);
    if (!strides.ok()) return strides.status();
    if (strides->size() != shape->size()) return Bad("`strides` and `shape` differ in length");
    int64_t expected = static_cast<int64_t>(*itemsize);
    for (size_t i = shape->size(); i-- > 0;) {
      if ((*shape)[i] > 1 && (*strides)[i] != expected) {
        return absl::InvalidArgumentError("the device array is not C-contiguous");
      }
      expected *= (*shape)[i];
    }
  }
  if (a.ptr == 0 && a.bytes > 0) return Bad("a null pointer");
  // Version 3's stream: absent or None, nothing to wait for; 1 and 2 the
  // default streams; 0 is not allowed; anything else a stream handle.
  if (version == 3 && d.contains("stream") && !d["stream"].is_none()) {
    py::handle s = d["stream"];
    if (!IsInt(s)) return Bad("`stream` must be an int or None");
    const uintptr_t v = s.cast<uintptr_t>();
    if (v == 0) return Bad("`stream` 0 is ambiguous (use 1 or 2 for the default streams)");
    if (v == 1) {
      a.stream_kind = StreamKind::kLegacy;
    } else if (v == 2) {
      a.stream_kind = StreamKind::kPerThread;
    } else {
      a.stream_kind = StreamKind::kHandle;
      a.stream = v;
    }
  }
  return std::optional<DeviceArray>(a);
}

// A torch tensor with is_cuda True (torch's own __cuda_array_interface__
// refuses bfloat16 and tensors that require grad, so torch is asked
// directly).
absl::StatusOr<std::optional<DeviceArray>> FromTorch(py::handle t) {
  if (!t.attr("is_contiguous")().cast<bool>()) {
    return absl::InvalidArgumentError("the CUDA tensor is not contiguous (call .contiguous())");
  }
  DeviceArray a;
  a.ptr = t.attr("data_ptr")().cast<uintptr_t>();
  a.bytes = t.attr("nbytes").cast<size_t>();
  py::object device = t.attr("device");
  py::object index = device.attr("index");
  a.device = index.is_none() ? -1 : index.cast<int>();
  a.stream_kind = StreamKind::kTorchCurrent;
  if (a.ptr == 0 && a.bytes > 0) return absl::InvalidArgumentError("the CUDA tensor has no storage");
  return std::optional<DeviceArray>(a);
}

}  // namespace

absl::StatusOr<std::optional<DeviceArray>> DescribeDeviceArray(py::handle obj) {
  if (py::hasattr(obj, "is_cuda") && py::hasattr(obj, "data_ptr")) {
    if (!obj.attr("is_cuda").cast<bool>()) return std::optional<DeviceArray>();
    return FromTorch(obj);
  }
  // hasattr swallows the AttributeError an object raises to say "not on a
  // GPU"; other exceptions of the property propagate.
  if (!py::hasattr(obj, "__cuda_array_interface__")) return std::optional<DeviceArray>();
  return FromInterface(obj.attr("__cuda_array_interface__"));
}

}  // namespace strata::python
