// SequenceTree: the sequences of a worker's batch as chains of chunks in a
// ChunkPool, arranged as a prefix tree, and the kernels' batch inputs built
// from it.
//
// A sequence is its full chunks (chunk keys, shared: a key names its whole
// prefix, so equal keys at equal depth are the same tokens and one pool slot
// serves every sequence that has them; a shared system prompt is resident
// once however many sequences use it) followed by an optional partial
// trailing chunk in a private slot that no other sequence sees. Adding a
// sequence takes one pool hold per chunk; removing it releases them.
//
// Positions and truncation. Keys are stored without RoPE and the kernels
// rotate each chunk at a position given per chunk, so a sequence may drop
// chunks from its middle (Truncate: the oldest turns after the system prompt,
// when the context is full) and the chunks after the cut are re-based to
// follow the kept ones. What this approximates: the K/V of a kept chunk were
// computed by layers that attended to the dropped tokens, so they still
// carry that context in their values (only the positional rotation is
// exact). This is the approximation of AttentionStore's truncation with
// decoupled positional encoding; it is not equal to recomputing the
// truncated text from scratch.
//
// Thread-safety: none; the owner serialises all calls. The pool may be
// shared with other users (it is thread-safe).
#ifndef STRATA_CLIENT_RUNTIME_SEQUENCE_TREE_H_
#define STRATA_CLIENT_RUNTIME_SEQUENCE_TREE_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/runtime/chunk_pool.h"
#include "kernels/attention_types.h"
#include "kernels/prefill_plan.h"
#include "store/common/chunk_key.h"

namespace strata::runtime {

using SequenceId = uint64_t;

// Page tables of a batch (kernels::PagedBatch, owned). `shared_chunks[b]` is
// the number of leading chunks of sequence b that at least one other sequence
// of the batch has at the same depth (same slot): the sharing that
// BuildPrefixTreePlan finds by pointer identity.
struct PagedTables {
  std::vector<const void*> chunks;
  std::vector<int32_t> chunk_offsets;
  std::vector<int32_t> lengths;
  std::vector<int32_t> shared_chunks;
  // A view valid while this object lives and is not modified.
  kernels::PagedBatch batch() const { return {chunks, chunk_offsets, lengths}; }
};

// Relay attention input: the prefix every sequence of the batch shares (full
// chunks at the same depth) and each sequence's private context after it.
struct RelayTables {
  std::vector<const void*> prefix_chunks;
  int prefix_length = 0;
  PagedTables context;
};

// Prefill input (kernels::PrefillBatch, owned).
struct PrefillTables {
  std::vector<const void*> chunks;
  std::vector<int32_t> positions;
  std::vector<int32_t> chunk_offsets;
  std::vector<int32_t> kv_lengths;
  std::vector<int32_t> query_offsets;
  kernels::PrefillBatch batch() const {
    return {chunks, positions, chunk_offsets, kv_lengths, query_offsets};
  }
};

// One sequence of a prefill batch: its last `num_new` tokens (already in its
// chunks) are the new query tokens.
struct PrefillRequest {
  SequenceId id = 0;
  int num_new = 0;
};

class SequenceTree {
 public:
  struct Options {
    kernels::KvLayout layout;  // tokens_per_chunk and the slice geometry
    uint32_t num_layers = 0;
  };

  // InvalidArgument when the pool's chunk and layer sizes do not match
  // `options` (layer_bytes == layout.SliceBytes(), num_layers layers).
  // `pool` is not owned and must outlive the tree.
  static absl::StatusOr<std::unique_ptr<SequenceTree>> Create(const Options& options,
                                                              ChunkPool* pool);
  SequenceTree(const SequenceTree&) = delete;
  SequenceTree& operator=(const SequenceTree&) = delete;
  // Releases every sequence's holds.
  ~SequenceTree();

  // Adds sequence `id`: full chunks `keys` (each ready in the pool) and
  // `partial_tokens` (0 .. tokens_per_chunk - 1) tokens of a new private
  // chunk. AlreadyExists for a known id; InvalidArgument for a bad
  // partial_tokens; NotFound / FailedPrecondition (from the pool) when a
  // chunk is absent / still loading; ResourceExhausted when no slot is left
  // for the partial chunk. On error nothing changes.
  absl::Status AddSequence(SequenceId id, std::span<const ChunkKey> keys, int partial_tokens);
  // Releases the sequence's chunks. NotFound for an unknown id.
  absl::Status RemoveSequence(SequenceId id);
  // Drops `drop_chunks` full chunks after the first `keep_chunks` (e.g. the
  // system prompt) and re-bases the positions of the rest. InvalidArgument
  // unless 0 < drop_chunks and keep_chunks + drop_chunks <= full chunks.
  absl::Status Truncate(SequenceId id, int keep_chunks, int drop_chunks);

  // The private slot of the partial chunk (NotFound without one), for the
  // runtime to write new tokens' K/V into.
  absl::StatusOr<SlotId> PartialSlot(SequenceId id) const;
  // Tokens of the sequence (full chunks x tokens_per_chunk + partial).
  absl::StatusOr<int> Length(SequenceId id) const;
  // Sequences that hold `key` (0 when none).
  int Users(const ChunkKey& key) const;
  size_t num_sequences() const { return sequences_.size(); }
  // Distinct keyed chunks held by the tree's sequences.
  size_t num_chunks() const { return users_.size(); }

  // Kernel inputs for layer `layer` of the sequences `ids` (in that order).
  // InvalidArgument for an empty batch, a repeated id or a layer out of
  // range; NotFound for an unknown id.
  absl::StatusOr<PagedTables> BuildPaged(std::span<const SequenceId> ids, uint32_t layer) const;
  absl::StatusOr<RelayTables> BuildRelay(std::span<const SequenceId> ids, uint32_t layer) const;
  // Also InvalidArgument when num_new < 0 or exceeds the sequence's length.
  absl::StatusOr<PrefillTables> BuildPrefill(std::span<const PrefillRequest> requests,
                                             uint32_t layer) const;

 private:
  struct Entry {
    SlotId slot = -1;
    int32_t position = 0;  // position of the chunk's token 0
    bool keyed = true;     // false for the private partial chunk
    ChunkKey key;
  };
  struct Sequence {
    std::vector<Entry> entries;  // full chunks, then the partial one if any
    int partial_tokens = 0;
    int full_chunks() const {
      return static_cast<int>(entries.size()) - (partial_tokens > 0 ? 1 : 0);
    }
  };

  SequenceTree(const Options& options, ChunkPool* pool) : options_(options), pool_(pool) {}
  absl::StatusOr<std::vector<const Sequence*>> Resolve(std::span<const SequenceId> ids,
                                                       uint32_t layer) const;
  const void* Slice(const Entry& e, uint32_t layer) const;
  int LengthOf(const Sequence& s) const;
  void ReleaseEntries(std::span<const Entry> entries);
  void Rebase(Sequence& s) const;

  const Options options_;
  ChunkPool* const pool_;
  absl::flat_hash_map<SequenceId, Sequence> sequences_;
  absl::flat_hash_map<ChunkKey, int> users_;
};

}  // namespace strata::runtime

#endif  // STRATA_CLIENT_RUNTIME_SEQUENCE_TREE_H_
