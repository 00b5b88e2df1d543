// Read-only access to a safetensors file (the Hugging Face weights format):
// an 8-byte little-endian header length, a JSON header naming each tensor's
// dtype, shape and byte range, then the bytes. The file is mapped, not read.
// Also a writer, for tests and tools that produce weights.
#ifndef STRATA_CLIENT_RUNTIME_SAFETENSORS_H_
#define STRATA_CLIENT_RUNTIME_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace strata::runtime {

struct TensorView {
  std::string dtype;            // "BF16", "F16", "F32", ...
  std::vector<int64_t> shape;
  std::span<const std::byte> bytes;
};

// Thread-safe to read concurrently.
class SafetensorsFile {
 public:
  // NotFound when the file does not exist; InvalidArgument (naming what is
  // wrong) for a file that is not a well-formed safetensors file: a header
  // too long or not JSON, a tensor whose byte range leaves the file or does
  // not match its shape and dtype.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  // NotFound naming the tensor when the file has none of that name.
  absl::StatusOr<TensorView> Get(std::string_view name) const;
  // As Get, and InvalidArgument unless it has this dtype and shape.
  absl::StatusOr<TensorView> Get(std::string_view name, std::string_view dtype,
                                 std::span<const int64_t> shape) const;
  std::vector<std::string> names() const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  std::map<std::string, TensorView, std::less<>> tensors_;
};

// Bytes per element of a safetensors dtype name; 0 for names not supported.
size_t SafetensorsDtypeBytes(std::string_view dtype);

// Writes `tensors` (name -> dtype, shape, bytes) to `path` (replaced).
// InvalidArgument when a tensor's bytes do not match its shape and dtype;
// the I/O error otherwise.
absl::Status WriteSafetensors(const std::string& path,
                              const std::map<std::string, TensorView>& tensors);

}  // namespace strata::runtime

#endif  // STRATA_CLIENT_RUNTIME_SAFETENSORS_H_
