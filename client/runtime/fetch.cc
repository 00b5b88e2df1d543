#include "client/runtime/fetch.h"

#include <atomic>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"

namespace strata::runtime {
namespace {

// A run of consecutive slots loaded by one Client::Load.
struct Run {
  size_t first = 0;  // index into the allocated slots
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

absl::StatusOr<FetchResult> Fetch(client::Client& client, const client::Namespace& ns,
                                  ChunkPool& pool, std::span<const ChunkKey> keys,
                                  const FetchOptions& options) {
  if (pool.chunk_bytes() != ns.chunk_bytes || pool.layer_bytes() != ns.layer_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pool of ", pool.chunk_bytes(), "-byte chunks (", pool.layer_bytes(),
        "-byte layers) for a namespace of ", ns.chunk_bytes, " (", ns.layer_bytes, ")"));
  }
  if (!pool.host_accessible()) {
    return absl::FailedPreconditionError("fetch loads into host memory; the pool is device memory");
  }
  FetchResult result;

  // 1. The prefix already in the pool.
  while (result.slots.size() < keys.size()) {
    auto slot = pool.Acquire(keys[result.slots.size()]);
    if (!slot.ok()) break;  // absent, or loading by another fetch
    result.slots.push_back(*slot);
  }
  result.pool_hits = result.slots.size();
  const size_t base = result.slots.size();
  auto finish = [&]() -> absl::StatusOr<FetchResult> {
    result.recompute = result.slots.size() < keys.size();
    return std::move(result);
  };
  if (base == keys.size()) return finish();

  // 2. One lookup for the rest.
  const std::span<const ChunkKey> rest = keys.subspan(base);
  auto lookup = client.Lookup(ns, rest);
  if (!lookup.ok()) {
    result.stop_reason = lookup.status();
    return finish();
  }
  const size_t cached = std::min(lookup->prefix_chunks, rest.size());

  // 3. Slots for the store's cached prefix.
  std::vector<SlotId> fresh;
  fresh.reserve(cached);
  for (size_t i = 0; i < cached; ++i) {
    const size_t k = base + i;
    auto slot = pool.Allocate(keys[k], k > 0 ? std::optional(keys[k - 1]) : std::nullopt);
    if (!slot.ok()) {
      result.stop_reason = slot.status();
      break;
    }
    fresh.push_back(*slot);
  }
  if (fresh.empty()) return finish();

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
    auto transfer = client.Load(ns, rest.subspan(run.first, run.count), dest, std::move(on_layer));
    if (!transfer.ok()) {
      failure = transfer.status();
      break;
    }
    run.transfer = *std::move(transfer);
    ++started;
  }

  // 5. Verify in chain order; from the first failure on, free (after the
  // transfer ended).
  for (size_t r = 0; r < runs.size(); ++r) {
    const Run& run = runs[r];
    absl::Status s = r < started ? run.transfer->Wait() : failure;
    if (failure.ok() && !s.ok()) failure = s;
    const bool usable = failure.ok();
    for (size_t i = run.first; i < run.first + run.count; ++i) {
      if (usable) {
        (void)pool.MarkReady(fresh[i], /*hold=*/true);  // loading, ours: cannot fail
        result.slots.push_back(fresh[i]);
        ++result.loaded;
      } else {
        (void)pool.FailLoad(fresh[i]);
      }
    }
  }
  if (!failure.ok()) result.stop_reason = failure;
  return finish();
}

}  // namespace strata::runtime
