// Loads into and saves from GPU memory where UCX has no CUDA transport: the
// bytes are staged through a pinned host buffer, pipelined per layer (layer l
// is copied to the device while layer l+1 is still arriving).
//
// Built only with a CUDA toolkit (HAS_CUDA); device pointers are plain
// `void*` so that this header carries no CUDA types.
#ifndef STRATA_CLIENT_GPU_TRANSFER_H_
#define STRATA_CLIENT_GPU_TRANSFER_H_

#include <cstddef>
#include <memory>
#include <optional>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/client.h"

namespace strata::client {

// Owns a pinned staging buffer and a CUDA stream on one device. Not
// thread-safe: one load or save at a time per stager.
class GpuStager {
 public:
  // `staging_bytes`: the largest load or save (chunks x chunk bytes).
  // InvalidArgument for 0; Unavailable when the device or pinned memory
  // cannot be had (the CUDA error is in the message).
  static absl::StatusOr<std::unique_ptr<GpuStager>> Create(int device, size_t staging_bytes);
  virtual ~GpuStager() = default;

  // Loads `keys` into device memory at `device_dest` (keys.size() x chunk
  // bytes, the store's layout). `on_layer(l)` runs once layer l of every
  // chunk is on the device. Returns when everything is on the device and
  // every checksum verified; on error the device bytes are unspecified.
  // InvalidArgument when `device_dest` is not device memory of this
  // stager's device (or managed memory).
  virtual absl::Status LoadToDevice(Client& client, const Namespace& ns,
                                    std::span<const ChunkKey> keys, void* device_dest,
                                    std::function<void(uint32_t)> on_layer = nullptr) = 0;

  // Copies keys.size() chunks from `device_src` to the staging buffer and
  // saves them; returns once they are committed. InvalidArgument when
  // `device_src` is not device memory of this stager's device.
  virtual absl::Status SaveFromDevice(Client& client, const Namespace& ns,
                                      std::span<const ChunkKey> keys, const void* device_src,
                                      std::optional<ChunkKey> parent = std::nullopt) = 0;
};

}  // namespace strata::client

#endif  // STRATA_CLIENT_GPU_TRANSFER_H_
