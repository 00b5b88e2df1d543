// Building blocks shared by the policies of this package: compact per-entry
// records addressed by 32-bit slots, and recency stamps from the injected
// Clock. Internal to eviction/; nothing outside the package includes it.
#ifndef STRATA_EVICTION_ENTRY_TABLE_H_
#define STRATA_EVICTION_ENTRY_TABLE_H_

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/time/time.h"
#include "eviction/eviction_policy.h"
#include "store/common/clock.h"

namespace strata::eviction::internal {

// Index of a record in an EntryTable. 32 bits, not a pointer, keep links and
// index slots small.
using Slot = uint32_t;
inline constexpr Slot kNoSlot = std::numeric_limits<Slot>::max();

// Records are packed to 4-byte alignment so that a 64-bit field does not pad
// the record to a multiple of 8 (a 20-byte record would otherwise take 24).
// Read and write their fields by value; never bind a reference to one.
#pragma pack(push, 4)

// When an entry was last used: the injected clock's time and a counter that
// orders the stamps taken at one and the same time (in call order).
struct Recency {
  int64_t time_ns = 0;  // absl::ToUnixNanos of Clock::Now()
  uint32_t seq = 0;     // 0 for the first stamp at time_ns, then 1, 2, ...
};

#pragma pack(pop)

// Issues Recency stamps. Not thread-safe (policies are externally serialised).
class RecencySource {
 public:
  // `clock` is not owned and must outlive this object.
  explicit RecencySource(Clock* clock) : clock_(clock) {}

  Recency Next() {
    const int64_t now = absl::ToUnixNanos(clock_->Now());
    if (now == last_ns_) {
      ++seq_;
    } else {
      last_ns_ = now;
      seq_ = 0;
    }
    return Recency{now, seq_};
  }

 private:
  Clock* const clock_;
  int64_t last_ns_ = std::numeric_limits<int64_t>::min();
  uint32_t seq_ = 0;
};

// Per-entry records of type `Node`, found by EntryId, addressed by Slot.
//
// `Node` must be default-constructible and trivially copyable with an
// `EntryId id` member. Records live in fixed blocks that are never moved or
// freed, so a `Node&` stays valid across Add() and Remove() (a removed slot is
// reused by a later Add()). Memory is held at the high-water mark of records.
//
// The id -> slot index stores only the 4-byte slot: its hash and equality read
// the id from the record. Cost per record: sizeof(Node), plus 5 bytes (slot +
// control byte) per hash-table bucket at a load factor of 7/16 .. 7/8, i.e.
// 5.7 .. 11.4 bytes.
//
// Thread-safety: none. Not copyable or movable (the index refers to `this`).
template <typename Node>
class EntryTable {
 public:
  EntryTable() : index_(0, SlotHash{this}, SlotEq{this}) {}
  EntryTable(const EntryTable&) = delete;
  EntryTable& operator=(const EntryTable&) = delete;

  // The slot holding `id`, or kNoSlot.
  Slot Find(EntryId id) const {
    auto it = index_.find(IdKey{id});
    return it == index_.end() ? kNoSlot : *it;
  }

  // Adds a default record for `id` and returns its slot.
  // REQUIRES: Find(id) == kNoSlot; fewer than 2^32 - 1 records.
  Slot Add(EntryId id) {
    Slot slot;
    if (free_head_ != kNoSlot) {
      slot = free_head_;
      free_head_ = static_cast<Slot>(at(slot).id);
    } else {
      if ((high_water_ & kBlockMask) == 0) {
        blocks_.push_back(std::make_unique<Node[]>(kBlockSize));
      }
      slot = high_water_++;
    }
    at(slot) = Node{};
    at(slot).id = id;
    index_.insert(slot);
    return slot;
  }

  // Drops the record in `slot`; the slot may be handed out again by Add().
  // REQUIRES: `slot` holds a record.
  void Remove(Slot slot) {
    index_.erase(slot);
    at(slot).id = free_head_;  // free slots are chained through `id`
    free_head_ = slot;
  }

  // REQUIRES: `slot` holds a record.
  Node& at(Slot slot) { return blocks_[slot >> kBlockBits][slot & kBlockMask]; }
  const Node& at(Slot slot) const { return blocks_[slot >> kBlockBits][slot & kBlockMask]; }

  // Number of records.
  size_t size() const { return index_.size(); }

 private:
  static constexpr int kBlockBits = 16;
  static constexpr Slot kBlockSize = Slot{1} << kBlockBits;
  static constexpr Slot kBlockMask = kBlockSize - 1;

  // Lookup key of the index: an id, as opposed to a slot.
  struct IdKey {
    EntryId id;
  };
  struct SlotHash {
    using is_transparent = void;
    size_t operator()(Slot slot) const {
      const EntryId id = table->at(slot).id;  // by value: the field may be misaligned
      return absl::Hash<EntryId>{}(id);
    }
    size_t operator()(IdKey key) const { return absl::Hash<EntryId>{}(key.id); }
    const EntryTable* table;
  };
  struct SlotEq {
    using is_transparent = void;
    bool operator()(Slot a, Slot b) const { return a == b; }
    bool operator()(Slot a, IdKey b) const { return table->at(a).id == b.id; }
    bool operator()(IdKey a, Slot b) const { return a.id == table->at(b).id; }
    const EntryTable* table;
  };

  std::vector<std::unique_ptr<Node[]>> blocks_;
  Slot high_water_ = 0;       // slots [0, high_water_) have been handed out
  Slot free_head_ = kNoSlot;  // most recently removed slot
  absl::flat_hash_set<Slot, SlotHash, SlotEq> index_;
};

// Orders slots of an EntryTable by their records' `recency`, oldest first;
// the slot breaks the (rare) tie of equal stamps, which a clock stepping back
// to a time it had already shown can produce. Keeping only slots in the
// ordered set (4 bytes each) instead of copies of the stamps costs a record
// read per comparison but keeps the set to about 4-8 bytes per member.
//
// REQUIRES: a record's `recency` does not change while its slot is in a set
// ordered by this comparator.
template <typename Node>
struct OlderFirst {
  bool operator()(Slot a, Slot b) const {
    const Recency x = table->at(a).recency;
    const Recency y = table->at(b).recency;
    if (x.time_ns != y.time_ns) return x.time_ns < y.time_ns;
    if (x.seq != y.seq) return x.seq < y.seq;
    return a < b;
  }
  const EntryTable<Node>* table;
};

}  // namespace strata::eviction::internal

#endif  // STRATA_EVICTION_ENTRY_TABLE_H_
