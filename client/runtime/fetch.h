// Fetch: brings the cached prefix of a request's key chain into a ChunkPool.
//
// Sequencing, for keys k[0..n):
//  1. pool hits: the longest prefix already ready in the pool (no transfer);
//  2. one batched Client::Lookup of the rest: the store's cached prefix of it;
//  3. a slot per chunk of that prefix (state loading; eviction may make room);
//  4. one Client::Load per run of consecutive slots into the slots' bytes,
//     layer by layer (FetchOptions::on_layer sees layer l once every loaded
//     chunk has it);
//  5. Wait(): chunks whose load verified become ready; from the first failed
//     load on, every slot is freed (after its transfer ended: nothing lands
//     in a freed slot) and the prefix stops there.
// The result is the usable prefix; the caller recomputes the rest. Nothing
// unverified is ever served.
//
// This version loads into host memory (the pool's SlotMemory must be host
// accessible): the device copy path comes with the GPU runtime.
#ifndef STRATA_CLIENT_RUNTIME_FETCH_H_
#define STRATA_CLIENT_RUNTIME_FETCH_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/client.h"
#include "client/runtime/chunk_pool.h"
#include "store/common/chunk_key.h"

namespace strata::runtime {

struct FetchOptions {
  // Runs once layer `layer` of every chunk being loaded is in its slot (its
  // bytes not yet verified; the result says which chunks were). On an
  // internal thread of the client; keep it short. Not called when nothing
  // is loaded, nor for layers a failed load never delivered.
  std::function<void(uint32_t layer)> on_layer;
};

struct FetchResult {
  // Slots of keys[0 .. slots.size()), in chain order, ready and each held
  // once for the caller (release with ChunkPool::Release, e.g. after a
  // SequenceTree took its own holds).
  std::vector<SlotId> slots;
  size_t pool_hits = 0;  // leading chunks found in the pool
  size_t loaded = 0;     // chunks loaded from the store and verified
  // True when slots.size() < keys.size(): the caller must compute the K/V of
  // keys[slots.size() ..] itself.
  bool recompute = false;
  // Why the prefix stopped short of what the store reported: a failed lookup
  // or load (e.g. Unavailable when the node died), or a slot that could not
  // be had (ResourceExhausted, or AlreadyExists while another fetch loads
  // that chunk). OK when the store simply has no more of the chain.
  absl::Status stop_reason;
};

// Fetches `keys` (one key chain from its first chunk) of namespace `ns` into
// `pool`. Errors only for bad input: InvalidArgument when the pool's chunk
// or layer size differs from the namespace's; FailedPrecondition when the
// pool's memory is not host accessible. Transfer failures are reported in
// the result (recompute), never as garbage in a ready slot.
// Thread-safe as its parts are (Client and ChunkPool are).
absl::StatusOr<FetchResult> Fetch(client::Client& client, const client::Namespace& ns,
                                  ChunkPool& pool, std::span<const ChunkKey> keys,
                                  const FetchOptions& options = {});

}  // namespace strata::runtime

#endif  // STRATA_CLIENT_RUNTIME_FETCH_H_
