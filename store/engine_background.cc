#include <utility>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "store/common/log.h"
#include "store/common/status_macros.h"
#include "store/engine_impl.h"

namespace strata::store::internal {

std::vector<uint8_t> EncodeNamespaceRecord(const NamespaceSpec& spec, std::string_view tenant) {
  std::vector<uint8_t> out;
  const uint32_t n = static_cast<uint32_t>(tenant.size());
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(n >> (8 * i)));
  out.insert(out.end(), tenant.begin(), tenant.end());
  std::vector<uint8_t> canonical = spec.CanonicalBytes();
  out.insert(out.end(), canonical.begin(), canonical.end());
  return out;
}

absl::StatusOr<std::pair<NamespaceSpec, std::string>> DecodeNamespaceRecord(
    std::span<const uint8_t> in) {
  if (in.size() < 4) return absl::DataLossError("namespace record shorter than its header");
  uint32_t n = 0;
  for (int i = 0; i < 4; ++i) n |= uint32_t{in[i]} << (8 * i);
  if (in.size() - 4 < n) return absl::DataLossError("namespace record tenant is truncated");
  std::string tenant(reinterpret_cast<const char*>(in.data() + 4), n);
  auto spec = NamespaceSpec::FromCanonicalBytes(in.subspan(4 + n));
  if (!spec.ok()) {
    return absl::DataLossError(absl::StrCat("namespace record: ", spec.status().message()));
  }
  return std::make_pair(*std::move(spec), std::move(tenant));
}

void EngineImpl::EnforceNvmeCapacity() {
  while (nvme_used_ > options_.nvme_capacity_bytes) {
    EntryId victim = nvme_policy_->PickVictim([this](EntryId id) {
      const IndexEntry* e = index_.Get(id);
      return e != nullptr && !e->has(IndexEntry::kPromoting);
    });
    if (victim == kNoEntry) return;
    IndexEntry& e = *index_.Get(victim);
    // Deleted under the lock so that a later write of the same key cannot
    // be overtaken by this delete.
    if (absl::Status s = nvme_->Delete(e.key); !s.ok()) {
      ++counters_.write_back_errors;
      return;
    }
    ++counters_.nvme_evictions;
    DropNvme(victim, e);
  }
}

// ------------------------------------------------------ background work

size_t EngineImpl::ReapExpiredLeases() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  std::vector<LeaseId> expired;
  for (const auto& [when, id] : lease_expiry_) {
    if (when > now) break;
    const Lease& lease = leases_.at(id);
    // A lease with copies running into it goes at the next round.
    if (!lease.committing && lease.writers == 0) expired.push_back(id);
  }
  for (LeaseId id : expired) {
    Lease lease = TakeLease(leases_.find(id));
    if (lease.write) {
      DiscardWrites(lease);
    } else {
      for (EntryId e : lease.entries) Unpin(e);
    }
  }
  counters_.leases_expired += expired.size();
  return expired.size();
}

absl::Status EngineImpl::FlushWriteBack() {
  absl::MutexLock lock(&mu_);
  if (nvme_ == nullptr) return absl::OkStatus();
  while (!write_back_queue_.empty() || write_back_busy_) {
    if (stopping_) return absl::CancelledError("engine is shutting down");
    cv_.Wait(&mu_);
  }
  if (!write_back_retry_.empty()) {
    return absl::UnavailableError(absl::StrCat(
        write_back_retry_.size(), " acknowledged chunks are not persisted (NVMe write-back: ",
        write_back_error_.message(),
        "); they are kept in DRAM and retried, and lost if the node stops first"));
  }
  return absl::OkStatus();
}

absl::Status EngineImpl::PersistenceStatus() const {
  absl::MutexLock lock(&mu_);
  return write_back_error_;
}

void EngineImpl::WriteBackOne(EntryId id) {
  IndexEntry* e = index_.Get(id);
  if (e == nullptr || !e->has(IndexEntry::kFlushPending)) return;
  NvmeRecord record;
  record.key = e->key;
  if (const IndexEntry* parent = index_.Get(e->parent)) record.parent = parent->key;
  record.namespace_id = e->ns;
  record.size = e->size;
  record.checksum = e->checksum;
  std::span<const std::byte> bytes = pool_->Slot(e->dram_offset, e->size);
  // Room within the tenant's NVMe quota, from its own chunks only. When
  // none of them can go the chunk stays in DRAM, unpersisted: evictable
  // like a chunk of a node without NVMe.
  absl::Status status = TrimTenantNvme(AccountOf(e->ns), e->size);
  if (status.code() == absl::StatusCode::kResourceExhausted) {
    ++AccountOf(e->ns).stats.nvme_quota_skips;
    SetFlushPending(*e, false);
    cv_.SignalAll();
    return;
  }
  write_back_busy_ = true;
  write_back_current_ = id;
  if (status.ok()) {
    mu_.Unlock();
    status = nvme_->Write(record, bytes);
    mu_.Lock();
  }
  write_back_busy_ = false;
  write_back_current_ = kNoEntry;
  e = index_.Get(id);  // pinned by kFlushPending: still live
  if (status.ok()) {
    SetFlushPending(*e, false);
    e->set(IndexEntry::kOnNvme, true);
    NvmeInsert(id, *e);
    ChargeNvme(e->ns, e->size);
    ++counters_.write_backs;
    if (!write_back_error_.ok()) {
      // The tier takes writes again: retry the others now.
      LogInfo("NVMe write-back works again; retrying %zu chunks", write_back_retry_.size());
      write_back_error_ = absl::OkStatus();
      write_back_retry_at_ = absl::InfinitePast();
    }
    EnforceNvmeCapacity();
  } else if (status.code() == absl::StatusCode::kDataLoss) {
    // The tier refused bytes that do not match their checksum: the DRAM copy
    // itself is damaged. Never serve it: drop it (a counted loss).
    SetFlushPending(*e, false);
    ++counters_.checksum_failures;
    LogError("chunk %s: DRAM copy fails its checksum at write-back; dropped",
              e->key.ShortHex().c_str());
    if (e->has(IndexEntry::kInDram)) DropDram(id, *e);
  } else {
    // Keep it pinned (kFlushPending) and try again later: DRAM eviction
    // never drops a copy that is not safe on NVMe.
    ++counters_.write_back_errors;
    if (write_back_error_.ok()) {
      LogError("NVMe write-back failed (%s); the node is not persisting: puts are refused "
                "and unpersisted chunks stay in DRAM, retried every %s",
                status.ToString().c_str(),
                absl::FormatDuration(options_.write_back_retry).c_str());
    }
    write_back_error_ = status;
    write_back_retry_.push_back(id);
    if (write_back_retry_at_ == absl::InfiniteFuture() ||
        write_back_retry_at_ == absl::InfinitePast()) {
      write_back_retry_at_ = absl::Now() + options_.write_back_retry;
    }
  }
  cv_.SignalAll();
}

void EngineImpl::WriteBackLoop() {
  absl::MutexLock lock(&mu_);
  while (true) {
    if (!write_back_retry_.empty() && absl::Now() >= write_back_retry_at_) {
      write_back_retry_at_ = absl::InfiniteFuture();
      write_back_queue_.insert(write_back_queue_.end(), write_back_retry_.begin(),
                               write_back_retry_.end());
      write_back_retry_.clear();
    }
    if (write_back_queue_.empty()) {
      if (stopping_) break;
      if (write_back_retry_.empty()) {
        cv_.Wait(&mu_);
      } else {
        cv_.WaitWithDeadline(&mu_, write_back_retry_at_);
      }
      continue;
    }
    const EntryId id = write_back_queue_.front();
    write_back_queue_.pop_front();
    WriteBackOne(id);
  }
  // Stopping: one last try for the chunks that failed before.
  std::deque<EntryId> last;
  last.swap(write_back_retry_);
  for (EntryId id : last) WriteBackOne(id);
  if (!write_back_retry_.empty()) {
    LogError("shutting down with %zu acknowledged chunks that could not be written to NVMe "
              "(%s): they are lost",
              write_back_retry_.size(), write_back_error_.ToString().c_str());
  }
}

void EngineImpl::ReaperLoop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      cv_.WaitWithTimeout(&mu_, options_.reap_interval);
      if (stopping_) return;
    }
    ReapExpiredLeases();
  }
}

void EngineImpl::StartThreads() {
  if (nvme_ != nullptr) write_back_thread_ = std::thread([this] { WriteBackLoop(); });
  // Hint rebuilds left over by SetHints and hint expiry; prefetch with NVMe.
  prefetch_thread_ = std::thread([this] { PrefetchLoop(); });
  if (options_.reap_interval > absl::ZeroDuration()) {
    reaper_thread_ = std::thread([this] { ReaperLoop(); });
  }
}

absl::Status EngineImpl::Restore() {
  if (nvme_ == nullptr) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  absl::Status status;
  RETURN_IF_ERROR(nvme_->ForEachNamespace([&](uint32_t id, std::span<const uint8_t> bytes) {
    if (!status.ok()) return;
    auto decoded = DecodeNamespaceRecord(bytes);
    if (!decoded.ok() || id <= namespaces_.size() || id > 0xffff) {
      status = absl::DataLossError(absl::StrCat(
          "NVMe tier: namespace record ", id, " is unreadable or out of sequence",
          decoded.ok() ? "" : ": ", decoded.ok() ? "" : decoded.status().message()));
      return;
    }
    NamespaceInfo info;
    info.id = id;
    info.spec = decoded->first;
    info.tenant = decoded->second;
    info.chunk_bytes = ChunkLayout(info.spec).chunk_bytes();
    // Ids of removed namespaces leave free slots.
    namespaces_.resize(id - 1);
    ns_state_.resize(id - 1, NsState::kFree);
    namespaces_.push_back(std::move(info));
    ns_state_.push_back(NsState::kLive);
    AttachAccount(id, decoded->second);
  }));
  RETURN_IF_ERROR(status);
  std::vector<std::pair<EntryId, ChunkKey>> parents;
  std::vector<ChunkKey> inconsistent;
  RETURN_IF_ERROR(nvme_->ForEach([&](const NvmeRecord& record) {
    if (record.namespace_id == 0 || record.namespace_id > namespaces_.size() ||
        ns_state_[record.namespace_id - 1] != NsState::kLive ||
        record.size != namespaces_[record.namespace_id - 1].chunk_bytes) {
      inconsistent.push_back(record.key);
      return;
    }
    const EntryId id = index_.Insert(record.key);
    IndexEntry& e = *index_.Get(id);
    e.state = IndexEntry::kCommitted;
    e.ns = static_cast<uint16_t>(record.namespace_id);
    e.size = record.size;
    e.checksum = record.checksum;
    e.set(IndexEntry::kOnNvme, true);
    ChargeNvme(record.namespace_id, record.size);
    if (record.parent) parents.emplace_back(id, *record.parent);
  }));
  for (const ChunkKey& key : inconsistent) RETURN_IF_ERROR(nvme_->Delete(key));
  absl::flat_hash_map<EntryId, EntryId> parent_of;
  for (const auto& [id, parent_key] : parents) parent_of[id] = index_.Find(parent_key);
  index_.ForEach([&](EntryId id, IndexEntry& e) {
    auto it = parent_of.find(id);
    e.parent = it == parent_of.end() ? kNoEntry : it->second;
  });
  BreakParentCycles();
  index_.ForEach([&](EntryId id, IndexEntry& e) { NvmeInsert(id, e); });
  counters_.chunks_restored = index_.size();
  EnforceNvmeCapacity();
  return absl::OkStatus();
}

void EngineImpl::BreakParentCycles() {
  // Colours: absent = unvisited, 1 = on the current path, 2 = done. Each
  // entry is visited once; a link back into the current path is cut.
  absl::flat_hash_map<EntryId, uint8_t> colour;
  std::vector<EntryId> path;
  index_.ForEach([&](EntryId start, IndexEntry&) {
    path.clear();
    EntryId id = start;
    while (id != kNoEntry && !colour.contains(id)) {
      colour[id] = 1;
      path.push_back(id);
      IndexEntry* e = index_.Get(id);
      EntryId parent = e->parent;
      if (parent != kNoEntry && index_.Get(parent) == nullptr) parent = e->parent = kNoEntry;
      if (parent != kNoEntry) {
        auto it = colour.find(parent);
        if (it != colour.end() && it->second == 1) {
          LogError("chunk %s: its NVMe parent links form a cycle; the link is cut",
                    e->key.ShortHex().c_str());
          e->parent = kNoEntry;
          parent = kNoEntry;
        }
      }
      id = parent;
    }
    for (EntryId p : path) colour[p] = 2;
  });
}

EngineStats EngineImpl::Stats() const {
  absl::MutexLock lock(&mu_);
  EngineStats s = counters_;
  s.dram_capacity_bytes = pool_->capacity();
  s.dram_used_bytes = pool_->used();
  s.nvme_capacity_bytes = nvme_ != nullptr ? options_.nvme_capacity_bytes : 0;
  s.nvme_used_bytes = nvme_used_;
  s.index_entries = index_.size();
  s.index_memory_bytes = index_.MemoryBytes();
  s.chunks_in_dram = dram_policy_->size();
  s.chunks_on_nvme = nvme_policy_->size();
  for (const auto& [id, lease] : leases_) {
    (lease.write ? s.active_write_leases : s.active_read_leases)++;
  }
  s.namespaces = absl::c_count(ns_state_, NsState::kLive);
  s.write_back_queue = write_back_queue_.size() + (write_back_busy_ ? 1 : 0);
  s.chunks_unpersisted = write_back_retry_.size();
  s.write_back_failing = write_back_error_.ok() ? 0 : 1;
  s.read_index_published = read_index_ != nullptr ? read_index_->published() : 0;
  return s;
}

}  // namespace strata::store::internal
