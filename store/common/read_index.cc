#include "store/common/read_index.h"

#include <atomic>
#include <cstring>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace strata {
namespace {

using L = ReadIndexLayout;

uint64_t Load(const uint64_t* word, std::memory_order order = std::memory_order_relaxed) {
  // The mapping is read-only for a reader: atomic_ref of a const object is
  // not allowed before C++26, so cast; only loads are issued through it.
  return std::atomic_ref<uint64_t>(*const_cast<uint64_t*>(word)).load(order);
}

void Store(uint64_t* word, uint64_t value, std::memory_order order = std::memory_order_relaxed) {
  std::atomic_ref<uint64_t>(*word).store(value, order);
}

uint64_t KeyWord(const ChunkKey& key, size_t i) {
  uint64_t w;
  std::memcpy(&w, key.bytes.data() + 8 * i, 8);
  return w;
}

uint32_t Home(const ChunkKey& key, uint32_t entries) {
  return static_cast<uint32_t>(KeyWord(key, 0) & (entries - 1));
}

}  // namespace

ReadIndexWriter::ReadIndexWriter(std::span<std::byte> region, uint32_t entries)
    : words_(reinterpret_cast<uint64_t*>(region.data())), entries_(entries) {
  Store(&words_[1], entries);
  Store(&words_[0], L::kMagic, std::memory_order_release);
}

void ReadIndexWriter::Close() { Store(&words_[2], 1, std::memory_order_release); }

bool ReadIndexWriter::Holds(uint32_t i, const ChunkKey& key) const {
  const uint64_t* e = Entry(i);
  if ((Load(&e[L::kSizeNs]) & 0xffffffffu) == 0) return false;
  for (size_t w = 0; w < 4; ++w) {
    if (Load(&e[L::kKey + w]) != KeyWord(key, w)) return false;
  }
  return true;
}

void ReadIndexWriter::Write(uint32_t i, const ChunkKey& key, uint64_t offset, uint64_t size_ns,
                            uint64_t checksum) {
  uint64_t* e = Entry(i);
  const uint64_t s = Load(&e[L::kSeq]);
  Store(&e[L::kSeq], s + 1);
  std::atomic_thread_fence(std::memory_order_release);
  for (size_t w = 0; w < 4; ++w) Store(&e[L::kKey + w], KeyWord(key, w));
  Store(&e[L::kOffset], offset);
  Store(&e[L::kSizeNs], size_ns);
  Store(&e[L::kChecksum], checksum);
  Store(&e[L::kSeq], s + 2, std::memory_order_release);
}

bool ReadIndexWriter::Publish(const ChunkKey& key, uint32_t ns, uint64_t offset, uint32_t size,
                              uint64_t checksum) {
  if (size == 0) return false;
  const uint32_t home = Home(key, entries_);
  std::optional<uint32_t> free;
  for (uint32_t p = 0; p < L::kProbe; ++p) {
    const uint32_t i = (home + p) & (entries_ - 1);
    if (Holds(i, key)) {
      free = i;
      --published_;  // replaced below
      break;
    }
    if (!free && (Load(&Entry(i)[L::kSizeNs]) & 0xffffffffu) == 0) free = i;
  }
  if (!free) return false;
  Write(*free, key, offset, (uint64_t{ns} << 32) | size, checksum);
  ++published_;
  return true;
}

bool ReadIndexWriter::Withdraw(const ChunkKey& key) {
  const uint32_t home = Home(key, entries_);
  for (uint32_t p = 0; p < L::kProbe; ++p) {
    const uint32_t i = (home + p) & (entries_ - 1);
    if (Holds(i, key)) {
      Write(i, ChunkKey(), 0, 0, 0);
      --published_;
      return true;
    }
  }
  return false;
}

absl::StatusOr<ReadIndexView> ReadIndexView::Open(std::span<const std::byte> region) {
  if (region.size() < L::kHeaderBytes ||
      reinterpret_cast<uintptr_t>(region.data()) % alignof(uint64_t) != 0) {
    return absl::InvalidArgumentError("read index: region too small or misaligned");
  }
  const auto* words = reinterpret_cast<const uint64_t*>(region.data());
  if (Load(&words[0], std::memory_order_acquire) != L::kMagic) {
    return absl::InvalidArgumentError("read index: bad magic");
  }
  const uint64_t entries = Load(&words[1]);
  if (entries < L::kProbe || entries > (uint64_t{1} << 31) || (entries & (entries - 1)) != 0 ||
      L::Bytes(entries) > region.size()) {
    return absl::InvalidArgumentError(absl::StrCat("read index: bad entry count ", entries,
                                                   " for a table of ", region.size(), " bytes"));
  }
  return ReadIndexView(words, static_cast<uint32_t>(entries));
}

std::optional<ReadIndexHit> ReadIndexView::Find(const ChunkKey& key, uint32_t ns) const {
  if (Load(&words_[2], std::memory_order_acquire) != 0) return std::nullopt;  // closed
  const uint32_t home = Home(key, entries_);
  for (uint32_t p = 0; p < L::kProbe; ++p) {
    const uint32_t i = (home + p) & (entries_ - 1);
    const uint64_t* e = Entry(i);
    const uint64_t s1 = Load(&e[L::kSeq], std::memory_order_acquire);
    if (s1 & 1) continue;  // being changed: treated as absent
    bool match = true;
    for (size_t w = 0; w < 4; ++w) match = match && Load(&e[L::kKey + w]) == KeyWord(key, w);
    const uint64_t offset = Load(&e[L::kOffset]);
    const uint64_t size_ns = Load(&e[L::kSizeNs]);
    const uint64_t checksum = Load(&e[L::kChecksum]);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (Load(&e[L::kSeq]) != s1) continue;
    if (!match || (size_ns & 0xffffffffu) == 0) continue;
    if ((size_ns >> 32) != ns) return std::nullopt;
    ReadIndexHit hit;
    hit.entry = i;
    hit.seq = s1;
    hit.offset = offset;
    hit.size = static_cast<uint32_t>(size_ns);
    hit.checksum = checksum;
    return hit;
  }
  return std::nullopt;
}

bool ReadIndexView::Unchanged(const ReadIndexHit& hit) const {
  std::atomic_thread_fence(std::memory_order_acquire);
  return Load(&Entry(hit.entry)[L::kSeq]) == hit.seq;
}

}  // namespace strata
