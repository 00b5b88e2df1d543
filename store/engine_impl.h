// EngineImpl: the implementation behind Engine (engine.h). Internal to
// store/: engine.cc holds the request paths, engine_background.cc the
// write-back, lease reaping, restart and stats.
#ifndef STRATA_STORE_ENGINE_IMPL_H_
#define STRATA_STORE_ENGINE_IMPL_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <span>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/random/random.h"
#include "absl/synchronization/mutex.h"
#include "eviction/eviction_policy.h"
#include "store/chunk_index.h"
#include "store/dram_pool.h"
#include "store/engine.h"
#include "store/nvme_tier.h"
#include "store/shared_read_index.h"

namespace strata::store::internal {

using eviction::EvictionPolicy;

// Tenant and canonical spec packed for NvmeTier::PutNamespace:
// u32 LE tenant length, tenant bytes, canonical namespace bytes.
std::vector<uint8_t> EncodeNamespaceRecord(const NamespaceSpec& spec, std::string_view tenant);
absl::StatusOr<std::pair<NamespaceSpec, std::string>> DecodeNamespaceRecord(
    std::span<const uint8_t> in);

// How EngineImpl::AllocateDram may make room.
struct AllocationRules {
  // Wait for the write-back thread when DRAM is full of unflushed chunks.
  bool wait_for_write_back = true;
  // Only evict chunks that no hinted job needs at or before this time.
  absl::Time protect_needed_until = absl::InfinitePast();
  // As a last resort, evict chunks prefetched for hinted jobs (a read or
  // write that needs the room now comes before a job that runs later).
  bool may_evict_prefetched = true;
};

// Thread-safe; see Engine.
class EngineImpl final : public Engine {
 public:
  EngineImpl(const EngineOptions& options, Clock* clock, std::unique_ptr<DramPool> pool,
             std::unique_ptr<SharedReadIndex> read_index, std::unique_ptr<NvmeTier> nvme,
             std::unique_ptr<EvictionPolicy> dram_policy,
             std::unique_ptr<EvictionPolicy> nvme_policy)
      : options_(options),
        clock_(clock),
        pool_(std::move(pool)),
        read_index_(std::move(read_index)),
        nvme_(std::move(nvme)),
        dram_policy_(std::move(dram_policy)),
        nvme_policy_(std::move(nvme_policy)) {}

  ~EngineImpl() override {
    if (read_index_ != nullptr) read_index_->Close();  // lease-free readers stop here
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      cv_.SignalAll();
    }
    if (write_back_thread_.joinable()) write_back_thread_.join();
    if (reaper_thread_.joinable()) reaper_thread_.join();
    if (prefetch_thread_.joinable()) prefetch_thread_.join();
    if (nvme_ != nullptr) (void)nvme_->Flush();
  }

  absl::Status Restore();
  void StartThreads();

  absl::StatusOr<uint32_t> RegisterNamespace(const NamespaceSpec& spec,
                                             std::string_view tenant) override;
  absl::StatusOr<uint32_t> FindNamespace(const NamespaceSpec& spec,
                                         std::string_view tenant) const override;
  absl::StatusOr<NamespaceInfo> GetNamespace(uint32_t ns) const override;
  absl::StatusOr<uint64_t> RemoveNamespace(uint32_t ns) override;
  absl::StatusOr<LookupResult> Lookup(uint32_t ns, std::span<const ChunkKey> keys) override;
  absl::StatusOr<PutLease> BeginPut(uint32_t ns, std::span<const PutItem> items,
                                    absl::Duration ttl) override;
  absl::Status CommitPut(LeaseId lease, std::span<const uint64_t> checksums) override;
  absl::Status AbortPut(LeaseId lease) override;
  absl::Status WriteSlot(LeaseId lease, size_t index, std::span<const std::byte> bytes) override;
  absl::StatusOr<ReadLease> Acquire(uint32_t ns, std::span<const ChunkKey> keys,
                                    absl::Duration ttl) override;
  void SetTenantQuotas(const std::map<std::string, TenantQuota, std::less<>>& quotas) override;
  TenantStats GetTenantStats(std::string_view tenant) const override;
  std::vector<TenantStats> AllTenantStats() const override;
  absl::Status Release(LeaseId lease) override;
  absl::Status CheckDramCopy(uint32_t ns, const ChunkKey& key) override;
  absl::Status Put(uint32_t ns, const ChunkKey& key, std::optional<ChunkKey> parent,
                   std::span<const std::byte> payload) override;
  absl::Status Get(uint32_t ns, const ChunkKey& key, std::span<std::byte> out) override;
  absl::StatusOr<size_t> Touch(uint32_t ns, std::span<const ChunkKey> keys) override;
  absl::Status SetHints(std::string_view scheduler, uint32_t ns, std::span<const JobHint> jobs,
                        absl::Duration ttl) override;
  size_t ReapExpiredLeases() override;
  absl::Status FlushWriteBack() override;
  absl::Status PersistenceStatus() const override;
  EngineStats Stats() const override;
  std::span<std::byte> dram_region() const override { return pool_->region(); }
  std::string dram_share_path() const override { return pool_->share_path(); }
  std::string read_index_share_path() const override {
    return read_index_ != nullptr ? read_index_->share_path() : std::string();
  }
  size_t max_keys_per_call() const override { return options_.max_keys_per_call; }

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
    // WriteSlot copies running into this write lease's slots (without the
    // lock): until they end the lease is not committed, aborted or reaped.
    int writers = 0;
  };
  // Waits until no WriteSlot copies into `lease_id`; false if it is gone.
  bool AwaitNoWriters(LeaseId lease_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // A live namespace (registered, not being removed).
  absl::StatusOr<const NamespaceInfo*> FindNamespace(uint32_t ns) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The live slot of (canonical spec, tenant), or nullptr.
  const NamespaceInfo* FindNamespaceLocked(const NamespaceSpec& canonical,
                                           std::string_view tenant) const
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

  // A tenant's usage and quota (engine_quota.cc). One per tenant string
  // with a live namespace or a quota.
  struct TenantAccount {
    TenantStats stats;  // tenant, quota, bytes and counters
    // Its chunks queued for write-back (kFlushPending): DRAM it may get
    // back by waiting for the writer.
    uint64_t flush_pending = 0;
    // With a DRAM (NVMe) quota: the tier's policy over this tenant's chunks
    // only, fed the same events as the tier's own, so that its victims are
    // found without walking past other tenants' chunks. Null without.
    std::unique_ptr<EvictionPolicy> dram_order;
    std::unique_ptr<EvictionPolicy> nvme_order;
  };
  // The tier policies and, for a tenant with a quota, its own order: every
  // residency change and access goes through these.
  void DramInsert(EntryId id, const IndexEntry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    dram_policy_->OnInsert(id, e.parent);
    if (EvictionPolicy* own = AccountOf(e.ns).dram_order.get()) own->OnInsert(id, e.parent);
  }
  void DramAccess(EntryId id, const IndexEntry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    dram_policy_->OnAccess(id);
    if (EvictionPolicy* own = AccountOf(e.ns).dram_order.get()) own->OnAccess(id);
  }
  void DramRemove(EntryId id, const IndexEntry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    dram_policy_->OnRemove(id);
    if (EvictionPolicy* own = AccountOf(e.ns).dram_order.get()) own->OnRemove(id);
  }
  void NvmeInsert(EntryId id, const IndexEntry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    nvme_policy_->OnInsert(id, e.parent);
    if (EvictionPolicy* own = AccountOf(e.ns).nvme_order.get()) own->OnInsert(id, e.parent);
  }
  void NvmeAccess(EntryId id, const IndexEntry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    nvme_policy_->OnAccess(id);
    if (EvictionPolicy* own = AccountOf(e.ns).nvme_order.get()) own->OnAccess(id);
  }
  void NvmeRemove(EntryId id, const IndexEntry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    nvme_policy_->OnRemove(id);
    if (EvictionPolicy* own = AccountOf(e.ns).nvme_order.get()) own->OnRemove(id);
  }
  // Creates or drops `account`'s own orders to match its quota. A new one
  // takes the tenant's resident chunks in the tier policy's victim order
  // (those the policy does not offer yet, such as chunks with resident
  // descendants under prefix-lru, as older) and their current hints.
  void SyncTenantOrders(TenantAccount& account) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::unique_ptr<EvictionPolicy> NewTenantOrder(TenantAccount& account, EvictionPolicy& tier,
                                                 const std::string& policy, uint8_t resident_flag)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether a tier's policy orders by hints ("scheduler"); the others
  // ignore them.
  bool PoliciesUseHints() const {
    return options_.dram_policy == "scheduler" || options_.nvme_policy == "scheduler";
  }
  // Gives each tenant order the hints of its own chunks (after a rebuild).
  void HintTenantOrders() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The account of namespace slot `ns` (live or being removed).
  TenantAccount& AccountOf(uint32_t ns) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return *ns_account_[ns - 1];
  }
  // Binds namespace slot `ns` (registered or restored) to its tenant's
  // account, creating it; Detach undoes it when the slot is freed.
  void AttachAccount(uint32_t ns, const std::string& tenant) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DetachAccount(uint32_t ns) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ChargeDram(uint32_t ns, uint64_t bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    AccountOf(ns).stats.dram_bytes += bytes;
  }
  void CreditDram(uint32_t ns, uint64_t bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    AccountOf(ns).stats.dram_bytes -= bytes;
  }
  void ChargeNvme(uint32_t ns, uint64_t bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    AccountOf(ns).stats.nvme_bytes += bytes;
    nvme_used_ += bytes;
  }
  void CreditNvme(uint32_t ns, uint64_t bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    AccountOf(ns).stats.nvme_bytes -= bytes;
    nvme_used_ -= bytes;
  }
  // Sets or clears kFlushPending on `e`, counting it for its tenant.
  void SetFlushPending(IndexEntry& e, bool on) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Evicts DRAM copies of `account`'s own chunks (the DRAM policy's order
  // restricted to them, as `rules` allow) until `size` more bytes fit its
  // DRAM quota. False when nothing of its own can go and they do not fit.
  bool TrimTenantDram(TenantAccount& account, uint64_t size, const AllocationRules& rules)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Deletes `account`'s own NVMe chunks (the NVMe policy's order) until
  // `size` more bytes fit its NVMe quota. ResourceExhausted when nothing of
  // its own can go and they do not fit; an NVMe delete's error as it is.
  absl::Status TrimTenantNvme(TenantAccount& account, uint64_t size)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Room for `size` more DRAM bytes of namespace `ns`'s tenant within its
  // quota (TrimTenantDram), waiting up to write_back_wait for its chunks
  // queued for write-back when `rules` allow. ResourceExhausted naming the
  // tenant and its quota (counted as a refusal) when nothing of its own can
  // go; NotFound if the namespace went while waiting. May release mu_.
  absl::Status MakeTenantDramRoom(uint32_t ns, uint64_t size, const AllocationRules& rules,
                                  const char* what) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // At BeginPut, with an NVMe tier: ResourceExhausted (counted as a
  // refusal) when one chunk of `size` bytes is larger than the tenant's NVMe
  // quota, so it could never be persisted.
  absl::Status CheckTenantNvmeFits(uint32_t ns, uint64_t size) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Allocates `size` bytes of DRAM, evicting unpinned chunks as needed.
  std::optional<uint64_t> AllocateDram(uint64_t size, AllocationRules rules = {})
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Committed, in DRAM, unpinned and persisted; and, unless
  // `evict_prefetched`, not prefetched for a job that is still hinted.
  bool DramEvictable(EntryId id, const IndexEntry& e, bool evict_prefetched) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return e.state == IndexEntry::kCommitted && e.has(IndexEntry::kInDram) && e.read_pins == 0 &&
           !(e.flags & (IndexEntry::kFlushPending | IndexEntry::kPromoting)) &&
           (evict_prefetched || !e.has(IndexEntry::kPrefetched) || !needed_at_.contains(id));
  }
  // When the soonest hinted job needs `id`; InfiniteFuture() when none does.
  absl::Time NeededAt(EntryId id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reads each of `ids` (marked kPromoting, DRAM slot reserved) from NVMe
  // into its slot, with the lock released for the I/O; one status per id.
  std::vector<absl::Status> ReadReservedFromNvme(std::span<const EntryId> ids)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Applies the outcome of reading `id` from NVMe into its reserved slot.
  absl::Status CompletePromotion(EntryId id, const absl::Status& read)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Evicts the DRAM copy of `victim` (DramEvictable), counting it.
  void EvictDram(EntryId victim) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropDram(EntryId id, IndexEntry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The read index (when there is one) follows the committed DRAM copies:
  // Publish once `e` is committed in DRAM; Withdraw before its slot is
  // freed or when its bytes are found corrupt (readers then take a lease).
  void Publish(const IndexEntry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Withdraw(const IndexEntry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (read_index_ != nullptr) read_index_->Withdraw(e.key);
  }
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

  // Rebuilds the merged hint view until no newer hint set waits; if another
  // caller is rebuilding, leaves the work to it. May release mu_.
  void RefreshHints() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Recomputes the merged hint view from the live hint sets and informs the
  // policies. Releases mu_ every kHintStepsPerLock chain steps.
  void RebuildHints() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Releases mu_ for a moment, letting waiting calls in first.
  void YieldLock() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Breaks parent cycles (possible only in records restored from NVMe).
  void BreakParentCycles() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes one queued chunk to NVMe (lock released for the I/O) and applies
  // the outcome: persisted, dropped (its DRAM copy is corrupt) or kept
  // pinned for a retry.
  void WriteBackOne(EntryId id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Promotes the chunks of the next hinted jobs within the window.
  void PrefetchRound() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  void WriteBackLoop();
  void ReaperLoop();
  void PrefetchLoop();

  // Constant after construction.
  const EngineOptions options_;
  Clock* const clock_;
  const std::unique_ptr<DramPool> pool_;  // allocation guarded by mu_
  // Null without EngineOptions::read_index; Publish/Withdraw guarded by mu_.
  const std::unique_ptr<SharedReadIndex> read_index_;
  const std::unique_ptr<NvmeTier> nvme_;  // thread-safe; may be null

  mutable absl::Mutex mu_;
  // Signalled when a promotion or write-back finishes, or on stop.
  absl::CondVar cv_;
  ChunkIndex index_ ABSL_GUARDED_BY(mu_);
  const std::unique_ptr<EvictionPolicy> dram_policy_ ABSL_PT_GUARDED_BY(mu_);
  const std::unique_ptr<EvictionPolicy> nvme_policy_ ABSL_PT_GUARDED_BY(mu_);
  enum class NsState : uint8_t { kFree, kLive, kRemoving };
  // Index id - 1; kFree slots are reused by RegisterNamespace.
  std::vector<NamespaceInfo> namespaces_ ABSL_GUARDED_BY(mu_);
  std::vector<NsState> ns_state_ ABSL_GUARDED_BY(mu_);
  // Per namespace slot: its tenant's account (null for kFree slots).
  std::vector<TenantAccount*> ns_account_ ABSL_GUARDED_BY(mu_);
  // By tenant; std::map keeps the accounts in place for ns_account_.
  std::map<std::string, TenantAccount, std::less<>> accounts_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, TenantQuota, std::less<>> quotas_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<LeaseId, Lease> leases_ ABSL_GUARDED_BY(mu_);
  absl::btree_set<std::pair<absl::Time, LeaseId>> lease_expiry_ ABSL_GUARDED_BY(mu_);
  absl::BitGen rng_ ABSL_GUARDED_BY(mu_);
  std::deque<EntryId> write_back_queue_ ABSL_GUARDED_BY(mu_);
  bool write_back_busy_ ABSL_GUARDED_BY(mu_) = false;
  EntryId write_back_current_ ABSL_GUARDED_BY(mu_) = kNoEntry;
  // Chunks whose write-back failed: still kFlushPending (pinned in DRAM),
  // tried again at write_back_retry_at_.
  std::deque<EntryId> write_back_retry_ ABSL_GUARDED_BY(mu_);
  absl::Time write_back_retry_at_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  // The last write-back error while the tier refuses writes; OK otherwise.
  absl::Status write_back_error_ ABSL_GUARDED_BY(mu_);
  uint64_t nvme_used_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  EngineStats counters_ ABSL_GUARDED_BY(mu_);

  struct HintSet {
    uint32_t ns = 0;
    absl::Time received;
    absl::Time expires;
    std::vector<JobHint> jobs;
  };
  struct HintedJob {
    absl::Time needed_at;
    std::vector<EntryId> chain;  // first chunk to last
  };
  absl::flat_hash_map<std::string, HintSet> hint_sets_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<EntryId, absl::Time> needed_at_ ABSL_GUARDED_BY(mu_);
  std::vector<HintedJob> hinted_jobs_ ABSL_GUARDED_BY(mu_);  // by needed_at
  absl::Time hints_expire_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  // A hint set changed since the last rebuild began / a rebuild runs.
  bool hints_dirty_ ABSL_GUARDED_BY(mu_) = false;
  bool hints_rebuilding_ ABSL_GUARDED_BY(mu_) = false;
  // Chunks promoted ahead of their job and not read yet (read: used;
  // evicted unread: wasted). Those still hinted fill the prefetch window.
  absl::flat_hash_set<EntryId> prefetched_ ABSL_GUARDED_BY(mu_);
  bool prefetch_wanted_ ABSL_GUARDED_BY(mu_) = false;

  std::thread write_back_thread_;
  std::thread reaper_thread_;
  std::thread prefetch_thread_;
};

}  // namespace strata::store::internal

#endif  // STRATA_STORE_ENGINE_IMPL_H_
