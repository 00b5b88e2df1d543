#include "store/engine.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <thread>
#include <utility>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "eviction/eviction_policy.h"
#include "store/chunk_index.h"
#include "store/common/checksum.h"
#include "store/common/status_macros.h"
#include "store/dram_pool.h"
#include "store/nvme_tier.h"

namespace strata::store {

const char* TierName(Tier tier) {
  switch (tier) {
    case Tier::kMissing:
      return "missing";
    case Tier::kDram:
      return "dram";
    case Tier::kNvme:
      return "nvme";
  }
  return "unknown";
}

namespace {

using eviction::EvictionPolicy;

// Tenant and canonical spec packed for NvmeTier::PutNamespace:
// u32 LE tenant length, tenant bytes, canonical namespace bytes.
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

class EngineImpl final : public Engine {
 public:
  EngineImpl(const EngineOptions& options, Clock* clock, std::unique_ptr<DramPool> pool,
             std::unique_ptr<NvmeTier> nvme, std::unique_ptr<EvictionPolicy> dram_policy,
             std::unique_ptr<EvictionPolicy> nvme_policy)
      : options_(options),
        clock_(clock),
        pool_(std::move(pool)),
        nvme_(std::move(nvme)),
        dram_policy_(std::move(dram_policy)),
        nvme_policy_(std::move(nvme_policy)) {}

  ~EngineImpl() override {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      cv_.SignalAll();
    }
    if (write_back_thread_.joinable()) write_back_thread_.join();
    if (reaper_thread_.joinable()) reaper_thread_.join();
    if (nvme_ != nullptr) (void)nvme_->Flush();
  }

  absl::Status Restore();
  void StartThreads();

  absl::StatusOr<uint32_t> RegisterNamespace(const NamespaceSpec& spec,
                                             std::string_view tenant) override;
  absl::StatusOr<NamespaceInfo> GetNamespace(uint32_t ns) const override;
  absl::StatusOr<LookupResult> Lookup(uint32_t ns, std::span<const ChunkKey> keys) override;
  absl::StatusOr<PutLease> BeginPut(uint32_t ns, std::span<const PutItem> items,
                                    absl::Duration ttl) override;
  absl::Status CommitPut(LeaseId lease, std::span<const uint64_t> checksums) override;
  absl::Status AbortPut(LeaseId lease) override;
  absl::StatusOr<ReadLease> Acquire(uint32_t ns, std::span<const ChunkKey> keys,
                                    absl::Duration ttl) override;
  absl::Status Release(LeaseId lease) override;
  absl::Status Put(uint32_t ns, const ChunkKey& key, std::optional<ChunkKey> parent,
                   std::span<const std::byte> payload) override;
  absl::Status Get(uint32_t ns, const ChunkKey& key, std::span<std::byte> out) override;
  size_t ReapExpiredLeases() override;
  absl::Status FlushWriteBack() override;
  EngineStats Stats() const override;
  std::span<std::byte> dram_region() const override { return pool_->region(); }

 private:
  struct Lease {
    bool write = false;
    bool committing = false;  // CommitPut is verifying checksums
    uint32_t ns = 0;
    absl::Time expires;
    std::vector<EntryId> entries;  // write: entries it created; read: pins
    // Write leases: position of each created entry in the request, and the
    // request's length (CommitPut takes one checksum per requested item).
    std::vector<uint32_t> positions;
    uint32_t requested = 0;
  };

  absl::StatusOr<const NamespaceInfo*> FindNamespace(uint32_t ns) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckBatch(size_t n, const char* what) const;
  absl::StatusOr<absl::Time> ExpiryFor(absl::Duration ttl) const;
  // The committed entry of `key` in namespace `ns`, or nullptr.
  IndexEntry* FindCommitted(uint32_t ns, const ChunkKey& key, EntryId* id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  LeaseId AddLease(Lease lease) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes the lease from the table and returns it.
  Lease TakeLease(absl::flat_hash_map<LeaseId, Lease>::iterator it)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Allocates `size` bytes of DRAM, evicting unpinned chunks as needed.
  std::optional<uint64_t> AllocateDram(uint64_t size) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static bool DramEvictable(const IndexEntry& e) {
    return e.state == IndexEntry::kCommitted && e.has(IndexEntry::kInDram) && e.read_pins == 0 &&
           !e.has(IndexEntry::kFlushPending) && !e.has(IndexEntry::kPromoting);
  }
  void DropDram(EntryId id, IndexEntry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropNvme(EntryId id, IndexEntry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Erases a committed entry that no tier holds and nothing pins.
  void MaybeErase(EntryId id, IndexEntry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Unpin(EntryId id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Frees the slots and entries of an uncommitted write lease.
  void DiscardWrites(const Lease& lease) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EnforceNvmeCapacity() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reads the pinned entries that are only on NVMe into DRAM (dropping the
  // lock for the I/O), then waits for promotions of `ids` started by others.
  absl::Status PromoteLocked(std::span<const EntryId> ids) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  void WriteBackLoop();
  void ReaperLoop();

  // Constant after construction.
  const EngineOptions options_;
  Clock* const clock_;
  const std::unique_ptr<DramPool> pool_;  // allocation guarded by mu_
  const std::unique_ptr<NvmeTier> nvme_;  // thread-safe; may be null

  mutable absl::Mutex mu_;
  // Signalled when a promotion or write-back finishes, or on stop.
  absl::CondVar cv_;
  ChunkIndex index_ ABSL_GUARDED_BY(mu_);
  const std::unique_ptr<EvictionPolicy> dram_policy_ ABSL_PT_GUARDED_BY(mu_);
  const std::unique_ptr<EvictionPolicy> nvme_policy_ ABSL_PT_GUARDED_BY(mu_);
  std::vector<NamespaceInfo> namespaces_ ABSL_GUARDED_BY(mu_);  // id - 1
  absl::flat_hash_map<LeaseId, Lease> leases_ ABSL_GUARDED_BY(mu_);
  absl::btree_set<std::pair<absl::Time, LeaseId>> lease_expiry_ ABSL_GUARDED_BY(mu_);
  absl::BitGen rng_ ABSL_GUARDED_BY(mu_);
  std::deque<EntryId> write_back_queue_ ABSL_GUARDED_BY(mu_);
  bool write_back_busy_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t nvme_used_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  EngineStats counters_ ABSL_GUARDED_BY(mu_);

  std::thread write_back_thread_;
  std::thread reaper_thread_;
};

// ---------------------------------------------------------------- helpers

absl::StatusOr<const NamespaceInfo*> EngineImpl::FindNamespace(uint32_t ns) const {
  if (ns == 0 || ns > namespaces_.size()) {
    return absl::NotFoundError(absl::StrCat("unknown namespace id ", ns));
  }
  return &namespaces_[ns - 1];
}

absl::Status EngineImpl::CheckBatch(size_t n, const char* what) const {
  if (n == 0) return absl::InvalidArgumentError(absl::StrCat(what, ": no keys given"));
  if (n > options_.max_keys_per_call) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", n, " keys exceed the limit of ",
                                                   options_.max_keys_per_call, " per call"));
  }
  return absl::OkStatus();
}

absl::StatusOr<absl::Time> EngineImpl::ExpiryFor(absl::Duration ttl) const {
  if (ttl == absl::ZeroDuration()) ttl = options_.default_lease_ttl;
  if (ttl < absl::ZeroDuration() || ttl > options_.max_lease_ttl) {
    return absl::InvalidArgumentError(absl::StrCat("lease ttl ", absl::FormatDuration(ttl),
                                                   " is outside (0, ",
                                                   absl::FormatDuration(options_.max_lease_ttl),
                                                   "]"));
  }
  return clock_->Now() + ttl;
}

IndexEntry* EngineImpl::FindCommitted(uint32_t ns, const ChunkKey& key, EntryId* id) {
  *id = index_.Find(key);
  IndexEntry* e = index_.Get(*id);
  if (e == nullptr || e->state != IndexEntry::kCommitted || e->ns != ns ||
      !(e->has(IndexEntry::kInDram) || e->has(IndexEntry::kOnNvme) ||
        e->has(IndexEntry::kPromoting))) {
    return nullptr;
  }
  return e;
}

LeaseId EngineImpl::AddLease(Lease lease) {
  LeaseId id;
  do {
    id = absl::Uniform<uint64_t>(rng_);
  } while (id == 0 || leases_.contains(id));
  lease_expiry_.emplace(lease.expires, id);
  leases_.emplace(id, std::move(lease));
  return id;
}

EngineImpl::Lease EngineImpl::TakeLease(absl::flat_hash_map<LeaseId, Lease>::iterator it) {
  Lease lease = std::move(it->second);
  lease_expiry_.erase({lease.expires, it->first});
  leases_.erase(it);
  return lease;
}

std::optional<uint64_t> EngineImpl::AllocateDram(uint64_t size) {
  const absl::Time deadline = absl::Now() + options_.write_back_wait;
  while (true) {
    if (auto offset = pool_->Allocate(size)) return offset;
    EntryId victim = dram_policy_->PickVictim([this](EntryId id) {
      const IndexEntry* e = index_.Get(id);
      return e != nullptr && DramEvictable(*e);
    });
    if (victim == kNoEntry) {
      // Chunks awaiting write-back become evictable once persisted: wait for
      // the writer (back-pressure) rather than fail at once.
      const bool writer_pending = !write_back_queue_.empty() || write_back_busy_;
      if (!writer_pending || stopping_ || cv_.WaitWithDeadline(&mu_, deadline)) {
        return std::nullopt;
      }
      continue;
    }
    ++counters_.dram_evictions;
    DropDram(victim, *index_.Get(victim));
  }
}

void EngineImpl::DropDram(EntryId id, IndexEntry& e) {
  pool_->Free(e.dram_offset, e.size);
  e.set(IndexEntry::kInDram, false);
  dram_policy_->OnRemove(id);
  MaybeErase(id, e);
}

void EngineImpl::DropNvme(EntryId id, IndexEntry& e) {
  e.set(IndexEntry::kOnNvme, false);
  nvme_policy_->OnRemove(id);
  nvme_used_ -= e.size;
  MaybeErase(id, e);
}

void EngineImpl::MaybeErase(EntryId id, IndexEntry& e) {
  if (e.state == IndexEntry::kCommitted && e.read_pins == 0 &&
      !(e.flags & (IndexEntry::kInDram | IndexEntry::kOnNvme | IndexEntry::kPromoting |
                   IndexEntry::kFlushPending))) {
    index_.Erase(id);
  }
}

void EngineImpl::Unpin(EntryId id) {
  IndexEntry* e = index_.Get(id);
  if (e == nullptr) return;
  --e->read_pins;
  MaybeErase(id, *e);
}

void EngineImpl::DiscardWrites(const Lease& lease) {
  for (EntryId id : lease.entries) {
    IndexEntry* e = index_.Get(id);
    if (e == nullptr || e->state != IndexEntry::kWriting) continue;
    pool_->Free(e->dram_offset, e->size);
    index_.Erase(id);
  }
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

// ------------------------------------------------------------ namespaces

absl::StatusOr<uint32_t> EngineImpl::RegisterNamespace(const NamespaceSpec& spec,
                                                       std::string_view tenant) {
  RETURN_IF_ERROR(spec.Validate());
  if (tenant.size() > NamespaceSpec::kMaxModelIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat("tenant must be at most ",
                                                   NamespaceSpec::kMaxModelIdBytes, " bytes"));
  }
  const uint64_t chunk = ChunkLayout(spec).chunk_bytes();
  if (chunk > pool_->capacity()) {
    return absl::InvalidArgumentError(absl::StrCat("a chunk of ", chunk,
                                                   " bytes does not fit the DRAM pool of ",
                                                   pool_->capacity(), " bytes"));
  }
  if (nvme_ != nullptr && chunk > options_.nvme_capacity_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("a chunk of ", chunk,
                                                   " bytes does not fit the NVMe capacity of ",
                                                   options_.nvme_capacity_bytes, " bytes"));
  }
  absl::MutexLock lock(&mu_);
  for (const NamespaceInfo& info : namespaces_) {
    if (info.spec == spec && info.tenant == tenant) return info.id;
  }
  if (namespaces_.size() >= 0xffff) {
    return absl::ResourceExhaustedError("a node holds at most 65535 namespaces");
  }
  NamespaceInfo info;
  info.id = static_cast<uint32_t>(namespaces_.size() + 1);
  info.spec = spec;
  info.tenant = std::string(tenant);
  info.chunk_bytes = chunk;
  if (nvme_ != nullptr) {
    RETURN_IF_ERROR(nvme_->PutNamespace(info.id, EncodeNamespaceRecord(spec, tenant)));
  }
  namespaces_.push_back(std::move(info));
  return namespaces_.back().id;
}

absl::StatusOr<NamespaceInfo> EngineImpl::GetNamespace(uint32_t ns) const {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(const NamespaceInfo* info, FindNamespace(ns));
  return *info;
}

// ---------------------------------------------------------------- lookup

absl::StatusOr<LookupResult> EngineImpl::Lookup(uint32_t ns, std::span<const ChunkKey> keys) {
  RETURN_IF_ERROR(CheckBatch(keys.size(), "lookup"));
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(FindNamespace(ns).status());
  LookupResult result;
  result.tiers.reserve(keys.size());
  bool prefix = true;
  for (const ChunkKey& key : keys) {
    EntryId id;
    const IndexEntry* e = FindCommitted(ns, key, &id);
    Tier tier = Tier::kMissing;
    if (e != nullptr) tier = e->has(IndexEntry::kInDram) ? Tier::kDram : Tier::kNvme;
    result.tiers.push_back(tier);
    if (tier == Tier::kMissing) {
      prefix = false;
      ++counters_.lookups_miss;
    } else {
      ++counters_.lookups_hit;
      if (prefix) ++result.prefix_chunks;
    }
  }
  return result;
}

// ------------------------------------------------------------- write path

absl::StatusOr<PutLease> EngineImpl::BeginPut(uint32_t ns, std::span<const PutItem> items,
                                              absl::Duration ttl) {
  RETURN_IF_ERROR(CheckBatch(items.size(), "put"));
  ASSIGN_OR_RETURN(absl::Time expires, ExpiryFor(ttl));
  absl::flat_hash_set<ChunkKey> seen;
  for (const PutItem& item : items) {
    if (!seen.insert(item.key).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("put: key ", item.key.ShortHex(), " appears twice in one call"));
    }
  }
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(const NamespaceInfo* info, FindNamespace(ns));
  const uint32_t size = static_cast<uint32_t>(info->chunk_bytes);
  Lease lease;
  lease.write = true;
  lease.ns = ns;
  lease.expires = expires;
  PutLease result;
  result.expires = expires;
  result.slots.reserve(items.size());
  for (const PutItem& item : items) {
    PutSlot slot;
    slot.key = item.key;
    EntryId id = index_.Find(item.key);
    if (IndexEntry* e = index_.Get(id); e != nullptr) {
      if (e->state == IndexEntry::kWriting) {
        DiscardWrites(lease);
        return absl::AbortedError(absl::StrCat(
            "put: key ", item.key.ShortHex(), " is being written under another lease"));
      }
      if (e->ns != ns) {
        DiscardWrites(lease);
        return absl::InvalidArgumentError(absl::StrCat(
            "put: key ", item.key.ShortHex(), " is stored in another namespace"));
      }
      // Committed (in DRAM, on NVMe or being promoted): idempotent success.
      slot.already_present = true;
      ++counters_.puts_already_present;
      if (e->has(IndexEntry::kInDram)) dram_policy_->OnAccess(id);
      result.slots.push_back(slot);
      continue;
    }
    std::optional<uint64_t> offset = AllocateDram(size);
    if (!offset) {
      DiscardWrites(lease);
      return absl::ResourceExhaustedError(absl::StrCat(
          "put: no DRAM for a ", size, "-byte chunk: ", pool_->used(), " of ",
          pool_->capacity(), " bytes in use and every chunk is leased or awaiting write-back"));
    }
    id = index_.Insert(item.key);
    IndexEntry& e = *index_.Get(id);
    e.state = IndexEntry::kWriting;
    e.ns = static_cast<uint16_t>(ns);
    e.size = size;
    e.dram_offset = *offset;
    e.parent = item.parent ? index_.Find(*item.parent) : kNoEntry;
    lease.entries.push_back(id);
    lease.positions.push_back(static_cast<uint32_t>(result.slots.size()));
    slot.pool_offset = *offset;
    slot.dest = pool_->Slot(*offset, size);
    result.slots.push_back(slot);
  }
  lease.requested = static_cast<uint32_t>(items.size());
  result.id = AddLease(std::move(lease));
  return result;
}

absl::Status EngineImpl::CommitPut(LeaseId lease_id, std::span<const uint64_t> checksums) {
  std::vector<std::span<const std::byte>> slots;
  std::vector<uint64_t> expected;
  {
    absl::MutexLock lock(&mu_);
    auto it = leases_.find(lease_id);
    if (it == leases_.end() || !it->second.write || it->second.committing) {
      return absl::NotFoundError(
          absl::StrCat("commit: no open write lease ", lease_id, " (unknown, expired or done)"));
    }
    Lease& lease = it->second;
    if (checksums.size() != lease.requested) {
      return absl::InvalidArgumentError(absl::StrCat("commit: ", checksums.size(),
                                                     " checksums for a lease of ",
                                                     lease.requested, " chunks"));
    }
    // The lease's slots are stable while it is marked committing: the reaper
    // and AbortPut leave committing leases alone.
    lease.committing = true;
    for (size_t i = 0; i < lease.entries.size(); ++i) {
      const IndexEntry* e = index_.Get(lease.entries[i]);
      slots.push_back(pool_->Slot(e->dram_offset, e->size));
      expected.push_back(checksums[lease.positions[i]]);
    }
  }
  // Verify outside the lock: only this lease may touch these slots.
  size_t bad = slots.size();
  for (size_t i = 0; i < slots.size() && bad == slots.size(); ++i) {
    if (ChunkChecksum(slots[i]) != expected[i]) bad = i;
  }
  absl::MutexLock lock(&mu_);
  Lease lease = TakeLease(leases_.find(lease_id));
  if (bad != slots.size()) {
    const ChunkKey key = index_.Get(lease.entries[bad])->key;
    DiscardWrites(lease);
    ++counters_.checksum_failures;
    return absl::DataLossError(absl::StrCat("commit: checksum mismatch for chunk ",
                                            key.ShortHex(), "; no chunk of the lease was stored"));
  }
  for (size_t i = 0; i < lease.entries.size(); ++i) {
    const EntryId id = lease.entries[i];
    IndexEntry& e = *index_.Get(id);
    e.state = IndexEntry::kCommitted;
    e.checksum = expected[i];
    e.set(IndexEntry::kInDram, true);
    dram_policy_->OnInsert(id, e.parent);
    ++counters_.puts_committed;
    if (nvme_ != nullptr) {
      e.set(IndexEntry::kFlushPending, true);
      write_back_queue_.push_back(id);
    }
  }
  if (nvme_ != nullptr && !lease.entries.empty()) cv_.SignalAll();
  return absl::OkStatus();
}

absl::Status EngineImpl::AbortPut(LeaseId lease_id) {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(lease_id);
  if (it == leases_.end() || !it->second.write || it->second.committing) {
    return absl::NotFoundError(
        absl::StrCat("abort: no open write lease ", lease_id, " (unknown, expired or done)"));
  }
  DiscardWrites(TakeLease(it));
  return absl::OkStatus();
}

// -------------------------------------------------------------- read path

absl::Status EngineImpl::PromoteLocked(std::span<const EntryId> ids) {
  std::vector<EntryId> mine;
  for (EntryId id : ids) {
    IndexEntry& e = *index_.Get(id);
    if (e.has(IndexEntry::kInDram) || e.has(IndexEntry::kPromoting) ||
        !e.has(IndexEntry::kOnNvme)) {
      continue;
    }
    std::optional<uint64_t> offset = AllocateDram(e.size);
    if (!offset) {
      for (EntryId m : mine) {
        IndexEntry& q = *index_.Get(m);
        pool_->Free(q.dram_offset, q.size);
        q.set(IndexEntry::kPromoting, false);
      }
      cv_.SignalAll();
      return absl::ResourceExhaustedError(
          absl::StrCat("get: no DRAM to promote a ", e.size, "-byte chunk from NVMe"));
    }
    // AllocateDram may have waited (dropping the lock): recheck.
    if (e.has(IndexEntry::kInDram) || e.has(IndexEntry::kPromoting) ||
        !e.has(IndexEntry::kOnNvme)) {
      pool_->Free(*offset, e.size);
      continue;
    }
    e.dram_offset = *offset;
    e.set(IndexEntry::kPromoting, true);
    mine.push_back(id);
  }
  // Read without the lock; pins and the promoting flag keep the entries and
  // their slots in place.
  absl::Status first_error;
  if (!mine.empty()) {
    std::vector<std::pair<ChunkKey, std::span<std::byte>>> reads;
    for (EntryId id : mine) {
      const IndexEntry& e = *index_.Get(id);
      reads.emplace_back(e.key, pool_->Slot(e.dram_offset, e.size));
    }
    std::vector<absl::Status> results(reads.size());
    mu_.Unlock();
    for (size_t k = 0; k < reads.size(); ++k) {
      results[k] = nvme_->Read(reads[k].first, reads[k].second);
    }
    mu_.Lock();
    for (size_t k = 0; k < mine.size(); ++k) {
      const EntryId id = mine[k];
      IndexEntry& e = *index_.Get(id);
      e.set(IndexEntry::kPromoting, false);
      if (results[k].ok()) {
        e.set(IndexEntry::kInDram, true);
        dram_policy_->OnInsert(id, e.parent);
        ++counters_.reads_nvme;
        continue;
      }
      pool_->Free(e.dram_offset, e.size);
      if (results[k].code() == absl::StatusCode::kDataLoss) ++counters_.checksum_failures;
      // The tier dropped a corrupt copy itself; after any other failure the
      // copy is unusable for this node too.
      if (results[k].code() != absl::StatusCode::kNotFound &&
          results[k].code() != absl::StatusCode::kDataLoss) {
        (void)nvme_->Delete(e.key);
      }
      DropNvme(id, e);
      if (first_error.ok()) {
        first_error = absl::Status(results[k].code(),
                                   absl::StrCat("get: chunk ", e.key.ShortHex(),
                                                " could not be read from NVMe: ",
                                                results[k].message()));
      }
    }
    cv_.SignalAll();
  }
  // Wait for promotions of these entries started by other callers.
  auto promoting = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (EntryId id : ids) {
      if (index_.Get(id)->has(IndexEntry::kPromoting)) return true;
    }
    return false;
  };
  while (promoting()) cv_.Wait(&mu_);
  return first_error;
}

absl::StatusOr<ReadLease> EngineImpl::Acquire(uint32_t ns, std::span<const ChunkKey> keys,
                                              absl::Duration ttl) {
  RETURN_IF_ERROR(CheckBatch(keys.size(), "get"));
  ASSIGN_OR_RETURN(absl::Time expires, ExpiryFor(ttl));
  absl::flat_hash_set<ChunkKey> seen;
  for (const ChunkKey& key : keys) {
    if (!seen.insert(key).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("get: key ", key.ShortHex(), " appears twice in one call"));
    }
  }
  ReadLease result;
  result.expires = expires;
  result.chunks.resize(keys.size());
  std::vector<EntryId> ids(keys.size());

  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(FindNamespace(ns).status());
  // 1. Pin everything, so that our own allocations cannot evict it.
  for (size_t i = 0; i < keys.size(); ++i) {
    IndexEntry* e = FindCommitted(ns, keys[i], &ids[i]);
    if (e == nullptr) {
      for (size_t j = 0; j < i; ++j) Unpin(ids[j]);
      return absl::NotFoundError(absl::StrCat("get: chunk ", keys[i].ShortHex(), " (key ", i,
                                              " of ", keys.size(), ") is not stored"));
    }
    ++e->read_pins;
    result.chunks[i].found_in = e->has(IndexEntry::kInDram) ? Tier::kDram : Tier::kNvme;
  }
  auto fail = [&](absl::Status status) {
    for (EntryId id : ids) Unpin(id);
    return status;
  };
  // 2-4 repeat until every chunk is in DRAM: a promotion started by another
  // caller may have been abandoned, leaving the chunk on NVMe only.
  while (true) {
    bool all_in_dram = true;
    for (EntryId id : ids) {
      const IndexEntry& e = *index_.Get(id);
      if (!e.has(IndexEntry::kInDram)) all_in_dram = false;
      if (!e.has(IndexEntry::kInDram) && !e.has(IndexEntry::kOnNvme) &&
          !e.has(IndexEntry::kPromoting)) {
        return fail(absl::NotFoundError(absl::StrCat(
            "get: chunk ", e.key.ShortHex(),
            " was dropped while being read (its NVMe copy failed verification)")));
      }
    }
    if (all_in_dram) break;
    if (absl::Status s = PromoteLocked(ids); !s.ok()) return fail(s);
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    IndexEntry& e = *index_.Get(ids[i]);
    if (result.chunks[i].found_in == Tier::kDram) {
      ++counters_.reads_dram;
      dram_policy_->OnAccess(ids[i]);
    }
    if (e.has(IndexEntry::kOnNvme)) nvme_policy_->OnAccess(ids[i]);
    ReadChunk& chunk = result.chunks[i];
    chunk.key = e.key;
    chunk.pool_offset = e.dram_offset;
    chunk.data = pool_->Slot(e.dram_offset, e.size);
    chunk.checksum = e.checksum;
  }
  Lease lease;
  lease.ns = ns;
  lease.expires = expires;
  lease.entries = std::move(ids);
  result.id = AddLease(std::move(lease));
  return result;
}

absl::Status EngineImpl::Release(LeaseId lease_id) {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(lease_id);
  if (it == leases_.end() || it->second.write) {
    return absl::NotFoundError(
        absl::StrCat("release: no read lease ", lease_id, " (unknown, expired or released)"));
  }
  for (EntryId id : TakeLease(it).entries) Unpin(id);
  return absl::OkStatus();
}

// ------------------------------------------------------------ conveniences

absl::Status EngineImpl::Put(uint32_t ns, const ChunkKey& key, std::optional<ChunkKey> parent,
                             std::span<const std::byte> payload) {
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(const NamespaceInfo* info, FindNamespace(ns));
    if (payload.size() != info->chunk_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("put: payload of ", payload.size(),
                                                     " bytes; the namespace's chunks are ",
                                                     info->chunk_bytes, " bytes"));
    }
  }
  PutItem item{key, parent};
  ASSIGN_OR_RETURN(PutLease lease, BeginPut(ns, std::span<const PutItem>(&item, 1), absl::ZeroDuration()));
  const PutSlot& slot = lease.slots[0];
  if (!slot.already_present) std::memcpy(slot.dest.data(), payload.data(), payload.size());
  const uint64_t checksum = ChunkChecksum(payload);
  return CommitPut(lease.id, std::span<const uint64_t>(&checksum, 1));
}

absl::Status EngineImpl::Get(uint32_t ns, const ChunkKey& key, std::span<std::byte> out) {
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(const NamespaceInfo* info, FindNamespace(ns));
    if (out.size() != info->chunk_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("get: buffer of ", out.size(),
                                                     " bytes; the namespace's chunks are ",
                                                     info->chunk_bytes, " bytes"));
    }
  }
  ASSIGN_OR_RETURN(ReadLease lease, Acquire(ns, std::span<const ChunkKey>(&key, 1), absl::ZeroDuration()));
  const ReadChunk& chunk = lease.chunks[0];
  std::memcpy(out.data(), chunk.data.data(), chunk.data.size());
  absl::Status status = Release(lease.id);
  if (ChunkChecksum(out) != chunk.checksum) {
    absl::MutexLock lock(&mu_);
    ++counters_.checksum_failures;
    return absl::DataLossError(
        absl::StrCat("get: chunk ", key.ShortHex(), " does not match its checksum"));
  }
  return status;
}

// ------------------------------------------------------ background work

size_t EngineImpl::ReapExpiredLeases() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  std::vector<LeaseId> expired;
  for (const auto& [when, id] : lease_expiry_) {
    if (when > now) break;
    if (!leases_.at(id).committing) expired.push_back(id);
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
  return absl::OkStatus();
}

void EngineImpl::WriteBackLoop() {
  absl::MutexLock lock(&mu_);
  while (true) {
    while (write_back_queue_.empty() && !stopping_) cv_.Wait(&mu_);
    if (write_back_queue_.empty()) return;  // stopping, and everything flushed
    const EntryId id = write_back_queue_.front();
    write_back_queue_.pop_front();
    IndexEntry* e = index_.Get(id);
    if (e == nullptr || !e->has(IndexEntry::kFlushPending)) continue;
    NvmeRecord record;
    record.key = e->key;
    if (const IndexEntry* parent = index_.Get(e->parent)) record.parent = parent->key;
    record.namespace_id = e->ns;
    record.size = e->size;
    record.checksum = e->checksum;
    std::span<const std::byte> bytes = pool_->Slot(e->dram_offset, e->size);
    write_back_busy_ = true;
    mu_.Unlock();
    absl::Status status = nvme_->Write(record, bytes);
    mu_.Lock();
    write_back_busy_ = false;
    e = index_.Get(id);  // pinned by kFlushPending: still live
    e->set(IndexEntry::kFlushPending, false);
    if (status.ok()) {
      e->set(IndexEntry::kOnNvme, true);
      nvme_policy_->OnInsert(id, e->parent);
      nvme_used_ += e->size;
      ++counters_.write_backs;
      EnforceNvmeCapacity();
    } else {
      ++counters_.write_back_errors;
    }
    cv_.SignalAll();
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
    if (!decoded.ok() || id != namespaces_.size() + 1) {
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
    namespaces_.push_back(std::move(info));
  }));
  RETURN_IF_ERROR(status);
  std::vector<std::pair<EntryId, ChunkKey>> parents;
  std::vector<ChunkKey> inconsistent;
  RETURN_IF_ERROR(nvme_->ForEach([&](const NvmeRecord& record) {
    if (record.namespace_id == 0 || record.namespace_id > namespaces_.size() ||
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
    nvme_used_ += record.size;
    if (record.parent) parents.emplace_back(id, *record.parent);
  }));
  for (const ChunkKey& key : inconsistent) RETURN_IF_ERROR(nvme_->Delete(key));
  absl::flat_hash_map<EntryId, EntryId> parent_of;
  for (const auto& [id, parent_key] : parents) parent_of[id] = index_.Find(parent_key);
  index_.ForEach([&](EntryId id, IndexEntry& e) {
    auto it = parent_of.find(id);
    e.parent = it == parent_of.end() ? kNoEntry : it->second;
    nvme_policy_->OnInsert(id, e.parent);
  });
  counters_.chunks_restored = index_.size();
  EnforceNvmeCapacity();
  return absl::OkStatus();
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
  s.namespaces = namespaces_.size();
  s.write_back_queue = write_back_queue_.size() + (write_back_busy_ ? 1 : 0);
  return s;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> Engine::Open(const EngineOptions& options) {
  if (options.dram_bytes == 0) {
    return absl::InvalidArgumentError("dram_bytes must be positive");
  }
  if (!options.nvme_path.empty() && options.nvme_capacity_bytes == 0) {
    return absl::InvalidArgumentError("nvme_capacity_bytes must be positive with an NVMe path");
  }
  if (options.default_lease_ttl <= absl::ZeroDuration() ||
      options.max_lease_ttl < options.default_lease_ttl) {
    return absl::InvalidArgumentError(
        "lease ttls must satisfy 0 < default_lease_ttl <= max_lease_ttl");
  }
  if (options.max_keys_per_call == 0) {
    return absl::InvalidArgumentError("max_keys_per_call must be positive");
  }
  Clock* clock = options.clock != nullptr ? options.clock : Clock::Real();
  ASSIGN_OR_RETURN(std::unique_ptr<EvictionPolicy> dram_policy,
                   eviction::CreatePolicy(options.dram_policy, clock));
  ASSIGN_OR_RETURN(std::unique_ptr<EvictionPolicy> nvme_policy,
                   eviction::CreatePolicy(options.nvme_policy, clock));
  ASSIGN_OR_RETURN(std::unique_ptr<DramPool> pool, DramPool::Create(options.dram_bytes));
  std::unique_ptr<NvmeTier> nvme;
  if (!options.nvme_path.empty()) {
    NvmeTierOptions nvme_options;
    nvme_options.path = options.nvme_path;
    nvme_options.capacity_bytes = options.nvme_capacity_bytes;
    nvme_options.sync_writes = options.sync_nvme_writes;
    ASSIGN_OR_RETURN(nvme, NvmeTier::Open(nvme_options));
  }
  auto engine = std::make_unique<EngineImpl>(options, clock, std::move(pool), std::move(nvme),
                                             std::move(dram_policy), std::move(nvme_policy));
  RETURN_IF_ERROR(engine->Restore());
  engine->StartThreads();
  return std::unique_ptr<Engine>(std::move(engine));
}

}  // namespace strata::store
