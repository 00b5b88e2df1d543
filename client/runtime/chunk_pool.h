// ChunkPool: the worker runtime's HBM tier. One SlotMemory allocation carved
// into fixed-size chunk slots (one chunk size per pool, i.e. per namespace),
// an index key -> slot, reference counts, and eviction through eviction/.
//
// Slot life:
//   free --Allocate--> loading --MarkReady--> ready --(evicted)--> free
//                         \--FailLoad--> free
// A loading slot is in the index (so a second fetch sees the key is on its
// way) but is never served: Acquire and Pin refuse it, and it is never
// evicted. Only the loader moves it on. A ready slot is evicted only when no
// sequence holds it (Acquire/Release) and no kernel uses it (Pin/Unpin).
// Private slots (AllocatePrivate: a sequence's partial trailing chunk) have no
// key, start ready and held once, are never evicted, and are freed by their
// last Release.
//
// Eviction order comes from an eviction::EvictionPolicy chosen by name
// (prefix-lru by default); a chunk's parent is the previous chunk of its key
// chain. Every key the pool has seen keeps a stable policy id (the policies
// expect ids never reused), so hints may name keys not yet resident:
// about 64 bytes per distinct key seen, for the life of the pool.
//
// Thread-safety: safe for concurrent use (one mutex). The slot bytes are not
// guarded: whoever loads a slot writes it while it is loading; readers use it
// while they hold or pin it.
#ifndef STRATA_CLIENT_RUNTIME_CHUNK_POOL_H_
#define STRATA_CLIENT_RUNTIME_CHUNK_POOL_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/runtime/slot_memory.h"
#include "eviction/eviction_policy.h"
#include "store/common/chunk_key.h"
#include "store/common/clock.h"

namespace strata::runtime {

using SlotId = int32_t;

enum class SlotState : uint8_t { kFree = 0, kLoading = 1, kReady = 2 };

// A scheduler's statement that `key` will be needed at `needed_at`.
struct KeyHint {
  ChunkKey key;
  absl::Time needed_at = absl::InfiniteFuture();
};

struct ChunkPoolStats {
  size_t slots = 0;
  size_t free = 0;
  size_t loading = 0;
  size_t ready = 0;     // keyed and ready (cached chunks)
  size_t private_slots = 0;
  size_t held = 0;      // slots held by at least one sequence
  size_t pinned = 0;    // slots pinned by at least one kernel use
  uint64_t evictions = 0;
};

class ChunkPool {
 public:
  struct Options {
    // Bytes of one chunk slot (the namespace's chunk_bytes). REQUIRES > 0.
    uint64_t chunk_bytes = 0;
    // Bytes of one layer slice; chunk_bytes must be a multiple. 0: one layer.
    uint64_t layer_bytes = 0;
    // An eviction::CreatePolicy name: "prefix-lru", "lru" or "scheduler".
    std::string policy = "prefix-lru";
    // Not owned; must outlive the pool. Null: the real clock.
    Clock* clock = nullptr;
  };

  // Takes `memory` and carves floor(memory.bytes() / chunk_bytes) slots.
  // InvalidArgument for a zero or inconsistent chunk or layer size, null
  // memory, memory smaller than one chunk, or an unknown policy name.
  static absl::StatusOr<std::unique_ptr<ChunkPool>> Create(const Options& options,
                                                           std::unique_ptr<SlotMemory> memory);
  ChunkPool(const ChunkPool&) = delete;
  ChunkPool& operator=(const ChunkPool&) = delete;
  ~ChunkPool();

  // --- Lookup ---------------------------------------------------------------
  // The slot indexed under `key` (loading or ready). NotFound when absent.
  absl::StatusOr<SlotId> Find(const ChunkKey& key) const;
  // The state of `slot`. InvalidArgument for an id out of range.
  absl::StatusOr<SlotState> State(SlotId slot) const;

  // --- Loading --------------------------------------------------------------
  // A free slot for `key`, state loading, evicting a ready unused chunk if the
  // pool is full. `parent` is the previous key of the chain (none for a first
  // chunk). AlreadyExists when `key` is indexed; ResourceExhausted (naming the
  // counts) when every slot is loading, held or pinned.
  absl::StatusOr<SlotId> Allocate(const ChunkKey& key, std::optional<ChunkKey> parent);
  // The slot's bytes were verified: it becomes ready and evictable. With
  // `hold`, the caller also holds it (as Acquire, in the same step, so that
  // it cannot be evicted in between). FailedPrecondition unless it is loading.
  absl::Status MarkReady(SlotId slot, bool hold = false);
  // The load failed: the slot is freed and its key unindexed (never served).
  // FailedPrecondition unless it is loading.
  absl::Status FailLoad(SlotId slot);

  // A slot with no key for a sequence's private (partial) chunk: ready, held
  // once, never evicted, freed by its last Release. ResourceExhausted as
  // Allocate.
  absl::StatusOr<SlotId> AllocatePrivate();

  // A private slot whose chunk is now full becomes the keyed chunk `key`
  // (ready, still held by its holders, evictable once released, served to
  // others). AlreadyExists when `key` is in the pool (the slot stays
  // private); FailedPrecondition unless the slot is private.
  absl::Status Publish(SlotId slot, const ChunkKey& key, std::optional<ChunkKey> parent);

  // A ready chunk found bad (its bytes failed a check): unindexed and
  // freed. FailedPrecondition while it is held or pinned, or not a keyed
  // ready chunk.
  absl::Status Discard(SlotId slot);

  // --- References -----------------------------------------------------------
  // A sequence holds a ready slot (an access for eviction order). Acquire by
  // key: NotFound when absent, FailedPrecondition while loading.
  absl::StatusOr<SlotId> Acquire(const ChunkKey& key);
  absl::Status Acquire(SlotId slot);
  // FailedPrecondition when the slot is not held.
  absl::Status Release(SlotId slot);
  // A kernel reads the slot until Unpin. FailedPrecondition unless ready
  // (Pin) or pinned (Unpin).
  absl::Status Pin(SlotId slot);
  absl::Status Unpin(SlotId slot);
  // Current counts; InvalidArgument for an id out of range.
  absl::StatusOr<int> HoldCount(SlotId slot) const;
  absl::StatusOr<int> PinCount(SlotId slot) const;

  // --- Bytes ----------------------------------------------------------------
  // The slot's bytes (device pointer for device memory). InvalidArgument for an
  // id out of range. Pointers are stable for the pool's life.
  absl::StatusOr<std::byte*> SlotBase(SlotId slot) const;
  // Layer `layer`'s slice of the slot. InvalidArgument for a layer out of range.
  absl::StatusOr<std::byte*> LayerSlice(SlotId slot, uint32_t layer) const;
  // The slot's bytes for host code. FailedPrecondition for device memory.
  absl::StatusOr<std::span<std::byte>> HostBytes(SlotId slot) const;

  // --- Scheduler hints (passed to the policy, keys mapped to its ids) -------
  void OnHints(std::span<const KeyHint> hints);
  void BeginHints();
  void AddHints(std::span<const KeyHint> hints);
  bool EndHints(size_t budget);

  // --- Capacity -------------------------------------------------------------
  // True when no slot is free (an Allocate must evict, or fail).
  bool full() const;
  size_t capacity() const { return num_slots_; }
  uint64_t chunk_bytes() const { return chunk_bytes_; }
  uint64_t layer_bytes() const { return layer_bytes_; }
  uint32_t num_layers() const { return static_cast<uint32_t>(chunk_bytes_ / layer_bytes_); }
  bool host_accessible() const { return memory_->host_accessible(); }
  std::string_view policy_name() const;
  ChunkPoolStats Stats() const;

 private:
  struct Slot {
    SlotState state = SlotState::kFree;
    bool is_private = false;
    int holds = 0;
    int pins = 0;
    ChunkKey key;
    eviction::EntryId entry = eviction::kNoEntry;
  };

  ChunkPool(const Options& options, std::unique_ptr<SlotMemory> memory,
            std::unique_ptr<eviction::EvictionPolicy> policy);

  absl::Status CheckSlot(SlotId slot) const;
  eviction::EntryId EntryFor(const ChunkKey& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<eviction::HintedEntry> ToEntries(std::span<const KeyHint> hints)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A free slot, evicting if needed; ResourceExhausted when none can be had.
  absl::StatusOr<SlotId> TakeFreeSlot() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FreeSlot(SlotId slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Gives `slot` the key `key` (its policy id, its parent's, the index).
  void IndexKey(SlotId slot, const ChunkKey& key, std::optional<ChunkKey> parent)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status AcquireLocked(SlotId slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  const std::unique_ptr<SlotMemory> memory_;
  const uint64_t chunk_bytes_;
  const uint64_t layer_bytes_;
  const size_t num_slots_;
  Clock* const clock_;

  mutable absl::Mutex mu_;
  std::unique_ptr<eviction::EvictionPolicy> policy_ ABSL_GUARDED_BY(mu_);
  std::vector<Slot> slots_ ABSL_GUARDED_BY(mu_);
  std::vector<SlotId> free_ ABSL_GUARDED_BY(mu_);  // free slots, lowest last
  absl::flat_hash_map<ChunkKey, SlotId> index_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<ChunkKey, eviction::EntryId> entry_ids_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<eviction::EntryId, SlotId> entry_slots_ ABSL_GUARDED_BY(mu_);  // ready keyed slots
  // Parent id of each key allocated (the chain link given to the policy).
  absl::flat_hash_map<eviction::EntryId, eviction::EntryId> parent_of_ ABSL_GUARDED_BY(mu_);
  uint64_t evictions_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace strata::runtime

#endif  // STRATA_CLIENT_RUNTIME_CHUNK_POOL_H_
