#include "kernels/attention_testing.h"

#include <map>

#include "kernels/attention_reference.h"

namespace strata::kernels::testing {

TestBatch::TestBatch(const KvLayout& layout, const AttentionOptions& options,
                     uint32_t seed)
    : layout_(layout), options_(options), rng_(seed) {}

void TestBatch::Reserve(size_t chunks) {
  // Pointers into the pool are handed out, so it is sized once.
  pool_.assign(chunks * layout_.SliceBytes() / kKvElementBytes, 0);
  pool_used_ = 0;
}

const void* TestBatch::NewChunk() {
  const size_t elems = layout_.SliceBytes() / kKvElementBytes;
  uint16_t* p = pool_.data() + pool_used_ * elems;
  ++pool_used_;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (size_t i = 0; i < elems; ++i) p[i] = FromFloat(layout_.dtype, normal(rng_));
  return p;
}

void TestBatch::MakeQueries() {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  queries_.resize(lengths_.size() * options_.num_q_heads * layout_.head_dim);
  for (uint16_t& q : queries_) q = FromFloat(layout_.dtype, normal(rng_));
}

void TestBatch::MakeTree(const TreeSpec& spec) {
  const int tpc = layout_.tokens_per_chunk;
  const int max_tail_chunks = (spec.max_tail_tokens + tpc - 1) / tpc;
  Reserve(static_cast<size_t>(spec.num_seqs) *
          (spec.depth * spec.max_node_chunks + max_tail_chunks + 1));
  chunks_.clear();
  offsets_.assign(1, 0);
  lengths_.clear();
  // Shared nodes keyed by their path of branch choices.
  std::map<std::vector<int>, std::vector<const void*>> nodes;
  std::uniform_int_distribution<int> branch(0, spec.max_branching - 1);
  std::uniform_int_distribution<int> node_chunks(1, spec.max_node_chunks);
  std::uniform_int_distribution<int> tail(0, spec.max_tail_tokens);
  std::uniform_int_distribution<int> coin(0, 3);
  for (int s = 0; s < spec.num_seqs; ++s) {
    std::vector<const void*> seq;
    int length = 0;
    if (spec.duplicates && s > 0 && coin(rng_) == 0) {
      // Repeat a previous sequence, possibly extending its partial chunk.
      const int prev = std::uniform_int_distribution<int>(0, s - 1)(rng_);
      seq.assign(chunks_.begin() + offsets_[prev],
                 chunks_.begin() + offsets_[prev + 1]);
      length = lengths_[prev];
      if (length % tpc != 0 && coin(rng_) < 2) {
        length += std::uniform_int_distribution<int>(1, tpc - length % tpc)(rng_);
      }
    } else {
      std::vector<int> path;
      for (int l = 0; l < spec.depth; ++l) {
        path.push_back(branch(rng_));
        auto it = nodes.find(path);
        if (it == nodes.end()) {
          std::vector<const void*> node(node_chunks(rng_));
          for (auto& c : node) c = NewChunk();
          it = nodes.emplace(path, std::move(node)).first;
        }
        seq.insert(seq.end(), it->second.begin(), it->second.end());
      }
      length = static_cast<int>(seq.size()) * tpc;
      const int t = spec.tail_tokens >= 0 ? spec.tail_tokens : tail(rng_);
      for (int c = 0; c < (t + tpc - 1) / tpc; ++c) seq.push_back(NewChunk());
      length += t;
    }
    chunks_.insert(chunks_.end(), seq.begin(), seq.end());
    offsets_.push_back(static_cast<int32_t>(chunks_.size()));
    lengths_.push_back(length);
  }
  MakeQueries();
}

void TestBatch::MakeRelay(int num_seqs, int prefix_length, int max_context) {
  const int tpc = layout_.tokens_per_chunk;
  const int prefix_chunks = (prefix_length + tpc - 1) / tpc;
  Reserve(prefix_chunks + static_cast<size_t>(num_seqs) *
                              ((max_context + tpc - 1) / tpc));
  prefix_.clear();
  for (int c = 0; c < prefix_chunks; ++c) prefix_.push_back(NewChunk());
  prefix_length_ = prefix_length;
  chunks_.clear();
  offsets_.assign(1, 0);
  lengths_.clear();
  std::uniform_int_distribution<int> context(0, max_context);
  for (int s = 0; s < num_seqs; ++s) {
    const int len = s == 0 ? max_context : context(rng_);
    for (int c = 0; c < (len + tpc - 1) / tpc; ++c) chunks_.push_back(NewChunk());
    offsets_.push_back(static_cast<int32_t>(chunks_.size()));
    lengths_.push_back(len);
  }
  MakeQueries();
}

PagedBatch TestBatch::batch() const {
  return PagedBatch{chunks_, offsets_, lengths_};
}

std::vector<const void*> TestBatch::Rebase(std::span<const void* const> ptrs,
                                           const void* device_base) const {
  std::vector<const void*> out;
  out.reserve(ptrs.size());
  const char* host = reinterpret_cast<const char*>(pool_.data());
  for (const void* p : ptrs) {
    out.push_back(static_cast<const char*>(device_base) +
                  (static_cast<const char*>(p) - host));
  }
  return out;
}

}  // namespace strata::kernels::testing
