// SharedReadIndex: the node's read index (store/common/read_index.h) in a
// memfd (mode 0600) that clients of the same user on this host map
// read-only through /proc/<pid>/fd/<fd>, beside the shared DRAM pool. The
// engine publishes each committed chunk in DRAM and withdraws it before its
// slot is freed.
#ifndef STRATA_STORE_SHARED_READ_INDEX_H_
#define STRATA_STORE_SHARED_READ_INDEX_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "store/common/read_index.h"

namespace strata::store {

// Move-only owner of the mapping. Not thread-safe: the engine serialises
// Publish and Withdraw under its lock.
class SharedReadIndex {
 public:
  // A table of `entries` entries (rounded up to a power of two, at least
  // ReadIndexLayout::kProbe). ResourceExhausted when the memfd or the
  // mapping fails.
  static absl::StatusOr<std::unique_ptr<SharedReadIndex>> Create(uint64_t entries);
  // Entries for a pool of `pool_bytes`: two per 64 KiB, at least 4096 and at
  // most 2^20 (64 MiB of table).
  static uint64_t EntriesFor(uint64_t pool_bytes);
  ~SharedReadIndex();
  SharedReadIndex(const SharedReadIndex&) = delete;
  SharedReadIndex& operator=(const SharedReadIndex&) = delete;

  bool Publish(const ChunkKey& key, uint32_t ns, uint64_t offset, uint32_t size,
               uint64_t checksum) {
    return writer_.Publish(key, ns, offset, size, checksum);
  }
  bool Withdraw(const ChunkKey& key) { return writer_.Withdraw(key); }
  void Close() { writer_.Close(); }
  uint64_t published() const { return writer_.published(); }

  // "/proc/<pid>/fd/<fd>" and the table's size in bytes.
  const std::string& share_path() const { return share_path_; }
  uint64_t bytes() const { return bytes_; }

 private:
  SharedReadIndex(std::byte* base, uint64_t bytes, uint32_t entries, int fd, std::string path)
      : base_(base), bytes_(bytes), fd_(fd), share_path_(std::move(path)),
        writer_(std::span<std::byte>(base, bytes), entries) {}

  std::byte* const base_;
  const uint64_t bytes_;
  const int fd_;
  const std::string share_path_;
  ReadIndexWriter writer_;
};

}  // namespace strata::store

#endif  // STRATA_STORE_SHARED_READ_INDEX_H_
