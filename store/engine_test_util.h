// Helpers shared by the engine's tests and benchmarks.
#ifndef STRATA_STORE_ENGINE_TEST_UTIL_H_
#define STRATA_STORE_ENGINE_TEST_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "store/common/chunk_key.h"
#include "store/common/namespace.h"
#include "store/engine.h"

namespace strata::store::testing {

// A namespace whose chunks are `chunk_kib` KiB: 1 layer, 1 KV head, fp16,
// head_dim 64, tokens_per_chunk = chunk_kib * 4.
inline NamespaceSpec SmallSpec(uint32_t chunk_kib = 4, std::string model = "test-model") {
  NamespaceSpec spec;
  spec.model_id = std::move(model);
  spec.num_layers = 1;
  spec.num_kv_heads = 1;
  spec.head_dim = 64;
  spec.dtype = DType::kFloat16;
  spec.tokens_per_chunk = chunk_kib * 4;  // 2 (k|v) * 64 dims * 2 bytes = 256 B per token
  return spec;
}

// A deterministic key for test number `i` (not a real key chain).
inline ChunkKey TestKey(uint64_t i, uint64_t salt = 0) {
  ChunkKey k;
  uint64_t x = i * 0x9E3779B97F4A7C15ull + salt * 0xD1B54A32D192ED03ull + 1;
  for (size_t j = 0; j < ChunkKey::kSize; j += 8) {
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    std::memcpy(k.bytes.data() + j, &x, 8);
  }
  return k;
}

// Payload bytes determined by the key, so any reader can verify them.
inline void FillPayload(const ChunkKey& key, std::span<std::byte> out) {
  uint64_t x;
  std::memcpy(&x, key.bytes.data(), 8);
  x |= 1;
  size_t i = 0;
  for (; i + 8 <= out.size(); i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(out.data() + i, &x, 8);
  }
  for (; i < out.size(); ++i) out[i] = static_cast<std::byte>(i);
}

inline std::vector<std::byte> Payload(const ChunkKey& key, size_t size) {
  std::vector<std::byte> v(size);
  FillPayload(key, v);
  return v;
}

// Puts TestKey(i) with its Payload (of `chunk` bytes), under TestKey(*parent).
inline absl::Status PutTestKey(Engine& engine, uint32_t ns, uint64_t i, size_t chunk,
                               std::optional<uint64_t> parent = {}) {
  std::optional<ChunkKey> p;
  if (parent) p = TestKey(*parent);
  return engine.Put(ns, TestKey(i), p, Payload(TestKey(i), chunk));
}

// OK when TestKey(i) reads back with exactly its Payload.
inline absl::Status VerifyTestKey(Engine& engine, uint32_t ns, uint64_t i, size_t chunk) {
  std::vector<std::byte> out(chunk);
  absl::Status s = engine.Get(ns, TestKey(i), out);
  if (s.ok() && out != Payload(TestKey(i), chunk)) return absl::InternalError("wrong bytes");
  return s;
}

}  // namespace strata::store::testing

#endif  // STRATA_STORE_ENGINE_TEST_UTIL_H_
