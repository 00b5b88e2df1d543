// DeviceFetcher: fetches a request's key chain into a ChunkPool on device
// memory (the HBM tier), layer by layer, so that layer l of the model waits
// for layer l's bytes only.
//
// Sequencing (fetch.h's steps, with step 4 staged):
//  1-3. ReserveFetch: pool hits, one lookup, a loading slot per chunk of the
//       store's cached prefix (at most staging_bytes / chunk_bytes of them);
//  4.   one Client::Load of those chunks into the fetcher's pinned staging
//       buffer; as layer l lands (the client's on_layer callback, which only
//       enqueues), its slice of every chunk is copied to the chunk's slot on
//       the fetcher's copy stream (one pitched copy per run of consecutive
//       slots) and an event is recorded behind the copies;
//  5.   Wait(): the load's checksum verdict; verified slots become ready,
//       otherwise every loaded slot is freed (after the copy stream drained,
//       so nothing lands in a freed slot) and the caller recomputes them.
// The load is one transfer, so its verdict is all or nothing for the loaded
// chunks (pool hits stay usable either way).
//
// Built only with a CUDA toolkit. Streams are passed as CUstream_st* (what
// cudaStream_t is) so that this header carries no CUDA headers.
#ifndef STRATA_CLIENT_RUNTIME_DEVICE_FETCH_H_
#define STRATA_CLIENT_RUNTIME_DEVICE_FETCH_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/client.h"
#include "client/runtime/chunk_pool.h"
#include "client/runtime/fetch.h"
#include "store/common/chunk_key.h"

struct CUstream_st;

namespace strata::runtime {

// One fetch in flight into a device pool. Thread-safe: WaitLayer may be
// called from any thread, any number of times; Wait() once.
//
// Until Wait() returns, the loaded slots are loading: a compute stream may
// read layer l of them once WaitLayer(l) returned OK, but what it computes
// is provisional; if Wait() then reports fewer loaded chunks than slots()
// holds, those results must be discarded and the chunks recomputed.
class LayerwiseDeviceLoad {
 public:
  virtual ~LayerwiseDeviceLoad() = default;

  // The slots of the prefix being fetched, in chain order: the pool hits
  // (ready, held), then the slots being loaded. Constant for the load's life.
  virtual std::span<const SlotId> slots() const = 0;

  // Makes `stream` wait (cudaStreamWaitEvent) until layer `layer` of every
  // loaded slot is in HBM; returns without blocking on the copy, but blocks
  // the calling thread until the layer has arrived in the staging buffer
  // and its copy is enqueued. OK at once when nothing is loaded. The
  // transfer's error when it failed before the layer arrived; InvalidArgument
  // for a layer out of range.
  virtual absl::Status WaitLayer(uint32_t layer, CUstream_st* stream) = 0;
  // As above, but the calling thread waits until the copy completed.
  virtual absl::Status WaitLayer(uint32_t layer) = 0;

  // Blocks until the load ended and its bytes were checked; returns the
  // fetch's result (as Fetch: slots ready and held once for the caller,
  // recompute and stop_reason). Call once; the fetcher takes its next load
  // after this. A load destroyed without Wait() waits and releases its slots.
  virtual FetchResult Wait() = 0;
};

// Owns a pinned staging buffer and a copy stream on one device. Thread-safe;
// one load at a time (Start refuses another until the previous Wait()).
class DeviceFetcher {
 public:
  struct Options {
    int device = 0;
    // Pinned staging: a fetch loads at most staging_bytes / chunk_bytes
    // chunks (the rest are left to recompute). REQUIRES > 0.
    size_t staging_bytes = 0;
    // Same host (the client reads the node's pool through shared memory):
    // register the client's mapping of the pool with CUDA once and copy the
    // leased chunks straight from it into their slots, every layer enqueued
    // at once, host threads checking checksums meanwhile; no staging limit.
    // Falls back to staging (logged once) when registration fails.
    // REQUIRES then: the fetcher is destroyed before the client.
    bool same_host_direct = true;
    // Threads checking a same-host load's checksums; 0: half the cores (at
    // most 16), leaving the rest to the caller and the node.
    size_t verify_threads = 0;
    // Same host: each copy moves at least this many bytes of a chunk (whole
    // groups of consecutive layers, which share one event: layer l is then
    // usable once its group arrived). 0: one layer per copy.
    uint64_t min_copy_bytes = 0;
  };

  // InvalidArgument for 0 staging bytes; the CUDA error when the device,
  // stream or pinned memory cannot be had.
  static absl::StatusOr<std::unique_ptr<DeviceFetcher>> Create(const Options& options);
  virtual ~DeviceFetcher() = default;

  // Same host: registers `client`'s mapping of the node's pool with CUDA now
  // (it pins the whole mapping: seconds for many GiB), so that the first
  // load does not pay for it. OK when there is nothing to register (not on
  // the node's host, or same_host_direct off); the CUDA error otherwise, after
  // which loads use staging.
  virtual absl::Status Prepare(client::Client& client) = 0;

  // Starts fetching `keys` (one key chain from its first chunk) of `ns` into
  // `pool`. InvalidArgument when the pool's chunk or layer size differs from
  // the namespace's or staging cannot hold one chunk; FailedPrecondition when
  // the pool is host memory (use Fetch) or while this fetcher's previous load
  // has not finished Wait(). Transfer failures show in the load's result.
  // REQUIRES: `client`, `pool` and this fetcher outlive the returned load.
  virtual absl::StatusOr<std::unique_ptr<LayerwiseDeviceLoad>> Start(
      client::Client& client, const client::Namespace& ns, ChunkPool& pool,
      std::span<const ChunkKey> keys) = 0;
};

}  // namespace strata::runtime

#endif  // STRATA_CLIENT_RUNTIME_DEVICE_FETCH_H_
