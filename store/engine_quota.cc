// Tenant quotas: byte accounting per tenant (each namespace's chunks charged
// to the tenant it was registered with) and room made within a quota from
// the tenant's own chunks only.
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "store/common/log.h"
#include "store/engine_impl.h"

namespace strata::store::internal {

void EngineImpl::AttachAccount(uint32_t ns, const std::string& tenant) {
  auto [it, created] = accounts_.try_emplace(tenant);
  TenantAccount& account = it->second;
  if (created) {
    account.stats.tenant = tenant;
    auto q = quotas_.find(tenant);
    if (q != quotas_.end()) account.stats.quota = q->second;
    SyncTenantOrders(account);
  }
  ++account.stats.namespaces;
  if (ns_account_.size() < ns) ns_account_.resize(ns, nullptr);
  ns_account_[ns - 1] = &account;
}

void EngineImpl::DetachAccount(uint32_t ns) {
  TenantAccount* account = ns_account_[ns - 1];
  ns_account_[ns - 1] = nullptr;
  if (account == nullptr) return;
  --account->stats.namespaces;
  // A tenant without namespaces or a quota is forgotten (tenant strings are
  // the callers' choice without authentication: keep no trace of each).
  if (account->stats.namespaces == 0 && !quotas_.contains(account->stats.tenant)) {
    accounts_.erase(account->stats.tenant);
  }
}

void EngineImpl::SetFlushPending(IndexEntry& e, bool on) {
  if (e.has(IndexEntry::kFlushPending) == on) return;
  e.set(IndexEntry::kFlushPending, on);
  TenantAccount& account = AccountOf(e.ns);
  if (on) {
    ++account.flush_pending;
  } else {
    --account.flush_pending;
  }
}

bool EngineImpl::TrimTenantDram(TenantAccount& account, uint64_t size,
                                const AllocationRules& rules) {
  const uint64_t quota = account.stats.quota.dram_bytes;
  if (quota == 0) return true;
  // The tenant's own order: the DRAM policy's order over its chunks alone.
  EvictionPolicy& order = *account.dram_order;
  while (account.stats.dram_bytes + size > quota) {
    auto pick = [&](bool evict_prefetched) ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return order.PickVictim([&](EntryId id) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        const IndexEntry* e = index_.Get(id);
        return e != nullptr && DramEvictable(id, *e, evict_prefetched) &&
               NeededAt(id) > rules.protect_needed_until;
      });
    };
    EntryId victim = pick(false);
    if (victim == kNoEntry && rules.may_evict_prefetched) victim = pick(true);
    if (victim == kNoEntry) return false;
    ++account.stats.dram_quota_evictions;
    EvictDram(victim);
  }
  return true;
}

absl::Status EngineImpl::TrimTenantNvme(TenantAccount& account, uint64_t size) {
  const uint64_t quota = account.stats.quota.nvme_bytes;
  if (quota == 0) return absl::OkStatus();
  EvictionPolicy& order = *account.nvme_order;
  while (account.stats.nvme_bytes + size > quota) {
    const EntryId victim = order.PickVictim([&](EntryId id) ABSL_NO_THREAD_SAFETY_ANALYSIS {
      const IndexEntry* e = index_.Get(id);
      // Not one being read: a reader may be about to promote it.
      return e != nullptr && !e->has(IndexEntry::kPromoting) && e->read_pins == 0;
    });
    if (victim == kNoEntry) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "tenant '", account.stats.tenant, "' holds ", account.stats.nvme_bytes,
          " NVMe bytes of its NVMe quota of ", quota, " and none of its chunks can leave NVMe"));
    }
    IndexEntry& e = *index_.Get(victim);
    // Deleted under the lock, as EnforceNvmeCapacity does.
    if (absl::Status s = nvme_->Delete(e.key); !s.ok()) return s;
    ++counters_.nvme_evictions;
    ++account.stats.nvme_quota_evictions;
    DropNvme(victim, e);
  }
  return absl::OkStatus();
}

absl::Status EngineImpl::MakeTenantDramRoom(uint32_t ns, uint64_t size,
                                            const AllocationRules& rules, const char* what) {
  const absl::Time deadline = absl::Now() + options_.write_back_wait;
  while (true) {
    if (ns > ns_account_.size() || ns_account_[ns - 1] == nullptr ||
        ns_state_[ns - 1] != NsState::kLive) {
      return absl::NotFoundError(absl::StrCat(what, ": namespace ", ns, " was removed"));
    }
    TenantAccount& account = AccountOf(ns);
    const uint64_t quota = account.stats.quota.dram_bytes;
    if (quota == 0) return absl::OkStatus();
    if (size <= quota && TrimTenantDram(account, size, rules)) return absl::OkStatus();
    // Its chunks awaiting write-back become evictable once persisted: wait
    // for the writer (as AllocateDram does) unless the tier refuses writes.
    const bool writer_pending = account.flush_pending > 0 && write_back_error_.ok();
    if (size <= quota && rules.wait_for_write_back && writer_pending && !stopping_ &&
        !cv_.WaitWithDeadline(&mu_, deadline)) {
      continue;
    }
    ++account.stats.quota_refusals;
    if (size > quota) {
      return absl::ResourceExhaustedError(absl::StrCat(
          what, ": a chunk of ", size, " bytes is larger than tenant '", account.stats.tenant,
          "''s DRAM quota of ", quota, " bytes (dram= in the tenants file)"));
    }
    return absl::ResourceExhaustedError(absl::StrCat(
        what, ": tenant '", account.stats.tenant, "' is at its DRAM quota (", quota,
        " bytes, dram= in the tenants file): it holds ", account.stats.dram_bytes,
        " bytes and none of its own chunks can be evicted (they are leased, being written "
        "or awaiting write-back); release or commit some first"));
  }
}

absl::Status EngineImpl::CheckTenantNvmeFits(uint32_t ns, uint64_t size) {
  if (nvme_ == nullptr) return absl::OkStatus();
  TenantAccount& account = AccountOf(ns);
  const uint64_t quota = account.stats.quota.nvme_bytes;
  if (quota == 0 || size <= quota) return absl::OkStatus();
  ++account.stats.quota_refusals;
  return absl::ResourceExhaustedError(absl::StrCat(
      "put: a chunk of ", size, " bytes is larger than tenant '", account.stats.tenant,
      "''s NVMe quota of ", quota, " bytes (nvme= in the tenants file)"));
}

void EngineImpl::SetTenantQuotas(const std::map<std::string, TenantQuota, std::less<>>& quotas) {
  absl::MutexLock lock(&mu_);
  quotas_ = quotas;
  for (auto it = accounts_.begin(); it != accounts_.end();) {
    TenantAccount& account = it->second;
    auto q = quotas_.find(it->first);
    account.stats.quota = q == quotas_.end() ? TenantQuota() : q->second;
    if (account.stats.namespaces == 0 && q == quotas_.end()) {
      it = accounts_.erase(it);
      continue;
    }
    SyncTenantOrders(account);
    ++it;
  }
  for (const auto& [tenant, quota] : quotas_) {
    auto [it, created] = accounts_.try_emplace(tenant);
    if (created) {
      it->second.stats.tenant = tenant;
      it->second.stats.quota = quota;
      SyncTenantOrders(it->second);
    }
  }
  // Down to the new quotas at once, as far as the tenants' chunks allow.
  AllocationRules rules;
  rules.wait_for_write_back = false;
  for (auto& [tenant, account] : accounts_) {
    (void)TrimTenantDram(account, 0, rules);
    if (nvme_ == nullptr) continue;
    absl::Status s = TrimTenantNvme(account, 0);
    if (!s.ok() && s.code() != absl::StatusCode::kResourceExhausted) {
      LogError("tenant '%s': NVMe chunks over its new quota could not be deleted (%s); "
               "they go at its next write-back",
               tenant.c_str(), s.ToString().c_str());
    }
  }
}

void EngineImpl::SyncTenantOrders(TenantAccount& account) {
  if (account.stats.quota.dram_bytes == 0) {
    account.dram_order.reset();
  } else if (account.dram_order == nullptr) {
    account.dram_order =
        NewTenantOrder(account, *dram_policy_, options_.dram_policy, IndexEntry::kInDram);
  }
  if (account.stats.quota.nvme_bytes == 0 || nvme_ == nullptr) {
    account.nvme_order.reset();
  } else if (account.nvme_order == nullptr) {
    account.nvme_order =
        NewTenantOrder(account, *nvme_policy_, options_.nvme_policy, IndexEntry::kOnNvme);
  }
}

std::unique_ptr<EvictionPolicy> EngineImpl::NewTenantOrder(TenantAccount& account,
                                                           EvictionPolicy& tier,
                                                           const std::string& policy,
                                                           uint8_t resident_flag) {
  // The name was checked when the engine opened.
  std::unique_ptr<EvictionPolicy> order = *eviction::CreatePolicy(policy, clock_);
  auto mine = [&](const IndexEntry& e) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return ns_account_[e.ns - 1] == &account;
  };
  // The tenant's chunks in the tier's victim order (a predicate that takes
  // none walks it all).
  std::vector<EntryId> offered;
  absl::flat_hash_set<EntryId> offered_set;
  (void)tier.PickVictim([&](EntryId id) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    const IndexEntry* e = index_.Get(id);
    if (e != nullptr && e->has(resident_flag) && mine(*e)) {
      offered.push_back(id);
      offered_set.insert(id);
    }
    return false;
  });
  // Inserted first, so older: the ones the tier does not offer yet.
  index_.ForEach([&](EntryId id, IndexEntry& e) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    if (e.state == IndexEntry::kCommitted && e.has(resident_flag) && mine(e) &&
        !offered_set.contains(id)) {
      order->OnInsert(id, e.parent);
    }
  });
  for (EntryId id : offered) order->OnInsert(id, index_.Get(id)->parent);
  if (!PoliciesUseHints()) return order;
  std::vector<eviction::HintedEntry> hints;
  for (const auto& [id, needed] : needed_at_) {
    const IndexEntry* e = index_.Get(id);
    if (e != nullptr && mine(*e)) hints.push_back({id, needed});
  }
  if (!hints.empty()) order->OnHints(hints);
  return order;
}

void EngineImpl::HintTenantOrders() {
  if (!PoliciesUseHints()) return;
  absl::flat_hash_map<TenantAccount*, std::vector<eviction::HintedEntry>> by_tenant;
  for (auto& [tenant, account] : accounts_) {
    if (account.dram_order != nullptr || account.nvme_order != nullptr) by_tenant[&account];
  }
  if (by_tenant.empty()) return;
  for (const auto& [id, needed] : needed_at_) {
    const IndexEntry* e = index_.Get(id);
    if (e == nullptr) continue;
    auto it = by_tenant.find(ns_account_[e->ns - 1]);
    if (it != by_tenant.end()) it->second.push_back({id, needed});
  }
  for (auto& [account, hints] : by_tenant) {
    if (account->dram_order != nullptr) account->dram_order->OnHints(hints);
    if (account->nvme_order != nullptr) account->nvme_order->OnHints(hints);
  }
}

TenantStats EngineImpl::GetTenantStats(std::string_view tenant) const {
  absl::MutexLock lock(&mu_);
  auto it = accounts_.find(tenant);
  if (it != accounts_.end()) return it->second.stats;
  TenantStats stats;
  stats.tenant = std::string(tenant);
  return stats;
}

std::vector<TenantStats> EngineImpl::AllTenantStats() const {
  absl::MutexLock lock(&mu_);
  std::vector<TenantStats> out;
  out.reserve(accounts_.size());
  for (const auto& [tenant, account] : accounts_) out.push_back(account.stats);
  return out;
}

}  // namespace strata::store::internal
