// Helpers of the host APIs that lay a plan out in a device workspace:
// 256-byte aligned regions, alignment checks and copies into the host image
// that one cudaMemcpyAsync uploads.
#ifndef STRATA_KERNELS_WORKSPACE_UPLOAD_H_
#define STRATA_KERNELS_WORKSPACE_UPLOAD_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

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

}  // namespace strata::kernels::internal

#endif  // STRATA_KERNELS_WORKSPACE_UPLOAD_H_
