// Helpers of the host APIs that lay a plan out in a device workspace:
// 256-byte aligned regions, alignment checks and copies into the host image
// that one cudaMemcpyAsync uploads.
#ifndef STRATA_KERNELS_WORKSPACE_UPLOAD_H_
#define STRATA_KERNELS_WORKSPACE_UPLOAD_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace strata::kernels::internal {

inline constexpr size_t kWorkspaceAlign = 256;

inline size_t AlignUp(size_t n) {
  return (n + kWorkspaceAlign - 1) / kWorkspaceAlign * kWorkspaceAlign;
}

inline bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Copies `v` into the host image at `offset`.
template <typename T>
void Put(std::vector<char>& image, size_t offset, const std::vector<T>& v) {
  if (!v.empty()) std::memcpy(image.data() + offset, v.data(), v.size() * sizeof(T));
}

// The checks every upload makes before it writes: a non-null, 256-byte
// aligned workspace of at least `needed` bytes, and 16-byte aligned chunk
// slices. InvalidArgument naming what is wrong.
inline absl::Status CheckUpload(const void* workspace, size_t workspace_bytes, size_t needed,
                                const std::vector<const void*>& pages) {
  if (workspace == nullptr || reinterpret_cast<uintptr_t>(workspace) % kWorkspaceAlign != 0) {
    return absl::InvalidArgumentError("workspace must be non-null and 256-byte aligned");
  }
  if (workspace_bytes < needed) {
    return absl::InvalidArgumentError(
        absl::StrCat("workspace has ", workspace_bytes, " bytes, the plan needs ", needed));
  }
  for (const void* p : pages) {
    if (!Aligned16(p)) return absl::InvalidArgumentError("chunk slice not 16-byte aligned");
  }
  return absl::OkStatus();
}

}  // namespace strata::kernels::internal

#endif  // STRATA_KERNELS_WORKSPACE_UPLOAD_H_
