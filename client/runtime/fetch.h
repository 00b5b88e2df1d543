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
// Fetch loads straight into the slots, so the pool's SlotMemory must be host
// accessible. A pool on device memory is fetched by a DeviceFetcher
// (device_fetch.h, GPU builds only), which stages through pinned host memory
// and is built from the same parts: ReserveFetch (steps 1-3) and
// FinishFetch (step 5).
#ifndef STRATA_CLIENT_RUNTIME_FETCH_H_
#define STRATA_CLIENT_RUNTIME_FETCH_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
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
  // Where a load's time went, from its start (zero when not measured): the
  // loaded bytes all in their slots, and all verified.
  absl::Duration copied_after;
  absl::Duration verified_after;
};

// Fetches `keys` (one key chain from its first chunk) of namespace `ns` into
// `pool`. Errors only for bad input: InvalidArgument when the pool's chunk
// or layer size differs from the namespace's; FailedPrecondition when the
// pool's memory is not host accessible (use a DeviceFetcher). Transfer
// failures are reported in the result (recompute), never as garbage in a
// ready slot. Thread-safe as its parts are (Client and ChunkPool are).
absl::StatusOr<FetchResult> Fetch(client::Client& client, const client::Namespace& ns,
                                  ChunkPool& pool, std::span<const ChunkKey> keys,
                                  const FetchOptions& options = {});

// --- The parts of a fetch, for loaders with their own step 4 --------------

// Steps 1-3 done; the slots to load are the caller's until FinishFetch.
struct FetchReservation {
  // slots: the pool hits, held for the caller; stop_reason: why fewer slots
  // than the store's cached prefix were reserved, if so.
  FetchResult result;
  size_t num_keys = 0;  // keys.size() of the fetch
  // keys[result.slots.size() ..], as many as were reserved, each with its
  // slot (state loading) at the same index.
  std::vector<ChunkKey> load_keys;
  std::vector<SlotId> loading;
};

// Steps 1-3 of Fetch for any pool: the prefix in the pool, one lookup, and
// slots (loading) for at most `max_load` chunks of the store's cached prefix
// (stop_reason ResourceExhausted when the limit cut it). Errors as Fetch,
// except that the pool's memory may be anywhere.
absl::StatusOr<FetchReservation> ReserveFetch(client::Client& client, const client::Namespace& ns,
                                              ChunkPool& pool, std::span<const ChunkKey> keys,
                                              size_t max_load = SIZE_MAX);

// Step 5: the first `verified` loading slots (their bytes checked) become
// ready, held once for the caller, and join the result; the others are freed
// and `failure`, if not OK, becomes the stop reason. REQUIRES: nothing
// writes the loading slots any more (their transfers and copies ended).
FetchResult FinishFetch(ChunkPool& pool, FetchReservation reservation, size_t verified,
                        absl::Status failure);

}  // namespace strata::runtime

#endif  // STRATA_CLIENT_RUNTIME_FETCH_H_
