// Rendezvous (highest-random-weight) placement of chunk keys on nodes.
//
// Every node gets a score for a key,
//
//   score(node_id, key) = XXH3_64bits(node_id bytes || the 32 key bytes), seed 0,
//
// and the key's replicas are the `replicas` nodes with the highest scores,
// best first (ties, which need a 64-bit collision, go to the smaller node id).
// The key is the last 32 bytes of the hashed input, so the concatenation is
// unambiguous. XXH3 is specified bit for bit (xxHash >= 0.8), so placement is
// the same in every process, on every platform and in any language with an
// XXH3 implementation (Python: xxhash.xxh3_64_intdigest(node_id + key)).
//
// Properties that follow, and that placement_test checks: a node that joins
// takes about 1/N of the keys and every key that moves, moves to it; a node
// that leaves gives away only its own keys; keys spread evenly; the first
// replica of R is the single replica of R = 1.
//
// Pure functions: no I/O, no state; safe for concurrent use.
#ifndef STRATA_STORE_CLUSTER_PLACEMENT_H_
#define STRATA_STORE_CLUSTER_PLACEMENT_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "store/common/chunk_key.h"

namespace strata::cluster {

// The rendezvous score of `key` on the node named `node_id`.
uint64_t RendezvousScore(std::string_view node_id, const ChunkKey& key);

// Indices into `node_ids` of the min(replicas, node_ids.size()) nodes that
// hold `key`, best first. Empty when there are no nodes or replicas is 0.
// REQUIRES: node ids are distinct.
std::vector<size_t> PlaceReplicas(const ChunkKey& key, std::span<const std::string> node_ids,
                                  size_t replicas);

// The single best node (PlaceReplicas with replicas = 1).
// REQUIRES: node_ids is not empty; node ids are distinct.
size_t PlacePrimary(const ChunkKey& key, std::span<const std::string> node_ids);

}  // namespace strata::cluster

#endif  // STRATA_STORE_CLUSTER_PLACEMENT_H_
