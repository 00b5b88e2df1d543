#include "client/hot_chunks.h"

#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/time/clock.h"

namespace strata::client {

HotChunks::HotChunks(HotChunkOptions options)
    : options_([&] {
        if (!options.now) options.now = [] { return absl::Now(); };
        return std::move(options);
      }()) {}

void HotChunks::Roll(Entry& e, absl::Time now) const {
  if (now - e.window_start < options_.window) return;
  // The window that held the reads ended: stay hot only with enough of them
  // and no empty window since.
  const bool kept =
      e.hot && e.count * 2 >= options_.reads && now - e.window_start < 2 * options_.window;
  e.hot = kept;
  e.count = 0;
  e.copied = false;
  e.window_start = now;
}

HotChunks::Read HotChunks::RecordRead(const ChunkKey& key) {
  if (options_.reads == 0) return {};
  const absl::Time now = options_.now();
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    if (entries_.size() >= options_.max_tracked) {
      absl::erase_if(entries_, [&](const auto& kv) {
        return !kv.second.hot && now - kv.second.window_start >= options_.window;
      });
      if (entries_.size() >= options_.max_tracked) return {};
    }
    it = entries_.emplace(key, Entry{now}).first;
  }
  Entry& e = it->second;
  Roll(e, now);
  Read r;
  r.sequence = e.count++;
  if (!e.hot && e.count >= options_.reads) e.hot = true;
  r.hot = e.hot;
  return r;
}

bool HotChunks::IsHot(const ChunkKey& key) {
  if (options_.reads == 0) return false;
  const absl::Time now = options_.now();
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return false;
  Roll(it->second, now);
  return it->second.hot;
}

bool HotChunks::ClaimCopy(const ChunkKey& key) {
  if (options_.reads == 0) return false;
  const absl::Time now = options_.now();
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return false;
  Entry& e = it->second;
  Roll(e, now);
  if (!e.hot || e.copied) return false;
  e.copied = true;
  return true;
}

size_t HotChunks::HotCount() {
  const absl::Time now = options_.now();
  absl::MutexLock lock(&mu_);
  size_t n = 0;
  for (auto& [key, e] : entries_) {
    Roll(e, now);
    n += e.hot;
  }
  return n;
}

size_t HotChunks::tracked() {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

}  // namespace strata::client
