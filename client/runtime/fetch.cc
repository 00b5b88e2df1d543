#include "client/runtime/fetch.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"

namespace strata::runtime {
namespace {

// A run of consecutive slots loaded by one Client::Load.
struct Run {
  size_t first = 0;  // index into the loading slots
  size_t count = 0;
  std::shared_ptr<client::Transfer> transfer;
};

// Calls the caller's on_layer(l) once every run has delivered layer l.
struct LayerGate {
  LayerGate(uint32_t layers, std::function<void(uint32_t)> fn)
      : remaining(layers), on_layer(std::move(fn)) {}
  std::vector<std::atomic<size_t>> remaining;
  std::function<void(uint32_t)> on_layer;
  void Done(uint32_t layer) {
    if (layer < remaining.size() && remaining[layer].fetch_sub(1) == 1) on_layer(layer);
  }
};

}  // namespace

absl::StatusOr<FetchReservation> ReserveFetch(client::Client& client, const client::Namespace& ns,
                                              ChunkPool& pool, std::span<const ChunkKey> keys,
                                              size_t max_load) {
  if (pool.chunk_bytes() != ns.chunk_bytes || pool.layer_bytes() != ns.layer_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pool of ", pool.chunk_bytes(), "-byte chunks (", pool.layer_bytes(),
        "-byte layers) for a namespace of ", ns.chunk_bytes, " (", ns.layer_bytes, ")"));
  }
  FetchReservation res;
  res.num_keys = keys.size();
  FetchResult& result = res.result;

  // 1. The prefix already in the pool.
  while (result.slots.size() < keys.size()) {
    auto slot = pool.Acquire(keys[result.slots.size()]);
    if (!slot.ok()) break;  // absent, or loading by another fetch
    result.slots.push_back(*slot);
  }
  result.pool_hits = result.slots.size();
  const size_t base = result.slots.size();
  if (base == keys.size()) return res;

  // 2. One lookup for the rest.
  const std::span<const ChunkKey> rest = keys.subspan(base);
  auto lookup = client.Lookup(ns, rest);
  if (!lookup.ok()) {
    result.stop_reason = lookup.status();
    return res;
  }
  size_t cached = std::min(lookup->prefix_chunks, rest.size());
  if (cached > max_load) {
    result.stop_reason = absl::ResourceExhaustedError(
        absl::StrCat("the store holds ", cached, " chunks of the chain; at most ", max_load,
                     " are loaded at once"));
    cached = max_load;
  }

  // 3. Slots for the store's cached prefix.
  res.loading.reserve(cached);
  for (size_t i = 0; i < cached; ++i) {
    const size_t k = base + i;
    auto slot = pool.Allocate(keys[k], k > 0 ? std::optional(keys[k - 1]) : std::nullopt);
    if (!slot.ok()) {
      result.stop_reason = slot.status();
      break;
    }
    res.loading.push_back(*slot);
  }
  res.load_keys.assign(rest.begin(), rest.begin() + res.loading.size());
  return res;
}

FetchResult FinishFetch(ChunkPool& pool, FetchReservation reservation, size_t verified,
                        absl::Status failure) {
  FetchResult result = std::move(reservation.result);
  for (size_t i = 0; i < reservation.loading.size(); ++i) {
    const SlotId slot = reservation.loading[i];
    if (i < verified) {
      (void)pool.MarkReady(slot, /*hold=*/true);  // loading, ours: cannot fail
      result.slots.push_back(slot);
      ++result.loaded;
    } else {
      (void)pool.FailLoad(slot);
    }
  }
  if (!failure.ok()) result.stop_reason = std::move(failure);
  result.recompute = result.slots.size() < reservation.num_keys;
  return result;
}

absl::StatusOr<FetchResult> Fetch(client::Client& client, const client::Namespace& ns,
                                  ChunkPool& pool, std::span<const ChunkKey> keys,
                                  const FetchOptions& options) {
  if (!pool.host_accessible()) {
    return absl::FailedPreconditionError(
        "Fetch loads into host memory; a device pool is fetched by a DeviceFetcher");
  }
  auto reserved = ReserveFetch(client, ns, pool, keys);
  if (!reserved.ok()) return reserved.status();
  const std::vector<SlotId>& fresh = reserved->loading;
  const std::span<const ChunkKey> load_keys = reserved->load_keys;
  if (fresh.empty()) return FinishFetch(pool, *std::move(reserved), 0, absl::OkStatus());

  // 4. One load per run of consecutive slots.
  std::vector<Run> runs;
  for (size_t i = 0; i < fresh.size(); ++i) {
    if (runs.empty() || fresh[i] != fresh[i - 1] + 1) runs.push_back({i, 0, nullptr});
    ++runs.back().count;
  }
  std::shared_ptr<LayerGate> gate;
  if (options.on_layer) {
    gate = std::make_shared<LayerGate>(pool.num_layers(), options.on_layer);
    for (auto& r : gate->remaining) r.store(runs.size());
  }
  absl::Status failure;
  size_t started = 0;
  for (Run& run : runs) {
    auto bytes = pool.HostBytes(fresh[run.first]);
    if (!bytes.ok()) {
      failure = bytes.status();
      break;
    }
    std::span<std::byte> dest(bytes->data(), run.count * pool.chunk_bytes());
    std::function<void(uint32_t)> on_layer;
    if (gate) on_layer = [gate](uint32_t layer) { gate->Done(layer); };
    auto transfer = client.Load(ns, load_keys.subspan(run.first, run.count), dest,
                                std::move(on_layer));
    if (!transfer.ok()) {
      failure = transfer.status();
      break;
    }
    run.transfer = *std::move(transfer);
    ++started;
  }

  // 5. Verify in chain order; from the first failure on, free (after every
  // transfer ended: each Wait returns only then).
  size_t verified = 0;
  for (size_t r = 0; r < runs.size(); ++r) {
    absl::Status s = r < started ? runs[r].transfer->Wait() : failure;
    if (failure.ok() && !s.ok()) failure = s;
    if (failure.ok()) verified += runs[r].count;
  }
  return FinishFetch(pool, *std::move(reserved), verified, std::move(failure));
}

}  // namespace strata::runtime
