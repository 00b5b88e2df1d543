// Test support: random batches of sequences whose chunk lists form a prefix
// tree, with KV data in host memory (one contiguous pool of chunk slices, so
// that GPU tests can upload it with one copy and rebase the pointers).
// Not thread-safe; one instance per test.
#ifndef STRATA_KERNELS_ATTENTION_TESTING_H_
#define STRATA_KERNELS_ATTENTION_TESTING_H_

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/attention_types.h"

namespace strata::kernels::testing {

struct TreeSpec {
  int num_seqs = 7;
  int depth = 2;             // levels of shared nodes above the private tails
  int max_branching = 3;     // children per shared node
  int max_node_chunks = 3;   // full chunks per shared node
  int max_tail_tokens = 100; // private tokens per sequence (0..max)
  int tail_tokens = -1;      // if >= 0: every private tail has this length
  bool duplicates = true;    // some sequences repeat or extend another's
};

class TestBatch {
 public:
  TestBatch(const KvLayout& layout, const AttentionOptions& options,
            uint32_t seed);
  TestBatch(const TestBatch&) = delete;
  TestBatch& operator=(const TestBatch&) = delete;

  // Fills the batch with sequences drawn from a random tree.
  void MakeTree(const TreeSpec& spec);
  // Fills a relay batch: prefix_length shared tokens, contexts of
  // 0..max_context tokens (at least one sequence gets max_context).
  void MakeRelay(int num_seqs, int prefix_length, int max_context);

  PagedBatch batch() const;
  std::span<const void* const> prefix_chunks() const { return prefix_; }
  int prefix_length() const { return prefix_length_; }
  const std::vector<uint16_t>& queries() const { return queries_; }
  const std::vector<uint16_t>& pool() const { return pool_; }
  const KvLayout& layout() const { return layout_; }
  const AttentionOptions& options() const { return options_; }
  int num_seqs() const { return static_cast<int>(lengths_.size()); }

  // The pointers of `ptrs` moved from the host pool to a copy of it at
  // device_base.
  std::vector<const void*> Rebase(std::span<const void* const> ptrs,
                                  const void* device_base) const;

 private:
  const void* NewChunk();  // a chunk slice of random values
  void Reserve(size_t chunks);
  void MakeQueries();

  KvLayout layout_;
  AttentionOptions options_;
  std::mt19937 rng_;
  std::vector<uint16_t> pool_;
  size_t pool_used_ = 0;  // chunk slices handed out
  std::vector<const void*> chunks_;
  std::vector<int32_t> offsets_;
  std::vector<int32_t> lengths_;
  std::vector<const void*> prefix_;
  int prefix_length_ = 0;
  std::vector<uint16_t> queries_;
};

}  // namespace strata::kernels::testing

#endif  // STRATA_KERNELS_ATTENTION_TESTING_H_
