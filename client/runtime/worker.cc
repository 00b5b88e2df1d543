#include "client/runtime/worker.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "store/common/key_chain.h"
#include "store/common/status_macros.h"

namespace strata::runtime {
namespace {

// A load that is over (the host pool's Fetch, or pool hits alone).
class HostLoad final : public PrefixLoad {
 public:
  explicit HostLoad(FetchResult result) : result_(std::move(result)) {}
  std::span<const SlotId> slots() const override { return result_.slots; }
  absl::Status BeforeAttention(int) override { return absl::OkStatus(); }
  FetchResult Wait() override { return std::move(result_); }

 private:
  FetchResult result_;
};

class HostKvDevice final : public KvDevice {
 public:
  absl::StatusOr<std::unique_ptr<PrefixLoad>> StartLoad(client::Client& client,
                                                        const client::Namespace& ns,
                                                        ChunkPool& pool,
                                                        std::span<const ChunkKey> keys) override {
    absl::StatusOr<FetchResult> r = Fetch(client, ns, pool, keys);
    if (!r.ok()) return r.status();
    return std::unique_ptr<PrefixLoad>(new HostLoad(*std::move(r)));
  }
  absl::StatusOr<std::unique_ptr<HostCopy>> StartCopyToHost(
      ChunkPool& pool, std::span<const SlotId> slots) override {
    std::vector<std::byte> bytes(slots.size() * pool.chunk_bytes());
    for (size_t i = 0; i < slots.size(); ++i) {
      ASSIGN_OR_RETURN(std::span<std::byte> b, pool.HostBytes(slots[i]));
      std::memcpy(bytes.data() + i * pool.chunk_bytes(), b.data(), pool.chunk_bytes());
    }
    return std::unique_ptr<HostCopy>(new ReadyHostCopy(std::move(bytes)));
  }
};

// Pool hits only: the leading keys ready in the pool, each held once; a
// load that is already over.
std::unique_ptr<PrefixLoad> PoolHits(ChunkPool& pool, std::span<const ChunkKey> keys) {
  FetchResult r;
  for (const ChunkKey& k : keys) {
    absl::StatusOr<SlotId> s = pool.Acquire(k);
    if (!s.ok()) break;
    r.slots.push_back(*s);
  }
  r.pool_hits = r.slots.size();
  r.recompute = r.slots.size() < keys.size();
  return std::make_unique<HostLoad>(std::move(r));
}

std::vector<uint32_t> AsKeyTokens(std::span<const int32_t> tokens) {
  return std::vector<uint32_t>(tokens.begin(), tokens.end());
}

}  // namespace

std::unique_ptr<KvDevice> CreateHostKvDevice() { return std::make_unique<HostKvDevice>(); }

ChunkKey TruncatedKey(const ChunkKey& key, int keep, int dropped) {
  const uint32_t marker[3] = {0x4e555254u, static_cast<uint32_t>(keep),
                              static_cast<uint32_t>(dropped)};
  return KeyChain::Next(key, marker);
}

absl::StatusOr<std::unique_ptr<Worker>> Worker::Create(client::Client* client,
                                                       const client::Namespace& ns,
                                                       LlamaModel* model, ChunkPool* pool,
                                                       KvDevice* device,
                                                       const WorkerOptions& options) {
  if (client == nullptr || model == nullptr || pool == nullptr || device == nullptr) {
    return absl::InvalidArgumentError("worker: client, model, pool and device are required");
  }
  if (!ns.chain.has_value()) return absl::InvalidArgumentError("worker: namespace not registered");
  if (absl::Status st = model->config().CheckNamespace(ns.spec); !st.ok()) return st;
  if (static_cast<int>(ns.spec.tokens_per_chunk) != model->tokens_per_chunk()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "namespace '", ns.spec.model_id, "' has ", ns.spec.tokens_per_chunk,
        " tokens per chunk but the model runs ", model->tokens_per_chunk()));
  }
  const int tpc = static_cast<int>(ns.spec.tokens_per_chunk);
  if (options.max_context < 0 || options.keep_chunks < 0 || options.truncate_step_chunks < 0) {
    return absl::InvalidArgumentError(
        "worker: max_context, keep_chunks and truncate_step_chunks must not be negative");
  }
  if (options.max_context > 0 &&
      (options.max_context % tpc != 0 || options.max_context <= options.keep_chunks * tpc)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "worker: max_context ", options.max_context, " must be a multiple of ", tpc,
        " tokens (a chunk) and hold more than the ", options.keep_chunks, " kept chunks"));
  }
  if (pool->chunk_bytes() != ns.chunk_bytes || pool->layer_bytes() != ns.layer_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "worker: the pool's chunks are ", pool->chunk_bytes(), " bytes (layers of ",
        pool->layer_bytes(), "), the namespace's ", ns.chunk_bytes, " (", ns.layer_bytes, ")"));
  }
  return std::unique_ptr<Worker>(new Worker(client, ns, model, pool, device, options));
}

Worker::Worker(client::Client* client, const client::Namespace& ns, LlamaModel* model,
               ChunkPool* pool, KvDevice* device, const WorkerOptions& options)
    : client_(client),
      ns_(ns),
      model_(model),
      pool_(pool),
      device_(device),
      options_(options),
      tpc_(static_cast<int>(ns.spec.tokens_per_chunk)) {}

Worker::~Worker() {
  EndSequence();
  Reap(true);
}

void Worker::EndSequence() {
  for (SlotId s : slots_) (void)pool_->Release(s);
  slots_.clear();
  keys_.clear();
  tokens_.clear();
  view_.clear();
  dropped_ = 0;
  has_partial_ = false;
}

int Worker::TruncateStep() const {
  return options_.truncate_step_chunks > 0 ? options_.truncate_step_chunks
                                           : std::max(1, options_.max_context / tpc_ / 4);
}

int Worker::DropFor(int n) const {
  const int window = options_.max_context;
  if (window == 0 || n <= window) return 0;
  const int step = TruncateStep();
  const int excess = (n - window + tpc_ - 1) / tpc_;  // chunks that must go
  // Droppable: full chunks after the kept ones, the last token's chunk
  // excepted (it is computed). Dropping all of them always fits, as the
  // window holds more than the kept chunks (Create checks it).
  const int droppable = (n - 1) / tpc_ - options_.keep_chunks;
  return std::min((excess + step - 1) / step * step, droppable);
}

std::vector<ChunkKey> Worker::ViewKeys(std::span<const ChunkKey> exact, int dropped) const {
  if (dropped == 0) return {exact.begin(), exact.end()};
  const size_t keep = static_cast<size_t>(options_.keep_chunks);
  std::vector<ChunkKey> view(exact.begin(), exact.begin() + std::min(keep, exact.size()));
  for (size_t j = keep + dropped; j < exact.size(); ++j) {
    view.push_back(TruncatedKey(exact[j], options_.keep_chunks, dropped));
  }
  return view;
}

std::vector<ChunkKey> Worker::ResolveCached(std::span<const ChunkKey> exact, size_t usable) {
  std::vector<ChunkKey> view = ViewKeys(exact, dropped_);
  view.resize(std::min(view.size(), usable));
  const size_t keep = static_cast<size_t>(options_.keep_chunks);
  if (dropped_ == 0 || view.size() <= keep) return view;
  const int step = TruncateStep();
  // Candidates per chunk after the cut: the view key at D, at up to three
  // smaller steps of D, then the exact key.
  std::vector<int> drops;
  for (int d = dropped_; d > 0 && drops.size() < 4; d -= step) drops.push_back(d);
  const size_t per = drops.size() + 1;
  std::vector<ChunkKey> candidates;
  for (size_t p = keep; p < view.size(); ++p) {
    const ChunkKey& e = exact[p + dropped_];
    for (int d : drops) candidates.push_back(TruncatedKey(e, options_.keep_chunks, d));
    candidates.push_back(e);
  }
  // The store is asked only when the turn may load from it.
  absl::StatusOr<client::LookupResult> found =
      options_.source == WorkerOptions::Source::kStore
          ? client_->Lookup(ns_, candidates)
          : absl::StatusOr<client::LookupResult>(absl::UnavailableError("pool only"));
  for (size_t p = keep; p < view.size(); ++p) {
    bool have = false;
    for (size_t c = 0; c < per && !have; ++c) {
      const ChunkKey& k = candidates[(p - keep) * per + c];
      // The pool first (a chunk saved a moment ago may not be committed).
      if (pool_->Find(k).ok() ||
          (found.ok() && found->tiers[(p - keep) * per + c] != client::Tier::kMissing)) {
        view[p] = k;
        have = true;
      }
    }
    if (!have) {
      view.resize(p);
      break;
    }
  }
  return view;
}

absl::StatusOr<TurnStats> Worker::Prefill(std::span<const int32_t> tokens,
                                          std::vector<float>* logits) {
  EndSequence();
  Reap(false);
  if (tokens.empty()) return absl::InvalidArgumentError("prefill: no tokens");
  for (int32_t t : tokens) {
    if (t < 0 || t >= model_->config().vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("prefill: token ", t, " outside the vocabulary of ", model_->config().vocab));
    }
  }
  const absl::Time start = absl::Now();
  const int n = static_cast<int>(tokens.size());
  const int dropped = DropFor(n);
  // The view: the kept chunks, then everything after the dropped ones.
  std::vector<int32_t> view(tokens.begin(), tokens.end());
  const size_t cut = static_cast<size_t>(options_.keep_chunks) * tpc_;
  if (dropped > 0) view.erase(view.begin() + cut, view.begin() + cut + dropped * tpc_);
  const std::vector<uint32_t> key_tokens = AsKeyTokens(tokens);
  const std::vector<ChunkKey> exact = ns_.Keys(key_tokens);
  dropped_ = dropped;
  const std::vector<ChunkKey> keys = ViewKeys(exact, dropped);
  // At least the last token is computed (its logits are the point).
  const size_t usable = static_cast<size_t>((view.size() - 1) / tpc_);
  std::vector<ChunkKey> load_keys;
  if (options_.source != WorkerOptions::Source::kNone && dropped > 0) {
    load_keys = ResolveCached(exact, usable);
  } else {
    load_keys.assign(keys.begin(), keys.begin() + usable);
  }
  bool failed_late = false;
  absl::StatusOr<TurnStats> stats =
      Attempt(view, keys, load_keys, options_.source, logits, &failed_late);
  if (failed_late) {
    // A loaded chunk failed after the model read it: everything the step
    // produced is dropped; the verified chunks are now pool hits.
    ++counters_.recomputes_after_failed_load;
    const absl::Status reason = stats.ok() ? stats->load_stop_reason : stats.status();
    stats = Attempt(view, keys, load_keys, WorkerOptions::Source::kPoolOnly, logits,
                    &failed_late);
    if (stats.ok()) {
      stats->recomputed = true;
      stats->load_stop_reason = reason;
    }
  }
  if (!stats.ok()) {
    dropped_ = 0;
    return stats;
  }
  tokens_.assign(tokens.begin(), tokens.end());
  ++counters_.turns;
  if (dropped > 0) ++counters_.truncated_turns;
  stats->tokens = n;
  stats->dropped_tokens = dropped * tpc_;
  // Up to the logits: the host copies of chunks to save come after them.
  stats->time_to_logits = stats->logits_at - start;
  return stats;
}

absl::StatusOr<TurnStats> Worker::Attempt(std::span<const int32_t> tokens,
                                          std::span<const ChunkKey> keys,
                                          std::span<const ChunkKey> cached_keys,
                                          WorkerOptions::Source source,
                                          std::vector<float>* logits, bool* failed_late) {
  *failed_late = false;
  const int n = static_cast<int>(tokens.size());

  std::unique_ptr<PrefixLoad> load;
  absl::Status start_failure;  // the store could not be asked: pool hits only
  const absl::Time t_start = absl::Now();
  if (source == WorkerOptions::Source::kStore) {
    absl::StatusOr<std::unique_ptr<PrefixLoad>> started =
        device_->StartLoad(*client_, ns_, *pool_, cached_keys);
    if (started.ok()) {
      load = *std::move(started);
    } else {
      start_failure = started.status();
      load = PoolHits(*pool_, cached_keys);
    }
  } else {
    load = PoolHits(*pool_, source == WorkerOptions::Source::kNone ? std::span<const ChunkKey>()
                                                                    : cached_keys);
  }
  // Without overlap the load is finished and verified before the step: the
  // step then reads verified bytes only.
  std::optional<FetchResult> early;
  if (!options_.overlap) early = load->Wait();
  const absl::Duration load_start = absl::Now() - t_start;
  const std::vector<SlotId> cached = early.has_value()
                                         ? early->slots
                                         : std::vector<SlotId>(load->slots().begin(),
                                                               load->slots().end());
  const size_t c = cached.size();
  const int history = static_cast<int>(c) * tpc_;

  // Slots for what this step computes: full chunks under their keys (or
  // private when the key is already in the pool, e.g. being loaded by
  // another worker), and the partial trailing chunk.
  std::vector<SlotId> fresh;                // in chain order after the cached ones
  std::vector<bool> keyed;                  // fresh[i] is a loading keyed slot
  absl::Status alloc_error;
  for (size_t i = c; i < keys.size() && alloc_error.ok(); ++i) {
    const std::optional<ChunkKey> parent =
        i == 0 ? std::nullopt : std::optional(i == c ? cached_keys[c - 1] : keys[i - 1]);
    absl::StatusOr<SlotId> s = pool_->Allocate(keys[i], parent);
    if (s.ok()) {
      fresh.push_back(*s);
      keyed.push_back(true);
      continue;
    }
    if (!absl::IsAlreadyExists(s.status())) {
      alloc_error = s.status();
      break;
    }
    s = pool_->AllocatePrivate();
    if (!s.ok()) {
      alloc_error = s.status();
      break;
    }
    fresh.push_back(*s);
    keyed.push_back(false);
  }
  const bool partial = n % tpc_ != 0;
  if (alloc_error.ok() && partial) {
    absl::StatusOr<SlotId> s = pool_->AllocatePrivate();
    if (s.ok()) {
      fresh.push_back(*s);
      keyed.push_back(false);
    } else {
      alloc_error = s.status();
    }
  }
  auto drop_fresh = [&] {
    for (size_t i = 0; i < fresh.size(); ++i) {
      if (keyed[i]) {
        (void)pool_->FailLoad(fresh[i]);
      } else {
        (void)pool_->Release(fresh[i]);
      }
    }
  };

  absl::Status step_status = alloc_error;
  absl::Duration load_wait, forward;
  bool load_failed = false;  // a layer wait reported the load's failure
  if (step_status.ok()) {
    std::vector<std::byte*> bases;
    for (SlotId s : cached) bases.push_back(*pool_->SlotBase(s));
    for (SlotId s : fresh) bases.push_back(*pool_->SlotBase(s));
    absl::StatusOr<SequenceStep> step = SequenceStep::Make(bases, history, n, tpc_);
    if (step.ok()) {
      ForwardBatch batch = step->Batch(tokens.subspan(static_cast<size_t>(history)));
      if (options_.overlap) {
        batch.before_attention = [&](int layer) {
          const absl::Time t0 = absl::Now();
          absl::Status st = load->BeforeAttention(layer);
          load_wait += absl::Now() - t0;
          if (!st.ok()) load_failed = true;
          return st;
        };
      }
      const absl::Time t0 = absl::Now();
      step_status = model_->Forward(batch, logits);
      forward = absl::Now() - t0;
    } else {
      step_status = step.status();
    }
  }
  // The load's verdict, whatever happened to the step.
  const absl::Time t_verdict = absl::Now();
  FetchResult result = early.has_value() ? *std::move(early) : load->Wait();
  const absl::Duration verdict_wait = absl::Now() - t_verdict;
  if (!step_status.ok() || result.slots.size() < c) {
    // The model's stream has drained (Forward returns only then, error or
    // not), so nothing still writes the slots given back here.
    drop_fresh();
    for (SlotId s : result.slots) (void)pool_->Release(s);
    if (step_status.ok() || load_failed) {
      // The load failed under the step (a chunk's checksum, the node lost):
      // the step's output is dropped and the turn runs again on what was
      // verified.
      *failed_late = true;
      TurnStats partial_stats;
      partial_stats.load_stop_reason = result.stop_reason.ok() ? step_status : result.stop_reason;
      return partial_stats;
    }
    if (absl::IsResourceExhausted(step_status)) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the worker's chunk pool cannot hold this conversation of ", n, " tokens: ",
          step_status.message()));
    }
    return step_status;
  }

  // Keep the sequence: cached chunks (held by the fetch), computed ones.
  std::vector<size_t> to_save;
  std::vector<SlotId> save_slots;
  for (size_t i = 0; i < fresh.size(); ++i) {
    if (keyed[i]) {
      (void)pool_->MarkReady(fresh[i], /*hold=*/true);
      to_save.push_back(c + i);
      save_slots.push_back(fresh[i]);
    }
  }
  view_.assign(tokens.begin(), tokens.end());
  // The cached chunks are held under the keys they were found by (a view
  // chunk may be an exact chunk reused at a new position); what follows is
  // keyed by the view.
  keys_.assign(cached_keys.begin(), cached_keys.begin() + c);
  keys_.insert(keys_.end(), keys.begin() + c, keys.end());
  slots_ = result.slots;
  slots_.insert(slots_.end(), fresh.begin(), fresh.end());
  has_partial_ = partial;
  const absl::Time logits_at = absl::Now();
  if (options_.save && !to_save.empty()) Save(to_save, save_slots);

  TurnStats stats;
  stats.tokens = n;
  stats.hit_tokens = static_cast<int>(result.pool_hits) * tpc_;
  stats.loaded_tokens = static_cast<int>(result.loaded) * tpc_;
  stats.computed_tokens = n - history;
  stats.load_stop_reason = start_failure.ok() ? result.stop_reason : start_failure;
  stats.logits_at = logits_at;
  stats.load_wait = load_wait;
  stats.load_start = load_start;
  stats.forward = forward;
  stats.verdict_wait = verdict_wait;
  stats.copied_after = result.copied_after;
  stats.verified_after = result.verified_after;
  return stats;
}

absl::Status Worker::Decode(int32_t token, std::vector<float>* logits) {
  Worker* self[] = {this};
  const int32_t tok[] = {token};
  return DecodeBatch(self, tok, AttentionKernel::kPrefill, logits);
}

absl::Status Worker::BeginDecode(int32_t token) {
  if (tokens_.empty()) return absl::FailedPreconditionError("decode: no sequence (Prefill first)");
  if (token < 0 || token >= model_->config().vocab) {
    return absl::InvalidArgumentError(
        absl::StrCat("decode: token ", token, " outside the vocabulary of ", model_->config().vocab));
  }
  Reap(false);
  // The window full: another step of chunks after the kept ones leaves the
  // view (their slots are released; the rest attend at new positions).
  const int dropped = DropFor(static_cast<int>(tokens_.size()) + 1);
  if (dropped > dropped_) {
    const size_t keep = static_cast<size_t>(options_.keep_chunks);
    const size_t extra = static_cast<size_t>(dropped - dropped_);
    for (size_t i = keep; i < keep + extra; ++i) (void)pool_->Release(slots_[i]);
    slots_.erase(slots_.begin() + keep, slots_.begin() + keep + extra);
    keys_.erase(keys_.begin() + keep, keys_.begin() + keep + extra);
    view_.erase(view_.begin() + keep * tpc_, view_.begin() + (keep + extra) * tpc_);
    dropped_ = dropped;
    ++counters_.truncated_turns;
  }
  if (!has_partial_) {
    absl::StatusOr<SlotId> s = pool_->AllocatePrivate();
    if (!s.ok()) return s.status();
    slots_.push_back(*s);
    has_partial_ = true;
  }
  view_.push_back(token);
  return absl::OkStatus();
}

void Worker::AbortDecode() {
  const int n = static_cast<int>(view_.size());
  view_.pop_back();
  if (n % tpc_ == 1) {  // the private chunk was taken for this token
    (void)pool_->Release(slots_.back());
    slots_.pop_back();
    has_partial_ = false;
  }
}

void Worker::FinishDecode() {
  tokens_.push_back(view_.back());
  if (view_.size() % tpc_ != 0) return;
  // The trailing chunk is full: it becomes a keyed chunk (its view key), and
  // is saved. The exact chain's key needs the whole conversation.
  const ChunkKey exact = ns_.Keys(AsKeyTokens(tokens_)).back();
  const ChunkKey key = dropped_ > 0 ? TruncatedKey(exact, options_.keep_chunks, dropped_) : exact;
  const std::optional<ChunkKey> parent = keys_.empty() ? std::nullopt : std::optional(keys_.back());
  keys_.push_back(key);
  const size_t i = keys_.size() - 1;
  const SlotId slot = slots_.back();
  has_partial_ = false;
  if (pool_->Publish(slot, key, parent).ok() && options_.save) {
    const size_t idx[] = {i};
    const SlotId sl[] = {slot};
    Save(idx, sl);
  }
}

absl::Status Worker::DecodeBatch(std::span<Worker* const> workers,
                                 std::span<const int32_t> tokens, AttentionKernel kernel,
                                 std::vector<float>* logits) {
  if (workers.empty() || workers.size() != tokens.size()) {
    return absl::InvalidArgumentError(absl::StrCat("decode batch: ", workers.size(),
                                                   " workers and ", tokens.size(), " tokens"));
  }
  LlamaModel* model = workers[0]->model_;
  for (size_t i = 0; i < workers.size(); ++i) {
    if (workers[i]->model_ != model || workers[i]->pool_ != workers[0]->pool_) {
      return absl::InvalidArgumentError("decode batch: workers of different models or pools");
    }
    for (size_t j = 0; j < i; ++j) {
      if (workers[j] == workers[i]) {
        return absl::InvalidArgumentError("decode batch: a worker appears twice");
      }
    }
  }
  size_t begun = 0;
  absl::Status st;
  for (; begun < workers.size() && st.ok(); ++begun) {
    st = workers[begun]->BeginDecode(tokens[begun]);
    if (!st.ok()) break;
  }
  SequenceStep step;
  for (size_t i = 0; i < begun && st.ok(); ++i) {
    Worker& w = *workers[i];
    std::vector<std::byte*> bases;
    for (SlotId s : w.slots_) bases.push_back(*w.pool_->SlotBase(s));
    const int n = static_cast<int>(w.view_.size());
    st = step.Append(bases, n - 1, n, w.tpc_);
  }
  if (st.ok()) {
    std::vector<int32_t> new_tokens;
    for (Worker* w : workers) new_tokens.push_back(w->view_.back());
    ForwardBatch batch = step.Batch(new_tokens);
    batch.attention_kernel = kernel;
    st = model->Forward(batch, logits);
  }
  if (!st.ok()) {
    for (size_t i = 0; i < begun; ++i) workers[i]->AbortDecode();
    return st;
  }
  for (Worker* w : workers) w->FinishDecode();
  return absl::OkStatus();
}

void Worker::Save(std::span<const size_t> indices, std::span<const SlotId> slots) {
  // One save per run of consecutive chunks (a key chain segment).
  size_t begin = 0;
  while (begin < indices.size()) {
    size_t end = begin + 1;
    while (end < indices.size() && indices[end] == indices[end - 1] + 1) ++end;
    Pending p;
    p.chunks = end - begin;
    const size_t first = indices[begin];
    p.keys.assign(keys_.begin() + first, keys_.begin() + first + p.chunks);
    if (first > 0) p.parent = keys_[first - 1];
    // Held until the copy is done: the sequence may end, and the slot be
    // reused, before that.
    for (SlotId s : slots.subspan(begin, p.chunks)) {
      if (pool_->Acquire(s).ok()) p.held.push_back(s);
    }
    absl::StatusOr<std::unique_ptr<HostCopy>> copy =
        device_->StartCopyToHost(*pool_, slots.subspan(begin, p.chunks));
    if (copy.ok()) {
      p.copy = *std::move(copy);
      pending_.push_back(std::move(p));
    } else {
      SaveFailed(p, copy.status());
    }
    begin = end;
  }
  Reap(false);
}

void Worker::SaveFailed(Pending& p, const absl::Status& st) {
  for (SlotId s : p.held) (void)pool_->Release(s);
  p.held.clear();
  counters_.chunks_save_failed += p.chunks;
  if (save_error_.ok()) save_error_ = st;
}

void Worker::Reap(bool wait) {
  std::vector<Pending> still;
  for (Pending& p : pending_) {
    if (p.transfer == nullptr) {
      // The host copy: done, then the store transfer starts from it.
      if (!wait && !p.copy->done()) {
        still.push_back(std::move(p));
        continue;
      }
      absl::Status st = p.copy->Wait();
      for (SlotId s : p.held) (void)pool_->Release(s);
      p.held.clear();
      if (st.ok()) {
        absl::StatusOr<std::shared_ptr<client::Transfer>> t =
            client_->Save(ns_, p.keys, p.copy->bytes(), p.parent);
        if (t.ok()) {
          p.transfer = *std::move(t);
        } else {
          st = t.status();
        }
      }
      if (!st.ok()) {
        SaveFailed(p, st);
        continue;
      }
    }
    if (!wait && !p.transfer->done()) {
      still.push_back(std::move(p));
      continue;
    }
    absl::Status st = p.transfer->Wait();
    if (st.ok()) {
      counters_.chunks_saved += p.chunks;
    } else {
      SaveFailed(p, st);
    }
  }
  pending_ = std::move(still);
}

absl::Status Worker::WaitSaves() {
  Reap(true);
  absl::Status st = std::move(save_error_);
  save_error_ = absl::OkStatus();
  return st;
}

}  // namespace strata::runtime
