// The CPU-only build of the module: GPU memory is refused.
#include "absl/status/status.h"
#include "client/python/device_transfers.h"

namespace strata::python {
namespace {

constexpr char kRefusal[] =
    "a CUDA tensor: this build of the strata module has no CUDA support "
    "(strata.cuda_supported is False). Use the CUDA build "
    "(bazel build //client/python:all with a CUDA toolkit, then "
    "bazel-bin/client/python/cuda/), or load into pinned host memory and copy";

class NoDeviceTransfers final : public DeviceTransfers {
 public:
  absl::StatusOr<std::shared_ptr<client::Transfer>> Load(std::shared_ptr<client::Client>,
                                                         const client::Namespace&,
                                                         std::vector<ChunkKey>,
                                                         const DeviceArray&) override {
    return Availability();
  }
  absl::StatusOr<std::shared_ptr<client::Transfer>> Save(std::shared_ptr<client::Client>,
                                                         const client::Namespace&,
                                                         std::vector<ChunkKey>,
                                                         const DeviceArray&,
                                                         std::optional<ChunkKey>) override {
    return Availability();
  }
};

}  // namespace

std::unique_ptr<DeviceTransfers> DeviceTransfers::Create() {
  return std::make_unique<NoDeviceTransfers>();
}

absl::Status DeviceTransfers::Availability() { return absl::UnimplementedError(kRefusal); }

}  // namespace strata::python
