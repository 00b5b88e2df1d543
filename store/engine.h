// Engine: the tiered chunk store of one node: a DRAM pool in front of an
// optional NVMe tier (RocksDB), with leases, checksums, asynchronous
// write-back and eviction. The gRPC/UCX service is a thin layer over it.
//
// Chunk life: BeginPut allocates DRAM slots under a write lease; the writer
// fills them; CommitPut verifies checksums and makes the chunks visible.
// Committed chunks are written through to NVMe in the background (write-
// through, asynchronous: the DRAM copy stays pinned until it is persisted,
// so DRAM eviction only ever drops copies that are safe on NVMe or, without
// an NVMe tier, drops the chunk). Readers pin chunks under read leases;
// chunks only on NVMe are promoted to DRAM first, their checksum verified.
// Nothing under a lease is evicted, moved or freed; expired leases are
// reaped (an expired write lease frees its slots).
//
// Errors: unknown namespace or lease -> NotFound; bad sizes, keys or
// arguments -> InvalidArgument; no room after eviction -> ResourceExhausted;
// a key being written under another lease -> Aborted; checksum mismatch ->
// DataLoss (the bad copy is dropped, never served). Putting a key that is
// already committed is an idempotent success: the slot is reported as
// already present and nothing is written.
#ifndef STRATA_STORE_ENGINE_H_
#define STRATA_STORE_ENGINE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "store/common/chunk_key.h"
#include "store/common/clock.h"
#include "store/common/namespace.h"
#include "store/nvme_tier.h"

namespace strata::store {

struct EngineOptions {
  // Size of the DRAM pool (rounded up to whole pages). Must be > 0.
  uint64_t dram_bytes = uint64_t{1} << 30;
  // Put the DRAM pool in shared memory (a memfd, mode 0600) that clients of
  // the same user on this host may map read-only (dram_share_path()).
  bool shared_dram = false;
  // Fault in every page of the pool at open (DramPool::Prefault), so that the
  // first put into each page takes no page fault and zero-fill, and a pool
  // the host cannot hold fails Open with ResourceExhausted rather than
  // raising SIGBUS (or an OOM kill) later. Takes about a second per few GiB.
  bool prefault_dram = true;
  // With prefault_dram: called just before the pool is pre-faulted (done =
  // false) and just after it succeeded (done = true, with the time it took),
  // from the thread calling Open; for progress output. May be empty.
  std::function<void(uint64_t pool_bytes, bool done, absl::Duration took)> on_prefault;
  // With shared_dram: publish every committed chunk in DRAM in a read index
  // (store/common/read_index.h) in shared memory beside the pool, so that
  // clients on this host read it without a lease (read_index_share_path()).
  bool read_index = true;
  // Entries of the read index; 0: SharedReadIndex::EntriesFor(dram_bytes).
  uint64_t read_index_entries = 0;
  // NVMe tier directory; empty for a DRAM-only node.
  std::string nvme_path;
  // Bytes of chunk payload the NVMe tier may hold; required (> 0) with a path.
  uint64_t nvme_capacity_bytes = 0;
  // Eviction policies (eviction/eviction_policy.h) per tier.
  std::string dram_policy = "prefix-lru";
  std::string nvme_policy = "lru";
  // Leases: a ttl of zero in a call means `default_lease_ttl`; longer than
  // `max_lease_ttl` is InvalidArgument.
  absl::Duration default_lease_ttl = absl::Seconds(30);
  absl::Duration max_lease_ttl = absl::Minutes(10);
  // Most keys in one call; more is InvalidArgument.
  size_t max_keys_per_call = 4096;
  // How often the background thread reaps expired leases; zero disables the
  // thread (tests call ReapExpiredLeases() themselves).
  absl::Duration reap_interval = absl::Milliseconds(100);
  // When DRAM is full of chunks still waiting to be written to NVMe, a put
  // or promotion waits up to this long for the writer before failing with
  // ResourceExhausted.
  absl::Duration write_back_wait = absl::Seconds(5);
  bool sync_nvme_writes = false;
  // Scheduler hints (SetHints): limits, and the prefetch window: chunks of
  // the next `prefetch_jobs` hinted jobs are promoted from NVMe to DRAM ahead
  // of time, at most `prefetch_bytes` of them not yet read (0: a quarter of
  // the DRAM pool).
  size_t max_hint_jobs = 4096;
  absl::Duration max_hint_ttl = absl::Minutes(10);
  absl::Duration default_hint_ttl = absl::Seconds(30);
  size_t prefetch_jobs = 8;
  uint64_t prefetch_bytes = 0;
  // Most schedulers with a live hint set; a new one past it is
  // ResourceExhausted (sets expire after their ttl, or are withdrawn).
  size_t max_hint_schedulers = 64;
  // A chunk whose write-back to NVMe failed stays pinned in DRAM and is
  // retried this often; while any is waiting, puts are refused
  // (ResourceExhausted) and Health()/Stats() say the node is not persisting.
  absl::Duration write_back_retry = absl::Seconds(1);
  // Test seam: wraps the NVMe tier after it is opened (a fault-injecting
  // tier, store/faulty_nvme_tier.h); null for none.
  std::function<std::unique_ptr<NvmeTier>(std::unique_ptr<NvmeTier>)> wrap_nvme;
  // Source of time for leases and policies; nullptr means the real clock.
  Clock* clock = nullptr;
};

enum class Tier : uint8_t { kMissing = 0, kDram = 1, kNvme = 2 };
const char* TierName(Tier tier);

using LeaseId = uint64_t;

struct NamespaceInfo {
  uint32_t id = 0;
  NamespaceSpec spec;
  std::string tenant;
  uint64_t chunk_bytes = 0;
};

struct PutItem {
  ChunkKey key;
  // The previous chunk of the same key chain, if any (for prefix-aware
  // eviction).
  std::optional<ChunkKey> parent;
};

struct PutSlot {
  ChunkKey key;
  bool already_present = false;  // committed before: nothing to write
  uint64_t pool_offset = 0;      // offset in dram_region() (when writable)
  std::span<std::byte> dest;     // empty when already_present
};

struct PutLease {
  LeaseId id = 0;
  absl::Time expires;
  std::vector<PutSlot> slots;  // one per requested item, in order
};

struct ReadChunk {
  ChunkKey key;
  Tier found_in = Tier::kMissing;  // where it was before this read
  uint64_t pool_offset = 0;
  std::span<const std::byte> data;  // valid until the lease is released
  uint64_t checksum = 0;
};

struct ReadLease {
  LeaseId id = 0;
  absl::Time expires;
  std::vector<ReadChunk> chunks;  // one per requested key, in order
};

// One upcoming job of a scheduler's queue: the last stored key of its chain
// (the chunks before it follow through their parent links) and when it runs.
struct JobHint {
  ChunkKey last_key;
  uint32_t queue_position = 0;  // 0 runs next
  // When the job is expected to start; InfinitePast() to go by position.
  absl::Time expected_start = absl::InfinitePast();
};

struct LookupResult {
  std::vector<Tier> tiers;   // per requested key
  // Per requested key: a copy is on NVMe (it survives a restart of the node).
  std::vector<bool> persisted;
  size_t prefix_chunks = 0;  // leading keys present in some tier
};

struct EngineStats {
  uint64_t dram_capacity_bytes = 0;
  uint64_t dram_used_bytes = 0;
  uint64_t nvme_capacity_bytes = 0;
  uint64_t nvme_used_bytes = 0;
  uint64_t index_entries = 0;
  uint64_t index_memory_bytes = 0;
  uint64_t chunks_in_dram = 0;
  uint64_t chunks_on_nvme = 0;
  uint64_t active_read_leases = 0;
  uint64_t active_write_leases = 0;
  uint64_t namespaces = 0;
  uint64_t write_back_queue = 0;
  // Counters since open.
  uint64_t puts_committed = 0;
  uint64_t puts_already_present = 0;
  uint64_t reads_dram = 0;
  uint64_t reads_nvme = 0;  // promotions on read
  uint64_t lookups_hit = 0;
  uint64_t lookups_miss = 0;
  uint64_t dram_evictions = 0;
  uint64_t nvme_evictions = 0;
  uint64_t write_backs = 0;
  uint64_t write_back_errors = 0;
  // Chunks acknowledged but not yet on NVMe because their write-back failed
  // (pinned in DRAM, retried); nonzero means the node is not persisting.
  uint64_t chunks_unpersisted = 0;
  uint64_t write_back_failing = 0;  // 1 while the NVMe tier refuses writes
  uint64_t namespaces_removed = 0;
  uint64_t hint_resolve_steps = 0;  // chain entries walked resolving hints
  uint64_t checksum_failures = 0;
  uint64_t nvme_read_errors = 0;  // failed NVMe reads other than corruption
  uint64_t leases_expired = 0;
  uint64_t chunks_restored = 0;  // index entries rebuilt from NVMe at open
  // Scheduler hints and prefetch.
  uint64_t hint_schedulers = 0;
  uint64_t hint_jobs = 0;
  uint64_t hinted_chunks = 0;
  uint64_t hint_sets_received = 0;
  uint64_t prefetches_issued = 0;  // chunks promoted ahead of their job
  uint64_t prefetches_used = 0;    // ... and then read
  uint64_t prefetches_wasted = 0;  // ... evicted before any read
  uint64_t dram_evictions_unhinted = 0;  // victims no hinted job needs
  uint64_t dram_evictions_hinted = 0;    // victims needed by a later job
  // Read index (EngineOptions::read_index).
  uint64_t read_index_published = 0;  // chunks readers can find in it now
  uint64_t read_index_full = 0;       // chunks left out: their probe window was full
  uint64_t lease_free_reads = 0;      // chunk reads clients reported (Touch)
};

// What one tenant may hold on the node (the tenants file's dram=, nvme=
// and hint_jobs= fields). 0: no limit.
struct TenantQuota {
  uint64_t dram_bytes = 0;
  uint64_t nvme_bytes = 0;
  uint64_t hint_jobs = 0;  // jobs in one scheduler's hint set
};

// One tenant's part of the node: the bytes of its namespaces' chunks (a
// tenant is the tenant string its namespaces were registered with) and
// what its quota did.
struct TenantStats {
  std::string tenant;
  TenantQuota quota;
  uint64_t namespaces = 0;
  // DRAM slots held by its chunks: being written, committed, or being
  // promoted from NVMe.
  uint64_t dram_bytes = 0;
  uint64_t nvme_bytes = 0;
  // Counters (kept while the tenant has a namespace or a quota).
  uint64_t dram_quota_evictions = 0;  // own chunks evicted to stay within its DRAM quota
  uint64_t nvme_quota_evictions = 0;  // own chunks deleted to stay within its NVMe quota
  uint64_t quota_refusals = 0;        // calls refused (ResourceExhausted) by its quota
  // Committed chunks left unpersisted (in DRAM only) because nothing of its
  // own could leave NVMe to make room within its NVMe quota.
  uint64_t nvme_quota_skips = 0;
};

// Safe for concurrent use by any number of threads.
class Engine {
 public:
  // Opens the DRAM pool and, with a path, the NVMe tier, rebuilding the
  // index and namespaces from it. Errors: InvalidArgument for bad options;
  // FailedPrecondition for a directory that is not Strata's; DataLoss for a
  // corrupted one.
  static absl::StatusOr<std::unique_ptr<Engine>> Open(const EngineOptions& options);
  // Stops background work after flushing the write-back queue.
  virtual ~Engine() = default;

  // Registers (spec, tenant) and returns its id; registering the same pair
  // again returns the same id. Identity is the canonical encoding: the same
  // extra keys in another order are the same namespace. InvalidArgument for
  // an invalid spec or a chunk larger than the DRAM pool; ResourceExhausted
  // when 65535 namespaces are live.
  virtual absl::StatusOr<uint32_t> RegisterNamespace(const NamespaceSpec& spec,
                                                     std::string_view tenant) = 0;
  // The id of (spec, tenant) if it is registered; NotFound otherwise.
  virtual absl::StatusOr<uint32_t> FindNamespace(const NamespaceSpec& spec,
                                                 std::string_view tenant) const = 0;
  virtual absl::StatusOr<NamespaceInfo> GetNamespace(uint32_t ns) const = 0;
  // Removes namespace `ns` with every chunk stored in it (DRAM and NVMe) and
  // its hints; its id may be given to a later namespace. Returns the number
  // of chunks removed. NotFound: unknown namespace; FailedPrecondition: a
  // read or write lease on it is open (retry once they end).
  virtual absl::StatusOr<uint64_t> RemoveNamespace(uint32_t ns) = 0;

  // Presence and tier of each key; does not count as an access.
  virtual absl::StatusOr<LookupResult> Lookup(uint32_t ns, std::span<const ChunkKey> keys) = 0;

  // Two-phase put. Repeated keys in one call, or an item whose parent is its
  // own key, are InvalidArgument. ResourceExhausted while the node is not
  // persisting (a write-back to NVMe failed and waits for a retry), and when
  // the namespace's tenant has no room left within its quota
  // (SetTenantQuotas).
  virtual absl::StatusOr<PutLease> BeginPut(uint32_t ns, std::span<const PutItem> items,
                                            absl::Duration ttl = absl::ZeroDuration()) = 0;
  // `checksums` holds ChunkChecksum() of each slot's bytes, one per slot of
  // the lease (values for already-present slots are ignored). All or
  // nothing: on a mismatch no chunk of the lease becomes visible (DataLoss).
  // A read lease given to CommitPut or AbortPut (or a write lease given to
  // Release) is FailedPrecondition and the lease stays as it was.
  virtual absl::Status CommitPut(LeaseId lease, std::span<const uint64_t> checksums) = 0;
  virtual absl::Status AbortPut(LeaseId lease) = 0;
  // Copies `bytes` into slot `index` (the position in the BeginPut request)
  // of open write lease `lease`, for a data plane that moves bytes through
  // the node instead of letting the writer reach the pool. The lease cannot
  // be committed, aborted or reaped while the copy runs. NotFound: no such
  // open write lease (expired, done, committing, or a read lease);
  // InvalidArgument: `index` out of range, a slot that was already present,
  // or a size other than the chunk's.
  virtual absl::Status WriteSlot(LeaseId lease, size_t index,
                                 std::span<const std::byte> bytes) = 0;

  // Pins every key under one read lease, promoting from NVMe as needed. All
  // or nothing: NotFound names the first missing key; DataLoss when an NVMe
  // copy fails its checksum (it is dropped).
  virtual absl::StatusOr<ReadLease> Acquire(uint32_t ns, std::span<const ChunkKey> keys,
                                            absl::Duration ttl = absl::ZeroDuration()) = 0;
  virtual absl::Status Release(LeaseId lease) = 0;
  // A reader found the DRAM copy of `key` (namespace `ns`) not matching its
  // checksum: the engine checks it again and, if it is corrupt, counts it
  // (checksum_failures) and drops it once no lease pins it and it is not
  // waiting for write-back (a copy on NVMe stays and is promoted on the next
  // read). DataLoss when corrupt; OK when the copy verifies (or is not in
  // DRAM any more).
  virtual absl::Status CheckDramCopy(uint32_t ns, const ChunkKey& key) = 0;

  // Records reads that clients on this host made without a lease (out of
  // the read index): each key of namespace `ns` committed in DRAM counts as
  // accessed for eviction, as Acquire would count it (a prefetched chunk as
  // used); other keys are skipped. Returns how many were counted. NotFound:
  // unknown namespace; InvalidArgument: no keys or too many.
  virtual absl::StatusOr<size_t> Touch(uint32_t ns, std::span<const ChunkKey> keys) = 0;

  // Conveniences over the above for one chunk: copy in / copy out, with
  // checksums computed and verified.
  virtual absl::Status Put(uint32_t ns, const ChunkKey& key, std::optional<ChunkKey> parent,
                           std::span<const std::byte> payload) = 0;
  virtual absl::Status Get(uint32_t ns, const ChunkKey& key, std::span<std::byte> out) = 0;

  // Replaces `scheduler`'s hint set with `jobs` (empty withdraws it); the
  // set expires after `ttl` (0: default_hint_ttl). Hinted chunks are
  // prefetched from NVMe in queue order and, with the "scheduler" eviction
  // policy, evicted after unhinted ones, latest-needed first. Keys that are
  // not stored are accepted (they may be written later) but have no effect.
  // A prefetched chunk stays in DRAM until its job reads it or its hint goes,
  // unless a read or write needs the room now and nothing else can go.
  // Chains are resolved with bounded work: each stored chunk is walked at
  // most once per rebuild, whatever the number of jobs and schedulers naming
  // it (parent cycles end the walk), and the engine's lock is released every
  // few thousand steps so that gets and puts are not held up.
  // InvalidArgument: empty or long (> 128 bytes) scheduler id, more than
  // max_hint_jobs jobs, ttl outside [0, max_hint_ttl]. NotFound: namespace.
  // ResourceExhausted: a new scheduler past max_hint_schedulers.
  virtual absl::Status SetHints(std::string_view scheduler, uint32_t ns,
                                std::span<const JobHint> jobs, absl::Duration ttl) = 0;

  // Replaces every tenant's quota (a tenant not in `quotas` has none). A
  // tenant over its DRAM quota makes room from its own chunks only, in the
  // DRAM policy's order restricted to them: BeginPut and promotions on
  // Acquire evict its evictable chunks (waiting, as for DRAM, for its chunks
  // queued for write-back) and are ResourceExhausted, naming the tenant and
  // its quota, when nothing of its own can go; other tenants' chunks are
  // never evicted for it. Write-back deletes the tenant's own NVMe chunks
  // (the NVMe policy's order) to stay within its NVMe quota; a chunk that
  // still does not fit stays in DRAM unpersisted (nvme_quota_skips), and a
  // BeginPut of chunks larger than the NVMe quota is ResourceExhausted.
  // A hint set of more jobs than hint_jobs is ResourceExhausted. Lowering a
  // quota evicts the tenant's evictable chunks down to it at once; the rest
  // goes as its chunks become evictable. A tenant with a DRAM (NVMe) quota
  // keeps its own instance of the tier's policy over its chunks, so finding
  // its victims does not walk past other tenants' chunks.
  virtual void SetTenantQuotas(const std::map<std::string, TenantQuota, std::less<>>& quotas) = 0;
  // `tenant`'s usage and quota (zeros for a tenant without namespaces).
  virtual TenantStats GetTenantStats(std::string_view tenant) const = 0;
  // Every tenant with a live namespace or a quota, by name.
  virtual std::vector<TenantStats> AllTenantStats() const = 0;

  // Frees what expired leases held; returns how many leases expired.
  virtual size_t ReapExpiredLeases() = 0;
  // Waits until every committed chunk queued for write-back has been tried.
  // Unavailable (naming the chunks and the NVMe error) when some could not
  // be persisted: they stay in DRAM and are retried.
  virtual absl::Status FlushWriteBack() = 0;
  // OK while the NVMe tier takes writes; otherwise the last write-back error.
  virtual absl::Status PersistenceStatus() const = 0;

  virtual EngineStats Stats() const = 0;
  // The DRAM pool, for registration with a transport.
  virtual std::span<std::byte> dram_region() const = 0;
  // With EngineOptions::shared_dram: a path through which another process of
  // this user on this host can open the pool (valid while the engine lives);
  // empty otherwise.
  virtual std::string dram_share_path() const = 0;
  // With EngineOptions::read_index (and shared_dram): the path through which
  // another process of this user on this host can open the read index
  // (valid while the engine lives); empty otherwise.
  virtual std::string read_index_share_path() const = 0;
  // The most keys one call accepts (EngineOptions::max_keys_per_call).
  virtual size_t max_keys_per_call() const = 0;
};

}  // namespace strata::store

#endif  // STRATA_STORE_ENGINE_H_
