// HotChunks: which chunk keys a client reads often enough to deserve extra
// replicas (the cluster client's rule for hot shared prefixes, such as a
// system prompt read by every worker).
//
// The rule, per key, over consecutive windows of `window`:
//   - a key turns hot as soon as `reads` reads fall in one window;
//   - a hot key stays hot while each window has at least reads / 2 reads
//     (hysteresis: a key near the threshold does not flap);
//   - it cools when a window ends with fewer, or passes with none.
// A hot key is placed on replicas + extra_replicas nodes (the next ones in
// rendezvous order): its readers spread over them and the first reader in a
// window copies it to those that lack it. A key that cools is routed to its
// R replicas again; its extra copies are not deleted but age out of the
// nodes' DRAM like any chunk nobody reads.
//
// Pure code with an injected clock; safe for concurrent use.
#ifndef STRATA_CLIENT_HOT_CHUNKS_H_
#define STRATA_CLIENT_HOT_CHUNKS_H_

#include <cstddef>
#include <cstdint>
#include <functional>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "store/common/chunk_key.h"

namespace strata::client {

struct HotChunkOptions {
  // Reads of one key within one window that make it hot; 0 turns the rule
  // off (no key is ever hot).
  uint32_t reads = 64;
  absl::Duration window = absl::Seconds(10);
  // Keys tracked at most; past it, cold keys of earlier windows are dropped
  // and, if none is, a new key is not tracked (it stays cold).
  size_t max_tracked = 65536;
  // The clock (default absl::Now).
  std::function<absl::Time()> now;
};

class HotChunks {
 public:
  explicit HotChunks(HotChunkOptions options);

  struct Read {
    bool hot = false;
    // How many reads of the key this window counted before this one (to
    // spread a hot key's reads over its replicas).
    uint64_t sequence = 0;
  };
  // Counts one read of `key`.
  Read RecordRead(const ChunkKey& key);
  // Whether `key` is hot now (counts nothing).
  bool IsHot(const ChunkKey& key);
  // True at most once per window for a hot key: the caller copies it to its
  // extra replicas.
  bool ClaimCopy(const ChunkKey& key);
  // Keys hot now.
  size_t HotCount();
  size_t tracked();

 private:
  struct Entry {
    absl::Time window_start;
    uint64_t count = 0;  // reads in the current window
    bool hot = false;
    bool copied = false;  // ClaimCopy'd in the current window
  };
  // Moves `e` to the window holding `now`, applying the rule at each end.
  void Roll(Entry& e, absl::Time now) const;

  const HotChunkOptions options_;
  absl::Mutex mu_;
  absl::flat_hash_map<ChunkKey, Entry> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace strata::client

#endif  // STRATA_CLIENT_HOT_CHUNKS_H_
