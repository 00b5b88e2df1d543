// Recognises GPU memory handed to the `strata` module without importing any
// GPU framework: a PyTorch CUDA tensor (through its own attributes:
// is_cuda, data_ptr(), is_contiguous(), nbytes, device.index) or any object
// with `__cuda_array_interface__` (versions 2 and 3: CuPy, Numba, ...).
#ifndef STRATA_CLIENT_PYTHON_DEVICE_ARRAY_H_
#define STRATA_CLIENT_PYTHON_DEVICE_ARRAY_H_

#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"

namespace strata::python {

// How the producer of a device array orders its work: the module waits for
// that work before it reads or writes the array.
enum class StreamKind : uint8_t {
  kNone = 0,     // nothing to wait for (the interface gave no stream)
  kHandle = 1,   // `stream` is a cudaStream_t (0: the legacy default stream)
  kLegacy = 2,   // the legacy default stream (interface value 1)
  kPerThread = 3,  // the per-thread default stream (interface value 2)
  kTorchCurrent = 4,  // torch's current stream on the tensor's device (asked at use)
};

// A C-contiguous range of device memory described by a Python object.
struct DeviceArray {
  uintptr_t ptr = 0;
  size_t bytes = 0;
  bool readonly = false;
  // The device the object claims (torch's device.index), -1 when it names
  // none; the pointer's own device decides.
  int device = -1;
  StreamKind stream_kind = StreamKind::kNone;
  uintptr_t stream = 0;
};

// Nothing (std::nullopt) when `obj` is not GPU memory (a host buffer, a CPU
// tensor); the array when it is; InvalidArgument when it is GPU memory the
// module cannot use (not C-contiguous, an interface version other than 2 or
// 3, a mask, malformed fields), the message saying which. Requires the GIL;
// may call into `obj` (attributes and methods), whose Python exceptions
// propagate as pybind11::error_already_set.
absl::StatusOr<std::optional<DeviceArray>> DescribeDeviceArray(pybind11::handle obj);

}  // namespace strata::python

#endif  // STRATA_CLIENT_PYTHON_DEVICE_ARRAY_H_
