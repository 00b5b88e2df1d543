#include "store/cluster/placement.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <utility>

namespace strata::cluster {
namespace {

// a outranks b: higher score, then smaller node id.
bool Outranks(uint64_t score_a, std::string_view id_a, uint64_t score_b, std::string_view id_b) {
  if (score_a != score_b) return score_a > score_b;
  return id_a < id_b;
}

}  // namespace

uint64_t RendezvousScore(std::string_view node_id, const ChunkKey& key) {
  // node_id || key in one buffer: one-shot XXH3 is faster than streaming.
  char small[256];
  std::string large;
  char* buf = small;
  const size_t size = node_id.size() + ChunkKey::kSize;
  if (size > sizeof(small)) {
    large.resize(size);
    buf = large.data();
  }
  std::memcpy(buf, node_id.data(), node_id.size());
  std::memcpy(buf + node_id.size(), key.bytes.data(), ChunkKey::kSize);
  return XXH3_64bits(buf, size);
}

size_t PlacePrimary(const ChunkKey& key, std::span<const std::string> node_ids) {
  size_t best = 0;
  uint64_t best_score = RendezvousScore(node_ids[0], key);
  for (size_t i = 1; i < node_ids.size(); ++i) {
    const uint64_t s = RendezvousScore(node_ids[i], key);
    if (Outranks(s, node_ids[i], best_score, node_ids[best])) {
      best = i;
      best_score = s;
    }
  }
  return best;
}

std::vector<size_t> PlaceReplicas(const ChunkKey& key, std::span<const std::string> node_ids,
                                  size_t replicas) {
  const size_t n = std::min(replicas, node_ids.size());
  if (n == 0) return {};
  if (n == 1) return {PlacePrimary(key, node_ids)};
  std::vector<std::pair<uint64_t, size_t>> scored;
  scored.reserve(node_ids.size());
  for (size_t i = 0; i < node_ids.size(); ++i) {
    scored.emplace_back(RendezvousScore(node_ids[i], key), i);
  }
  auto before = [&](const std::pair<uint64_t, size_t>& a, const std::pair<uint64_t, size_t>& b) {
    return Outranks(a.first, node_ids[a.second], b.first, node_ids[b.second]);
  };
  std::partial_sort(scored.begin(), scored.begin() + n, scored.end(), before);
  std::vector<size_t> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = scored[i].second;
  return out;
}

}  // namespace strata::cluster
