#include "store/chunk_index.h"

#include <cassert>

namespace strata::store {

ChunkIndex::ChunkIndex() : set_(0, Hash{&entries_}, Eq{&entries_}) {}

EntryId ChunkIndex::Find(const ChunkKey& key) const {
  auto it = set_.find(key);
  return it == set_.end() ? kNoEntry : MakeId(*it);
}

EntryId ChunkIndex::Insert(const ChunkKey& key) {
  uint32_t index;
  if (!free_.empty()) {
    index = free_.back();
    free_.pop_back();
  } else {
    index = static_cast<uint32_t>(entries_.size());
    entries_.emplace_back();
  }
  IndexEntry& e = entries_[index];
  const uint32_t generation = e.generation;
  e = IndexEntry();
  e.generation = generation;
  e.key = key;
  e.state = IndexEntry::kWriting;  // callers set the real state next
  set_.insert(index);
  return MakeId(index);
}

void ChunkIndex::Erase(EntryId id) {
  IndexEntry* e = Get(id);
  assert(e != nullptr);
  const uint32_t index = static_cast<uint32_t>(id);
  set_.erase(index);
  e->state = IndexEntry::kFree;
  e->flags = 0;
  ++e->generation;  // old ids of this slot now resolve to nullptr
  free_.push_back(index);
}

IndexEntry* ChunkIndex::Get(EntryId id) {
  const uint32_t index = static_cast<uint32_t>(id);
  if (id == kNoEntry || index >= entries_.size()) return nullptr;
  IndexEntry& e = entries_[index];
  if (e.state == IndexEntry::kFree || e.generation != static_cast<uint32_t>(id >> 32)) {
    return nullptr;
  }
  return &e;
}

const IndexEntry* ChunkIndex::Get(EntryId id) const {
  return const_cast<ChunkIndex*>(this)->Get(id);
}

size_t ChunkIndex::MemoryBytes() const {
  // flat_hash_set: one control byte plus one 4-byte slot per bucket.
  return entries_.size() * sizeof(IndexEntry) + free_.capacity() * sizeof(uint32_t) +
         set_.bucket_count() * (sizeof(uint32_t) + 1);
}

}  // namespace strata::store
