// Fuzzes the canonical namespace decoder (store/common/namespace.h):
// FromCanonicalBytes on any bytes returns a spec or InvalidArgument. A spec
// it accepts is valid, encodes back to exactly the input, and has a chunk
// layout within the documented bound.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

#include "store/common/namespace.h"

namespace {

void Check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "namespace_fuzzer: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using strata::NamespaceSpec;
  const std::span<const uint8_t> bytes(data, size);
  absl::StatusOr<NamespaceSpec> spec = NamespaceSpec::FromCanonicalBytes(bytes);
  if (!spec.ok()) {
    Check(spec.status().code() == absl::StatusCode::kInvalidArgument,
          "a decode error other than InvalidArgument");
    return 0;
  }
  Check(spec->Validate().ok(), "decoded a spec that Validate refuses");
  Check(spec->CanonicalBytes() == std::vector<uint8_t>(bytes.begin(), bytes.end()),
        "decoded spec does not encode back to the input");
  const strata::ChunkLayout layout(*spec);
  Check(layout.chunk_bytes() > 0 && layout.chunk_bytes() <= NamespaceSpec::kMaxChunkBytes,
        "chunk size out of bounds");
  Check(layout.layer_bytes() * spec->num_layers == layout.chunk_bytes(), "layer size");
  return 0;
}
