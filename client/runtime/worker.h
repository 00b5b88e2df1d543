// Worker: the runtime of one inference worker's conversation, end to end.
// A turn brings the conversation's cached prefix into the chunk pool (pool
// hits first, then the store, layer by layer), runs the model over the rest
// with layer l's attention waiting only for layer l's loaded bytes, keeps
// the K/V it computed in pool slots, and saves the full chunks it computed
// back to the store in the background. Decode steps append one token at a
// time; a trailing chunk stays private to the sequence until it is full,
// then is published to the pool and saved.
//
// Verification: the attention of a layer may run before the whole load is
// verified (that is what hides the load behind the compute). When the
// load's verdict then says a chunk failed (checksum, node lost mid-load),
// the step's output is discarded and the turn recomputed from the verified
// prefix: bytes that failed their check never reach a returned logit.
//
// Truncation (WorkerOptions::max_context). Keys are stored without RoPE and
// attention rotates every chunk at its position in the page table, so a
// conversation that outgrows the window drops whole chunks after the kept
// system prompt and attends to the rest at new (re-based) positions without
// recomputing them. The number of dropped chunks D is the excess over the
// window rounded up to a multiple of the step, so it stays the same for many
// turns. What this approximates: a kept chunk's K/V were computed by layers
// that saw the dropped tokens (only the rotation is exact), so the result is
// not that of recomputing the truncated text from scratch; chunks computed
// while D > 0 saw only the view and are saved under view keys
// TruncatedKey(key, keep, D), never under the exact chain's keys, so a
// worker without truncation never loads them. Reuse across turns: a view
// chunk is looked up under its view key at D, then at the three smaller
// steps of D, then under its exact key; the first found is loaded (one extra
// Lookup per truncated turn). Decode steps that outgrow the window drop
// another step of chunks from the pool's view in place.
//
// Where the pool lives is a KvDevice: host memory (HostKvDevice, used by the
// CPU model and the tests) or a GPU (CudaKvDevice in worker_cuda.h).
//
// Thread-compatible: one conversation at a time per Worker; the pool and the
// client may be shared with other workers.
#ifndef STRATA_CLIENT_RUNTIME_WORKER_H_
#define STRATA_CLIENT_RUNTIME_WORKER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "client/runtime/chunk_pool.h"
#include "client/runtime/fetch.h"
#include "client/runtime/llama_model.h"

namespace strata::runtime {

// A prefix being brought into the pool.
class PrefixLoad {
 public:
  virtual ~PrefixLoad() = default;
  // Pool hits then slots being loaded, in chain order.
  virtual std::span<const SlotId> slots() const = 0;
  // Returns once layer `layer` of every loaded slot may be read by the
  // model's next work (for a GPU: that work is ordered after the copy).
  virtual absl::Status BeforeAttention(int layer) = 0;
  // The verdict (as FetchResult). Call once.
  virtual FetchResult Wait() = 0;
};

// Chunks being copied from the pool to host memory (for a save).
class HostCopy {
 public:
  virtual ~HostCopy() = default;
  // True once the bytes are in host memory (does not block).
  virtual bool done() = 0;
  // Waits for the copy; its error, if any.
  virtual absl::Status Wait() = 0;
  // The chunks, in order; valid once done() or Wait() returned ok, while
  // this object lives.
  virtual std::span<const std::byte> bytes() const = 0;
};

// A finished copy in ordinary host memory.
class ReadyHostCopy final : public HostCopy {
 public:
  explicit ReadyHostCopy(std::vector<std::byte> bytes) : bytes_(std::move(bytes)) {}
  bool done() override { return true; }
  absl::Status Wait() override { return absl::OkStatus(); }
  std::span<const std::byte> bytes() const override { return bytes_; }

 private:
  std::vector<std::byte> bytes_;
};

class KvDevice {
 public:
  virtual ~KvDevice() = default;
  // Starts a fetch of `keys` into `pool` (Fetch's sequencing).
  virtual absl::StatusOr<std::unique_ptr<PrefixLoad>> StartLoad(client::Client& client,
                                                                const client::Namespace& ns,
                                                                ChunkPool& pool,
                                                                std::span<const ChunkKey> keys) = 0;
  // Starts copying `slots` (ready; the model's work that wrote them is
  // queued or done) to host memory, chunk after chunk, without waiting for
  // it. The caller holds the slots until the copy is done.
  virtual absl::StatusOr<std::unique_ptr<HostCopy>> StartCopyToHost(
      ChunkPool& pool, std::span<const SlotId> slots) = 0;
};

// A pool in host memory: loads through Fetch (on_layer gates the layers).
std::unique_ptr<KvDevice> CreateHostKvDevice();

// The view key of a chunk whose exact key is `key`, in a conversation
// truncated to its first `keep` chunks followed by the chunks after `dropped`
// dropped ones: KeyChain::Next(key, {0x4e555254, keep, dropped}) (the tokens
// "TRUN" as uint32 little-endian, keep, dropped): three tokens, a length no
// chunk has, so it is never a key of the exact chain.
ChunkKey TruncatedKey(const ChunkKey& key, int keep, int dropped);

struct WorkerOptions {
  // Where a turn's cached prefix may come from.
  enum class Source {
    kStore,      // pool hits, then the store (the default)
    kPoolOnly,   // pool hits only
    kNone,       // nothing: recompute the whole conversation
  };
  Source source = Source::kStore;
  // Save the full chunks a step computed (in the background).
  bool save = true;
  // Run the model step while the prefix loads (layer l waiting for layer l
  // only), or only once the whole load arrived and was verified.
  bool overlap = true;

  // Context window, in tokens (0: no limit). A conversation longer than the
  // window is truncated (see "Truncation" above): its first `keep_chunks`
  // chunks (the system prompt) stay, the oldest chunks after them are
  // dropped, `truncate_step_chunks` at a time (0: a quarter of the window),
  // and the rest attend at new positions. A multiple of tokens_per_chunk,
  // above keep_chunks chunks (InvalidArgument otherwise).
  int max_context = 0;
  int keep_chunks = 1;
  int truncate_step_chunks = 0;
};

struct TurnStats {
  int tokens = 0;           // conversation length
  int dropped_tokens = 0;   // truncated away (not attended)
  int hit_tokens = 0;       // found in the pool
  int loaded_tokens = 0;    // loaded from the store and verified
  int computed_tokens = 0;  // run through the model (at least 1)
  bool recomputed = false;  // a load failed late: the turn ran again
  absl::Status load_stop_reason;  // why the cached prefix ended early, if it did
  absl::Duration time_to_logits;  // the turn's wall time up to its logits (TTFT)
  absl::Time logits_at;           // when the logits were there
  absl::Duration load_wait;       // of it, spent waiting for loaded layers
  // Of it: starting the load (pool hits, lookup, lease, copies enqueued),
  // the model step, and waiting for the load's verdict after the step.
  absl::Duration load_start, forward, verdict_wait;
  // The load's own timeline (FetchResult): bytes in HBM, bytes verified.
  absl::Duration copied_after, verified_after;
};

struct WorkerCounters {
  uint64_t turns = 0;
  uint64_t truncated_turns = 0;       // turns (and decode steps) that dropped chunks
  uint64_t recomputes_after_failed_load = 0;
  uint64_t chunks_saved = 0;
  uint64_t chunks_save_failed = 0;
};

class Worker {
 public:
  // InvalidArgument when the model does not fit the namespace (layers, KV
  // heads, head_dim, dtype) or the pool's chunk and layer sizes differ from
  // the namespace's: before anything moves. Pointers are not owned and must
  // outlive the worker.
  static absl::StatusOr<std::unique_ptr<Worker>> Create(client::Client* client,
                                                        const client::Namespace& ns,
                                                        LlamaModel* model, ChunkPool* pool,
                                                        KvDevice* device,
                                                        const WorkerOptions& options = {});
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Starts a turn of the conversation `tokens` (all of it so far: earlier
  // turns and the new prompt); `logits` gets the next token's. Ends the
  // previous sequence first. InvalidArgument for no tokens or a token
  // outside the vocabulary; ResourceExhausted when the pool cannot hold the
  // conversation (nothing kept; other workers unaffected). Store failures
  // (at the start of the load or under the step) are not errors: what could
  // not be loaded is recomputed, and load_stop_reason says why. The turn
  // returns once the chunks it computed are copied to the host for saving
  // (time_to_logits stops before that copy).
  absl::StatusOr<TurnStats> Prefill(std::span<const int32_t> tokens, std::vector<float>* logits);
  // Appends `token` to the current sequence and runs one step; `logits`
  // gets the next token's. FailedPrecondition without a sequence.
  absl::Status Decode(int32_t token, std::vector<float>* logits);
  // One decode step of several workers' current sequences in one model step
  // (the same model and pool: a batch): workers[i] appends tokens[i];
  // `logits` gets [workers][vocab]; `kernel` runs the attention (the decode
  // kernels read a prefix the sequences share, e.g. a system prompt held in
  // one pool slot, once for the batch). InvalidArgument for mismatched
  // sizes, a repeated worker or workers of different models or pools; each
  // worker's Decode errors. On error no sequence gains a token (a chunk
  // that truncation dropped for the step stays dropped).
  static absl::Status DecodeBatch(std::span<Worker* const> workers,
                                  std::span<const int32_t> tokens, AttentionKernel kernel,
                                  std::vector<float>* logits);
  // Releases the sequence's slots (their chunks stay cached in the pool).
  void EndSequence();
  // Waits for the saves in flight; the first save error since the last call.
  absl::Status WaitSaves();

  // The whole conversation so far (dropped tokens included).
  std::span<const int32_t> tokens() const { return tokens_; }
  // Chunks dropped from the current sequence's view (0 without truncation).
  int dropped_chunks() const { return dropped_; }
  const WorkerCounters& counters() const { return counters_; }

 private:
  // A save: the host copy under way (the slots held until it is done),
  // then the store transfer.
  struct Pending {
    std::unique_ptr<HostCopy> copy;
    std::vector<SlotId> held;
    std::vector<ChunkKey> keys;
    std::optional<ChunkKey> parent;
    std::shared_ptr<client::Transfer> transfer;
    size_t chunks = 0;
  };

  Worker(client::Client* client, const client::Namespace& ns, LlamaModel* model, ChunkPool* pool,
         KvDevice* device, const WorkerOptions& options);
  // Chunks dropped at a time when the window is full.
  int TruncateStep() const;
  // The chunks dropped after keep_chunks from a conversation of `n` tokens.
  int DropFor(int n) const;
  // View keys of a conversation's full chunks (exact keys when dropped == 0).
  std::vector<ChunkKey> ViewKeys(std::span<const ChunkKey> exact, int dropped) const;
  // The keys to load for the view's cached chunks: per chunk the first
  // candidate the pool or (when the turn may load from it) the store holds:
  // view key at D, at smaller steps, exact key.
  std::vector<ChunkKey> ResolveCached(std::span<const ChunkKey> exact, size_t usable);
  absl::StatusOr<TurnStats> Attempt(std::span<const int32_t> view,
                                    std::span<const ChunkKey> keys,
                                    std::span<const ChunkKey> load_keys,
                                    WorkerOptions::Source source, std::vector<float>* logits,
                                    bool* failed_late);
  // A decode step in three parts: the token appended to the view (a slot
  // for it, truncation), undone on a failed step, or kept.
  absl::Status BeginDecode(int32_t token);
  void AbortDecode();
  void FinishDecode();
  // Saves chunks keys_[i] for i in `indices` from `slots` (background).
  void Save(std::span<const size_t> indices, std::span<const SlotId> slots);
  // Moves saves along: copies that are done start their store transfers
  // (all copies are waited for with `wait`), finished transfers are counted.
  void Reap(bool wait);
  void SaveFailed(Pending& p, const absl::Status& st);

  client::Client* const client_;
  const client::Namespace ns_;
  LlamaModel* const model_;
  ChunkPool* const pool_;
  KvDevice* const device_;
  const WorkerOptions options_;
  const int tpc_;

  // The current sequence: its tokens (all of them), the view's tokens (what
  // the model attends: tokens_ without the dropped chunks), the view's
  // full-chunk keys, held slots (full chunks then the private partial one,
  // if any).
  std::vector<int32_t> tokens_;
  std::vector<int32_t> view_;
  int dropped_ = 0;
  std::vector<ChunkKey> keys_;
  std::vector<SlotId> slots_;
  bool has_partial_ = false;

  std::vector<Pending> pending_;
  absl::Status save_error_;
  WorkerCounters counters_;
};

}  // namespace strata::runtime

#endif  // STRATA_CLIENT_RUNTIME_WORKER_H_
