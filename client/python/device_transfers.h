// Loads into and saves from GPU memory for the `strata` module. Two
// implementations, one linked into each build of the module:
// - device_transfers_cuda.cc (//client/python:cuda/strata<suffix>): through
//   the client's GpuStager (client/gpu_transfer.h), a pinned staging buffer
//   per device, layer by layer;
// - device_transfers_cpu.cc (//client/python:strata<suffix>): refuses every
//   call (Unimplemented, naming the CUDA build).
// The header carries no CUDA or Python types.
#ifndef STRATA_CLIENT_PYTHON_DEVICE_TRANSFERS_H_
#define STRATA_CLIENT_PYTHON_DEVICE_TRANSFERS_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/client.h"
#include "client/python/device_array.h"
#include "store/common/chunk_key.h"

namespace strata::python {

// Thread-safe. Transfers on one device run one after another (they share
// the device's staging buffer); transfers on different devices overlap.
class DeviceTransfers {
 public:
  // The implementation linked into this build of the module.
  static std::unique_ptr<DeviceTransfers> Create();
  // OK when this build moves bytes to and from GPU memory; Unimplemented
  // (saying how to get a build that does) otherwise.
  static absl::Status Availability();
  virtual ~DeviceTransfers() = default;

  // Starts loading `keys` into `dest` (keys.size() x chunk bytes of device
  // memory). The returned transfer's WaitLayer(l) returns once layer l of
  // every chunk is on the device (usable from any stream); Wait() once
  // every byte is there and every checksum verified. Before it starts it
  // waits for the work queued on `dest`'s stream (DeviceArray::stream_kind).
  // InvalidArgument for a size that is not keys.size() x chunk bytes, a
  // read-only array or a pointer that is not device memory; Unavailable
  // when there is no usable GPU or driver; NotFound when a key is not stored
  // (nothing transferred). REQUIRES: `dest` stays allocated and unwritten
  // until Wait() returned.
  virtual absl::StatusOr<std::shared_ptr<client::Transfer>> Load(
      std::shared_ptr<client::Client> client, const client::Namespace& ns,
      std::vector<ChunkKey> keys, const DeviceArray& dest) = 0;

  // Starts saving `src` (keys.size() chunks of device memory) under `keys`
  // (after `parent`, if any). WaitLayer(l) waits for the whole save. The
  // same checks as Load, less read-only. REQUIRES: `src` stays allocated and
  // unchanged until Wait() returned.
  virtual absl::StatusOr<std::shared_ptr<client::Transfer>> Save(
      std::shared_ptr<client::Client> client, const client::Namespace& ns,
      std::vector<ChunkKey> keys, const DeviceArray& src, std::optional<ChunkKey> parent) = 0;
};

}  // namespace strata::python

#endif  // STRATA_CLIENT_PYTHON_DEVICE_TRANSFERS_H_
