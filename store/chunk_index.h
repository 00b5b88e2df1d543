// ChunkIndex: key -> entry map of a store node, with compact entries and
// stable ids that are never reused for another chunk.
#ifndef STRATA_STORE_CHUNK_INDEX_H_
#define STRATA_STORE_CHUNK_INDEX_H_

#include <cstdint>
#include <deque>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "eviction/eviction_policy.h"
#include "store/common/chunk_key.h"

namespace strata::store {

using eviction::EntryId;
using eviction::kNoEntry;

// One chunk known to the node. 72 bytes.
struct IndexEntry {
  enum State : uint8_t { kFree = 0, kWriting = 1, kCommitted = 2 };
  enum Flags : uint8_t {
    kInDram = 1,        // bytes in the DRAM pool at dram_offset
    kOnNvme = 2,        // persisted in the NVMe tier
    kFlushPending = 4,  // queued for write-back; pins the DRAM copy
    kPromoting = 8,     // being read from NVMe into dram_offset
    kPrefetched = 16,   // promoted ahead of a hinted job and not read yet
  };

  ChunkKey key;
  uint64_t checksum = 0;
  uint64_t dram_offset = 0;
  EntryId parent = kNoEntry;
  uint32_t size = 0;
  uint32_t generation = 0;
  uint32_t read_pins = 0;  // read leases and in-flight reads
  uint16_t ns = 0;
  uint8_t state = kFree;
  uint8_t flags = 0;

  bool has(uint8_t f) const { return (flags & f) != 0; }
  void set(uint8_t f, bool on) { flags = on ? (flags | f) : (flags & ~f); }
};

// Not thread-safe: the engine serialises calls. References returned by Get()
// stay valid until the entry is erased (storage is a deque).
class ChunkIndex {
 public:
  ChunkIndex();
  ChunkIndex(const ChunkIndex&) = delete;
  ChunkIndex& operator=(const ChunkIndex&) = delete;

  // kNoEntry when absent.
  EntryId Find(const ChunkKey& key) const;
  // REQUIRES: key absent. The new entry is in state kFree with no flags.
  EntryId Insert(const ChunkKey& key);
  // REQUIRES: id live.
  void Erase(EntryId id);
  // nullptr for ids that were erased.
  IndexEntry* Get(EntryId id);
  const IndexEntry* Get(EntryId id) const;

  size_t size() const { return set_.size(); }
  // Heap bytes held by the index itself (entries and hash set).
  size_t MemoryBytes() const;

  // Calls fn(id, entry) for every live entry.
  template <typename Fn>
  void ForEach(Fn fn) {
    for (uint32_t i = 0; i < entries_.size(); ++i) {
      if (entries_[i].state != IndexEntry::kFree) fn(MakeId(i), entries_[i]);
    }
  }

 private:
  static EntryId MakeId(uint32_t index, uint32_t generation) {
    return (uint64_t{generation} << 32) | index;
  }
  EntryId MakeId(uint32_t index) const { return MakeId(index, entries_[index].generation); }

  // Hash and equality over slot indices that look up keys in entries_, so
  // the set stores 4 bytes per entry; both accept a ChunkKey for lookups.
  struct Hash {
    using is_transparent = void;
    const std::deque<IndexEntry>* entries;
    size_t operator()(uint32_t i) const { return (*this)((*entries)[i].key); }
    size_t operator()(const ChunkKey& k) const { return absl::Hash<ChunkKey>()(k); }
  };
  struct Eq {
    using is_transparent = void;
    const std::deque<IndexEntry>* entries;
    const ChunkKey& K(uint32_t i) const { return (*entries)[i].key; }
    const ChunkKey& K(const ChunkKey& k) const { return k; }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return K(a) == K(b);
    }
  };

  std::deque<IndexEntry> entries_;
  std::vector<uint32_t> free_;
  absl::flat_hash_set<uint32_t, Hash, Eq> set_;
};

}  // namespace strata::store

#endif  // STRATA_STORE_CHUNK_INDEX_H_
