#include "store/engine.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "store/common/checksum.h"
#include "store/common/status_macros.h"
#include "store/engine_impl.h"

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

namespace internal {

// ---------------------------------------------------------------- helpers

absl::StatusOr<const NamespaceInfo*> EngineImpl::FindNamespace(uint32_t ns) const {
  if (ns == 0 || ns > namespaces_.size() || ns_state_[ns - 1] != NsState::kLive) {
    return absl::NotFoundError(absl::StrCat("unknown namespace id ", ns));
  }
  return &namespaces_[ns - 1];
}

const NamespaceInfo* EngineImpl::FindNamespaceLocked(const NamespaceSpec& canonical,
                                                     std::string_view tenant) const {
  for (size_t i = 0; i < namespaces_.size(); ++i) {
    if (ns_state_[i] != NsState::kFree && namespaces_[i].spec == canonical &&
        namespaces_[i].tenant == tenant) {
      return &namespaces_[i];
    }
  }
  return nullptr;
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

std::optional<uint64_t> EngineImpl::AllocateDram(uint64_t size, AllocationRules rules) {
  const absl::Time deadline = absl::Now() + options_.write_back_wait;
  while (true) {
    if (auto offset = pool_->Allocate(size)) return offset;
    auto pick = [&](bool evict_prefetched) ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return dram_policy_->PickVictim([&](EntryId id) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        const IndexEntry* e = index_.Get(id);
        return e != nullptr && DramEvictable(id, *e, evict_prefetched) &&
               NeededAt(id) > rules.protect_needed_until;
      });
    };
    EntryId victim = pick(false);
    if (victim == kNoEntry && rules.may_evict_prefetched) victim = pick(true);
    if (victim == kNoEntry) {
      // Chunks awaiting write-back become evictable once persisted: wait for
      // the writer (back-pressure) rather than fail at once.
      // A failing NVMe tier frees nothing soon: fail at once.
      const bool writer_pending =
          (!write_back_queue_.empty() || write_back_busy_) && write_back_error_.ok();
      if (!rules.wait_for_write_back || !writer_pending || stopping_ ||
          cv_.WaitWithDeadline(&mu_, deadline)) {
        return std::nullopt;
      }
      continue;
    }
    EvictDram(victim);
  }
}

void EngineImpl::EvictDram(EntryId victim) {
  ++counters_.dram_evictions;
  if (needed_at_.contains(victim)) {
    ++counters_.dram_evictions_hinted;
  } else {
    ++counters_.dram_evictions_unhinted;
  }
  DropDram(victim, *index_.Get(victim));
}

absl::Time EngineImpl::NeededAt(EntryId id) const {
  auto it = needed_at_.find(id);
  return it == needed_at_.end() ? absl::InfiniteFuture() : it->second;
}

std::vector<absl::Status> EngineImpl::ReadReservedFromNvme(std::span<const EntryId> ids) {
  std::vector<std::pair<ChunkKey, std::span<std::byte>>> reads;
  for (EntryId id : ids) {
    const IndexEntry& e = *index_.Get(id);
    reads.emplace_back(e.key, pool_->Slot(e.dram_offset, e.size));
  }
  std::vector<absl::Status> results(reads.size());
  mu_.Unlock();
  for (size_t k = 0; k < reads.size(); ++k) {
    results[k] = nvme_->Read(reads[k].first, reads[k].second);
  }
  mu_.Lock();
  return results;
}

absl::Status EngineImpl::CompletePromotion(EntryId id, const absl::Status& read) {
  IndexEntry& e = *index_.Get(id);
  e.set(IndexEntry::kPromoting, false);
  if (read.ok()) {
    e.set(IndexEntry::kInDram, true);
    DramInsert(id, e);
    Publish(e);
    return absl::OkStatus();
  }
  pool_->Free(e.dram_offset, e.size);
  CreditDram(e.ns, e.size);
  const std::string key = e.key.ShortHex();
  if (read.code() == absl::StatusCode::kDataLoss) ++counters_.checksum_failures;
  if (read.code() == absl::StatusCode::kDataLoss || read.code() == absl::StatusCode::kNotFound) {
    // The tier dropped a corrupt copy itself (or lost it): forget it.
    DropNvme(id, e);
  } else {
    // An I/O error says nothing about the copy: keep it for the next read.
    ++counters_.nvme_read_errors;
  }
  return absl::Status(read.code(), absl::StrCat("chunk ", key, " could not be read from NVMe: ",
                                                read.message()));
}

void EngineImpl::DropDram(EntryId id, IndexEntry& e) {
  if (e.has(IndexEntry::kPrefetched)) {  // evicted before its job read it
    e.set(IndexEntry::kPrefetched, false);
    prefetched_.erase(id);
    ++counters_.prefetches_wasted;
  }
  Withdraw(e);  // before the slot can be written again
  pool_->Free(e.dram_offset, e.size);
  CreditDram(e.ns, e.size);
  e.set(IndexEntry::kInDram, false);
  DramRemove(id, e);
  MaybeErase(id, e);
}

void EngineImpl::Publish(const IndexEntry& e) {
  if (read_index_ == nullptr) return;
  if (!read_index_->Publish(e.key, e.ns, e.dram_offset, e.size, e.checksum)) {
    ++counters_.read_index_full;
  }
}

void EngineImpl::DropNvme(EntryId id, IndexEntry& e) {
  e.set(IndexEntry::kOnNvme, false);
  NvmeRemove(id, e);
  CreditNvme(e.ns, e.size);
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
    CreditDram(e->ns, e->size);
    index_.Erase(id);
  }
}

// ------------------------------------------------------------ namespaces

namespace {

// The spec with its extra keys in canonical order: identity is the canonical
// encoding, whatever order the caller listed them in.
absl::StatusOr<NamespaceSpec> Canonical(const NamespaceSpec& spec) {
  RETURN_IF_ERROR(spec.Validate());
  return NamespaceSpec::FromCanonicalBytes(spec.CanonicalBytes());
}

}  // namespace

absl::StatusOr<uint32_t> EngineImpl::RegisterNamespace(const NamespaceSpec& raw_spec,
                                                       std::string_view tenant) {
  ASSIGN_OR_RETURN(const NamespaceSpec spec, Canonical(raw_spec));
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
  if (const NamespaceInfo* info = FindNamespaceLocked(spec, tenant)) {
    if (ns_state_[info->id - 1] == NsState::kRemoving) {
      return absl::UnavailableError(absl::StrCat(
          "namespace ", info->id, " is being removed; register it again once that is done"));
    }
    return info->id;
  }
  size_t slot = 0;
  while (slot < ns_state_.size() && ns_state_[slot] != NsState::kFree) ++slot;
  if (slot >= 0xffff) {
    return absl::ResourceExhaustedError(
        "a node holds at most 65535 namespaces; remove unused ones (strata remove-namespace)");
  }
  NamespaceInfo info;
  info.id = static_cast<uint32_t>(slot + 1);
  info.spec = spec;
  info.tenant = std::string(tenant);
  info.chunk_bytes = chunk;
  if (nvme_ != nullptr) {
    RETURN_IF_ERROR(nvme_->PutNamespace(info.id, EncodeNamespaceRecord(spec, tenant)));
  }
  if (slot == namespaces_.size()) {
    namespaces_.push_back(std::move(info));
    ns_state_.push_back(NsState::kLive);
  } else {
    namespaces_[slot] = std::move(info);
    ns_state_[slot] = NsState::kLive;
  }
  AttachAccount(static_cast<uint32_t>(slot + 1), std::string(tenant));
  return static_cast<uint32_t>(slot + 1);
}

absl::StatusOr<uint32_t> EngineImpl::FindNamespace(const NamespaceSpec& raw_spec,
                                                   std::string_view tenant) const {
  ASSIGN_OR_RETURN(const NamespaceSpec spec, Canonical(raw_spec));
  absl::MutexLock lock(&mu_);
  const NamespaceInfo* info = FindNamespaceLocked(spec, tenant);
  if (info == nullptr || ns_state_[info->id - 1] != NsState::kLive) {
    return absl::NotFoundError("namespace is not registered");
  }
  return info->id;
}

absl::StatusOr<uint64_t> EngineImpl::RemoveNamespace(uint32_t ns) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(FindNamespace(ns).status());
  size_t open = 0;
  for (const auto& [id, lease] : leases_) open += lease.ns == ns ? 1 : 0;
  if (open > 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "remove namespace ", ns, ": ", open,
        " leases on it are open; retry once they are released or expire"));
  }
  // From here on every call naming `ns` is NotFound, so no new entry, lease
  // or hint of it appears.
  ns_state_[ns - 1] = NsState::kRemoving;
  const size_t hint_sets = hint_sets_.size();
  absl::erase_if(hint_sets_, [&](const auto& kv) { return kv.second.ns == ns; });
  if (hint_sets_.size() != hint_sets) RefreshHints();
  // Wait for I/O already under way on its chunks (a write-back or a
  // promotion runs without the lock).
  auto busy = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    bool any = false;
    index_.ForEach([&](EntryId id, IndexEntry& e) {
      if (e.ns == ns && (id == write_back_current_ || e.has(IndexEntry::kPromoting))) any = true;
    });
    return any;
  };
  while (busy()) cv_.Wait(&mu_);
  std::vector<EntryId> ids;
  index_.ForEach([&](EntryId id, IndexEntry& e) {
    if (e.ns == ns) ids.push_back(id);
  });
  std::vector<ChunkKey> on_nvme;
  for (EntryId id : ids) {
    IndexEntry& e = *index_.Get(id);
    // Queued write-backs skip entries that are no longer flush-pending.
    SetFlushPending(e, false);
    if (e.has(IndexEntry::kPrefetched)) prefetched_.erase(id);
    if (e.has(IndexEntry::kInDram)) {
      Withdraw(e);
      pool_->Free(e.dram_offset, e.size);
      CreditDram(ns, e.size);
      DramRemove(id, e);
    }
    if (e.has(IndexEntry::kOnNvme)) {
      on_nvme.push_back(e.key);
      NvmeRemove(id, e);
      CreditNvme(ns, e.size);
    }
    index_.Erase(id);
  }
  std::erase_if(write_back_retry_, [&](EntryId id) { return index_.Get(id) == nullptr; });
  // Delete the NVMe copies in batches, letting other calls in between; a key
  // someone stored again meanwhile (in another namespace) is left alone.
  constexpr size_t kDeletesPerLock = 256;
  absl::Status status;
  for (size_t i = 0; i < on_nvme.size(); ++i) {
    if (index_.Find(on_nvme[i]) == kNoEntry) {
      if (absl::Status s = nvme_->Delete(on_nvme[i]); !s.ok() && status.ok()) status = s;
    }
    if ((i + 1) % kDeletesPerLock == 0) YieldLock();
  }
  if (nvme_ != nullptr && status.ok()) status = nvme_->DeleteNamespace(ns);
  if (!status.ok()) {
    // The namespace stays reserved: its record or some chunks are still on
    // NVMe and would come back at restart under this id.
    ns_state_[ns - 1] = NsState::kLive;
    return absl::Status(status.code(), absl::StrCat("remove namespace ", ns, ": ",
                                                    status.message()));
  }
  ns_state_[ns - 1] = NsState::kFree;
  namespaces_[ns - 1] = NamespaceInfo();
  DetachAccount(ns);
  ++counters_.namespaces_removed;
  cv_.SignalAll();
  return static_cast<uint64_t>(ids.size());
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
  result.persisted.reserve(keys.size());
  bool prefix = true;
  for (const ChunkKey& key : keys) {
    EntryId id;
    const IndexEntry* e = FindCommitted(ns, key, &id);
    Tier tier = Tier::kMissing;
    if (e != nullptr) tier = e->has(IndexEntry::kInDram) ? Tier::kDram : Tier::kNvme;
    result.tiers.push_back(tier);
    result.persisted.push_back(e != nullptr && e->has(IndexEntry::kOnNvme));
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
    if (item.parent.has_value() && *item.parent == item.key) {
      return absl::InvalidArgumentError(
          absl::StrCat("put: chunk ", item.key.ShortHex(), " names itself as its parent"));
    }
  }
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(const NamespaceInfo* info, FindNamespace(ns));
  if (!write_back_error_.ok()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "put: the node is not persisting (NVMe write-back failed: ", write_back_error_.message(),
        "); ", write_back_retry_.size(), " acknowledged chunks wait in DRAM for a retry"));
  }
  const uint32_t size = static_cast<uint32_t>(info->chunk_bytes);
  RETURN_IF_ERROR(CheckTenantNvmeFits(ns, size));
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
      if (e->has(IndexEntry::kInDram)) DramAccess(id, *e);
      result.slots.push_back(slot);
      continue;
    }
    // Room within the tenant's quota first (from its own chunks only), and
    // charged before AllocateDram may release the lock.
    if (absl::Status room = MakeTenantDramRoom(ns, size, {}, "put"); !room.ok()) {
      DiscardWrites(lease);
      return room;
    }
    ChargeDram(ns, size);
    std::optional<uint64_t> offset = AllocateDram(size);
    if (!offset) {
      CreditDram(ns, size);
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
    e.parent = kNoEntry;
    if (item.parent.has_value()) {
      const EntryId parent = index_.Find(*item.parent);
      const IndexEntry* p = index_.Get(parent);
      if (p != nullptr && p->ns == ns) e.parent = parent;
    }
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

bool EngineImpl::AwaitNoWriters(LeaseId lease_id) {
  while (true) {
    auto it = leases_.find(lease_id);
    if (it == leases_.end()) return false;
    if (it->second.writers == 0) return true;
    cv_.Wait(&mu_);
  }
}

absl::Status EngineImpl::WriteSlot(LeaseId lease_id, size_t index,
                                   std::span<const std::byte> bytes) {
  std::span<std::byte> dest;
  {
    absl::MutexLock lock(&mu_);
    auto it = leases_.find(lease_id);
    if (it == leases_.end() || !it->second.write || it->second.committing) {
      return absl::NotFoundError(
          absl::StrCat("write: no open write lease ", lease_id, " (unknown, expired or done)"));
    }
    Lease& lease = it->second;
    if (index >= lease.requested) {
      return absl::InvalidArgumentError(absl::StrCat("write: slot ", index, " of a lease of ",
                                                     lease.requested, " chunks"));
    }
    auto pos = std::find(lease.positions.begin(), lease.positions.end(), index);
    if (pos == lease.positions.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("write: slot ", index, " was already present; nothing to write"));
    }
    const IndexEntry* e = index_.Get(lease.entries[pos - lease.positions.begin()]);
    if (bytes.size() != e->size) {
      return absl::InvalidArgumentError(absl::StrCat("write: ", bytes.size(),
                                                     " bytes for a chunk of ", e->size));
    }
    dest = pool_->Slot(e->dram_offset, e->size);
    ++lease.writers;
  }
  std::memcpy(dest.data(), bytes.data(), bytes.size());
  absl::MutexLock lock(&mu_);
  --leases_.at(lease_id).writers;  // the lease outlives its writers
  cv_.SignalAll();
  return absl::OkStatus();
}

absl::Status EngineImpl::CommitPut(LeaseId lease_id, std::span<const uint64_t> checksums) {
  std::vector<std::span<const std::byte>> slots;
  std::vector<uint64_t> expected;
  {
    absl::MutexLock lock(&mu_);
    AwaitNoWriters(lease_id);
    auto it = leases_.find(lease_id);
    if (it != leases_.end() && !it->second.write) {
      return absl::FailedPreconditionError(absl::StrCat(
          "commit: lease ", lease_id, " is a read lease; it stays open (release it instead)"));
    }
    if (it == leases_.end() || it->second.committing) {
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
    DramInsert(id, e);
    Publish(e);
    ++counters_.puts_committed;
    if (nvme_ != nullptr) {
      SetFlushPending(e, true);
      write_back_queue_.push_back(id);
    }
  }
  if (nvme_ != nullptr && !lease.entries.empty()) cv_.SignalAll();
  // A quota lowered while the lease was open: back under it as far as the
  // tenant's own chunks allow.
  if (!lease.entries.empty() && ns_account_[lease.ns - 1] != nullptr) {
    AllocationRules rules;
    rules.wait_for_write_back = false;
    (void)TrimTenantDram(AccountOf(lease.ns), 0, rules);
  }
  return absl::OkStatus();
}

absl::Status EngineImpl::AbortPut(LeaseId lease_id) {
  absl::MutexLock lock(&mu_);
  AwaitNoWriters(lease_id);
  auto it = leases_.find(lease_id);
  if (it != leases_.end() && !it->second.write) {
    return absl::FailedPreconditionError(absl::StrCat(
        "abort: lease ", lease_id, " is a read lease; it stays open (release it instead)"));
  }
  if (it == leases_.end() || it->second.committing) {
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
    auto abandon = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (EntryId m : mine) {
        IndexEntry& q = *index_.Get(m);
        pool_->Free(q.dram_offset, q.size);
        CreditDram(q.ns, q.size);
        q.set(IndexEntry::kPromoting, false);
      }
      cv_.SignalAll();
    };
    // Room within the tenant's quota (from its own chunks only), charged
    // before AllocateDram may release the lock.
    if (absl::Status room = MakeTenantDramRoom(e.ns, e.size, {}, "get"); !room.ok()) {
      abandon();
      return room;
    }
    ChargeDram(e.ns, e.size);
    std::optional<uint64_t> offset = AllocateDram(e.size);
    if (!offset) {
      CreditDram(e.ns, e.size);
      abandon();
      return absl::ResourceExhaustedError(
          absl::StrCat("get: no DRAM to promote a ", e.size, "-byte chunk from NVMe"));
    }
    // MakeTenantDramRoom or AllocateDram may have waited (dropping the
    // lock): recheck.
    if (e.has(IndexEntry::kInDram) || e.has(IndexEntry::kPromoting) ||
        !e.has(IndexEntry::kOnNvme)) {
      pool_->Free(*offset, e.size);
      CreditDram(e.ns, e.size);
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
    std::vector<absl::Status> results = ReadReservedFromNvme(mine);
    for (size_t k = 0; k < mine.size(); ++k) {
      absl::Status s = CompletePromotion(mine[k], results[k]);
      if (s.ok()) {
        ++counters_.reads_nvme;
      } else if (first_error.ok()) {
        first_error = absl::Status(s.code(), absl::StrCat("get: ", s.message()));
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
      DramAccess(ids[i], e);
    }
    if (e.has(IndexEntry::kOnNvme)) NvmeAccess(ids[i], e);
    if (e.has(IndexEntry::kPrefetched)) {
      e.set(IndexEntry::kPrefetched, false);
      prefetched_.erase(ids[i]);
      ++counters_.prefetches_used;
    }
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
  if (it != leases_.end() && it->second.write) {
    return absl::FailedPreconditionError(absl::StrCat(
        "release: lease ", lease_id,
        " is a write lease; it stays open (commit or abort it instead)"));
  }
  if (it == leases_.end()) {
    return absl::NotFoundError(
        absl::StrCat("release: no read lease ", lease_id, " (unknown, expired or released)"));
  }
  for (EntryId id : TakeLease(it).entries) Unpin(id);
  return absl::OkStatus();
}

absl::Status EngineImpl::CheckDramCopy(uint32_t ns, const ChunkKey& key) {
  absl::MutexLock lock(&mu_);
  EntryId id;
  IndexEntry* e = FindCommitted(ns, key, &id);
  if (e == nullptr || !e->has(IndexEntry::kInDram)) return absl::OkStatus();
  if (ChunkChecksum(pool_->Slot(e->dram_offset, e->size)) == e->checksum) {
    return absl::OkStatus();
  }
  ++counters_.checksum_failures;
  Withdraw(*e);  // lease-free readers must not find it, dropped or not
  const bool dropped =
      e->read_pins == 0 && !(e->flags & (IndexEntry::kFlushPending | IndexEntry::kPromoting));
  if (dropped) {
    ++counters_.dram_evictions;
    DropDram(id, *e);
  }
  return absl::DataLossError(absl::StrCat("chunk ", key.ShortHex(),
                                          " does not match its checksum in DRAM",
                                          dropped ? "; its DRAM copy was dropped" : ""));
}

absl::StatusOr<size_t> EngineImpl::Touch(uint32_t ns, std::span<const ChunkKey> keys) {
  RETURN_IF_ERROR(CheckBatch(keys.size(), "touch"));
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(FindNamespace(ns).status());
  size_t counted = 0;
  for (const ChunkKey& key : keys) {
    EntryId id;
    IndexEntry* e = FindCommitted(ns, key, &id);
    if (e == nullptr || !e->has(IndexEntry::kInDram)) continue;
    DramAccess(id, *e);
    if (e->has(IndexEntry::kOnNvme)) NvmeAccess(id, *e);
    if (e->has(IndexEntry::kPrefetched)) {
      e->set(IndexEntry::kPrefetched, false);
      prefetched_.erase(id);
      ++counters_.prefetches_used;
    }
    ++counted;
  }
  counters_.lease_free_reads += counted;
  return counted;
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

}  // namespace internal

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
  ASSIGN_OR_RETURN(std::unique_ptr<eviction::EvictionPolicy> dram_policy,
                   eviction::CreatePolicy(options.dram_policy, clock));
  ASSIGN_OR_RETURN(std::unique_ptr<eviction::EvictionPolicy> nvme_policy,
                   eviction::CreatePolicy(options.nvme_policy, clock));
  ASSIGN_OR_RETURN(std::unique_ptr<DramPool> pool, DramPool::Create(options.dram_bytes, options.shared_dram));
  if (options.prefault_dram) {
    if (options.on_prefault) options.on_prefault(pool->capacity(), false, absl::ZeroDuration());
    const absl::Time start = absl::Now();
    RETURN_IF_ERROR(pool->Prefault());
    if (options.on_prefault) options.on_prefault(pool->capacity(), true, absl::Now() - start);
  }
  std::unique_ptr<SharedReadIndex> read_index;
  if (options.shared_dram && options.read_index) {
    ASSIGN_OR_RETURN(read_index,
                     SharedReadIndex::Create(options.read_index_entries != 0
                                                 ? options.read_index_entries
                                                 : SharedReadIndex::EntriesFor(pool->capacity())));
  }
  std::unique_ptr<NvmeTier> nvme;
  if (!options.nvme_path.empty()) {
    NvmeTierOptions nvme_options;
    nvme_options.path = options.nvme_path;
    nvme_options.capacity_bytes = options.nvme_capacity_bytes;
    nvme_options.sync_writes = options.sync_nvme_writes;
    ASSIGN_OR_RETURN(nvme, NvmeTier::Open(nvme_options));
    if (options.wrap_nvme) nvme = options.wrap_nvme(std::move(nvme));
  }
  auto engine = std::make_unique<internal::EngineImpl>(options, clock, std::move(pool),
                                                       std::move(read_index), std::move(nvme),
                                             std::move(dram_policy), std::move(nvme_policy));
  RETURN_IF_ERROR(engine->Restore());
  engine->StartThreads();
  return std::unique_ptr<Engine>(std::move(engine));
}

}  // namespace strata::store
