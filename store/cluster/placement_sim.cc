#include "store/cluster/placement_sim.h"

#include <algorithm>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "store/cluster/placement.h"

namespace strata::cluster {
namespace {

// The `n` best of `scores` (index, score) among `candidates`, best first.
// Ties need a 64-bit collision; they go to the smaller index here, which is
// the smaller node id only by chance, so the check against PlaceReplicas
// would count such a key.
std::vector<size_t> Best(const std::vector<uint64_t>& scores, std::vector<size_t> candidates,
                         size_t n) {
  std::partial_sort(
      candidates.begin(), candidates.begin() + n, candidates.end(),
      [&](size_t a, size_t b) { return scores[a] != scores[b] ? scores[a] > scores[b] : a < b; });
  candidates.resize(n);
  return candidates;
}

}  // namespace

PlacementSimResult SimulatePlacement(const PlacementSimOptions& o) {
  // Ids 0 .. nodes-1 are the cluster; id `nodes` is the one that joins.
  std::vector<std::string> ids;
  for (size_t i = 0; i <= o.nodes; ++i) ids.push_back(absl::StrCat("node-", i));
  const std::vector<std::string> base_ids(ids.begin(), ids.end() - 1);
  std::vector<size_t> base, joined, left;
  for (size_t i = 0; i <= o.nodes; ++i) {
    joined.push_back(i);
    if (i < o.nodes) base.push_back(i);
    if (i > 0 && i < o.nodes) left.push_back(i);
  }
  std::vector<uint64_t> per_node(o.nodes, 0);
  std::vector<uint64_t> scores(o.nodes + 1);
  uint64_t moved_join = 0, moved_leave = 0;
  PlacementSimResult r;
  std::mt19937_64 rng(o.seed);
  for (size_t k = 0; k < o.keys; ++k) {
    ChunkKey key;
    for (size_t w = 0; w < ChunkKey::kSize; w += 8) {
      const uint64_t x = rng();
      for (size_t b = 0; b < 8; ++b) key.bytes[w + b] = static_cast<uint8_t>(x >> (8 * b));
    }
    for (size_t i = 0; i <= o.nodes; ++i) scores[i] = RendezvousScore(ids[i], key);
    const std::vector<size_t> before = Best(scores, base, o.replicas);
    for (size_t i : before) ++per_node[i];
    if (k % 4096 == 0) {
      ++r.checked;
      if (PlaceReplicas(key, base_ids, o.replicas) != before) ++r.mismatched;
    }
    const std::set<size_t> was(before.begin(), before.end());
    // One node joins.
    const std::vector<size_t> after_join = Best(scores, joined, o.replicas);
    const std::set<size_t> now_join(after_join.begin(), after_join.end());
    if (now_join != was) {
      ++moved_join;
      size_t kept = 0;
      for (size_t i : after_join) kept += was.contains(i);
      if (!now_join.contains(o.nodes) || kept != o.replicas - 1) ++r.join_moves_elsewhere;
    }
    // Node 0 leaves.
    const std::vector<size_t> after_leave = Best(scores, left, o.replicas);
    if (std::set<size_t>(after_leave.begin(), after_leave.end()) != was) {
      ++moved_leave;
      if (!was.contains(0)) ++r.leave_moves_elsewhere;
    }
  }
  const double mean = static_cast<double>(o.keys) * o.replicas / o.nodes;
  r.max_over_mean = *std::max_element(per_node.begin(), per_node.end()) / mean;
  r.min_over_mean = *std::min_element(per_node.begin(), per_node.end()) / mean;
  r.moved_on_join = static_cast<double>(moved_join) / o.keys;
  r.moved_on_leave = static_cast<double>(moved_leave) / o.keys;
  return r;
}

}  // namespace strata::cluster
