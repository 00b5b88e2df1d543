// Test support for the prefill kernel: batches of sequences (history + new
// tokens) laid out in chunk slices of one host pool, with the same data kept
// in plain per-sequence arrays so that tests can compute attention without
// reading the chunks. Not thread-safe; one instance per test.
#ifndef STRATA_KERNELS_PREFILL_TESTING_H_
#define STRATA_KERNELS_PREFILL_TESTING_H_

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "kernels/attention_types.h"
#include "kernels/prefill_plan.h"

namespace strata::kernels::testing {

struct PrefillSeqSpec {
  int history = 0;         // cached tokens
  int num_new = 1;         // new tokens (queries), 0 allowed
  int first_position = 0;  // position of token 0 (a re-based history)
  // Positions jump by `skip` after chunk `skip_after` (a history truncated
  // in the middle, e.g. a system prompt kept and old turns dropped).
  int skip_after = -1;
  int skip = 0;
  // Share the first `shared_chunks` chunk slices (same pointers, same data)
  // of an earlier sequence `share_with`; both must have that many chunks.
  int share_with = -1;
  int shared_chunks = 0;
};

class PrefillCase {
 public:
  PrefillCase(const KvLayout& layout, const PrefillOptions& options,
              uint32_t seed);
  PrefillCase(const PrefillCase&) = delete;
  PrefillCase& operator=(const PrefillCase&) = delete;

  void AddSequence(const PrefillSeqSpec& spec);
  // Draws the queries of every sequence added so far; call once, last.
  void Finish();

  // The batch (host pointers into pool()); valid until the next AddSequence.
  PrefillBatch batch();
  const std::vector<uint16_t>& queries() const { return queries_; }
  const std::vector<uint16_t>& pool() const { return pool_; }
  const KvLayout& layout() const { return layout_; }
  const PrefillOptions& options() const { return options_; }
  int num_seqs() const { return static_cast<int>(seqs_.size()); }

  // Plain per-sequence data: keys / values [kv_head][token][head_dim] as
  // floats of the dtype's values (unrotated), positions per token, and the
  // number of new tokens.
  const std::vector<float>& keys(int b) const { return seqs_[b].keys; }
  const std::vector<float>& values(int b) const { return seqs_[b].values; }
  const std::vector<int32_t>& token_positions(int b) const {
    return seqs_[b].positions;
  }
  int kv_length(int b) const { return static_cast<int>(seqs_[b].positions.size()); }
  int num_new(int b) const { return seqs_[b].num_new; }
  int query_offset(int b) const { return query_offsets_[b]; }

  // The pointers of `ptrs` moved from the host pool to a copy of it at
  // device_base.
  std::vector<const void*> Rebase(std::span<const void* const> ptrs,
                                  const void* device_base) const;

 private:
  struct Seq {
    std::vector<float> keys, values;
    std::vector<int32_t> positions;
    std::vector<int32_t> chunk_ids;       // slices in the pool
    std::vector<int32_t> chunk_positions; // position of each chunk's token 0
    int num_new = 0;
  };
  uint16_t Random();

  KvLayout layout_;
  PrefillOptions options_;
  std::mt19937 rng_;
  std::normal_distribution<float> normal_{0.0f, 1.0f};
  std::vector<Seq> seqs_;
  std::vector<uint16_t> pool_;
  int32_t num_slices_ = 0;
  std::vector<uint16_t> queries_;
  // Views returned by batch().
  std::vector<const void*> chunks_;
  std::vector<int32_t> positions_, chunk_offsets_, kv_lengths_, query_offsets_;
};

}  // namespace strata::kernels::testing

#endif  // STRATA_KERNELS_PREFILL_TESTING_H_
