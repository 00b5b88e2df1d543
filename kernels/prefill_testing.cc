#include "kernels/prefill_testing.h"

#include <cstdio>
#include <cstdlib>

#include <cassert>

#include "kernels/attention_reference.h"

namespace strata::kernels::testing {

PrefillCase::PrefillCase(const KvLayout& layout, const PrefillOptions& options,
                         uint32_t seed)
    : layout_(layout), options_(options), rng_(seed) {
  query_offsets_.push_back(0);
}

uint16_t PrefillCase::Random() { return FromFloat(layout_.dtype, normal_(rng_)); }

void PrefillCase::AddSequence(const PrefillSeqSpec& spec) {
  const int tpc = layout_.tokens_per_chunk;
  const int d = layout_.head_dim;
  const int hkv = layout_.num_kv_heads;
  const int len = spec.history + spec.num_new;
  const int nchunks = (len + tpc - 1) / tpc;
  const size_t slice = 2 * layout_.HalfElements();
  Seq s;
  s.num_new = spec.num_new;
  s.keys.resize(static_cast<size_t>(hkv) * len * d);
  s.values.resize(s.keys.size());
  for (int c = 0; c < nchunks; ++c) {
    const int pos0 = spec.first_position + c * tpc +
                     (spec.skip_after >= 0 && c > spec.skip_after ? spec.skip : 0);
    s.chunk_positions.push_back(pos0);
    int32_t id;
    if (c < spec.shared_chunks) {
      // A case that shares more chunks than the other sequence has is a bug
      // of the test itself: stop loudly (also in optimized builds).
      if (spec.share_with < 0 || spec.share_with >= num_seqs() ||
          static_cast<size_t>(c) >= seqs_[spec.share_with].chunk_ids.size()) {
        std::fprintf(stderr, "PrefillCase: chunk %d shared with sequence %d, which has no such "
                     "chunk\n", c, spec.share_with);
        std::abort();
      }
      id = seqs_[spec.share_with].chunk_ids[c];
    } else {
      id = num_slices_++;
      pool_.resize(static_cast<size_t>(num_slices_) * slice);
      uint16_t* p = pool_.data() + static_cast<size_t>(id) * slice;
      // Slots past the sequence's length hold infinities: never to be read.
      const uint16_t inf = layout_.dtype == KvDtype::kFloat16 ? 0x7c00 : 0x7f80;
      for (size_t i = 0; i < slice; ++i) p[i] = inf;
      for (int h = 0; h < hkv; ++h) {
        for (int t = c * tpc; t < std::min(len, (c + 1) * tpc); ++t) {
          const size_t off = (static_cast<size_t>(h) * tpc + t % tpc) * d;
          for (int i = 0; i < d; ++i) {
            p[off + i] = Random();
            p[layout_.HalfElements() + off + i] = Random();
          }
        }
      }
    }
    s.chunk_ids.push_back(id);
  }
  // The plain copy, read back from the slices (shared ones included).
  for (int t = 0; t < len; ++t) {
    const int c = t / tpc;
    s.positions.push_back(s.chunk_positions[c] + t % tpc);
    const uint16_t* p = pool_.data() + static_cast<size_t>(s.chunk_ids[c]) * slice;
    for (int h = 0; h < hkv; ++h) {
      const size_t off = (static_cast<size_t>(h) * tpc + t % tpc) * d;
      for (int i = 0; i < d; ++i) {
        s.keys[(static_cast<size_t>(h) * len + t) * d + i] = ToFloat(layout_.dtype, p[off + i]);
        s.values[(static_cast<size_t>(h) * len + t) * d + i] =
            ToFloat(layout_.dtype, p[layout_.HalfElements() + off + i]);
      }
    }
  }
  query_offsets_.push_back(query_offsets_.back() + spec.num_new);
  seqs_.push_back(std::move(s));
}

void PrefillCase::Finish() {
  queries_.resize(static_cast<size_t>(query_offsets_.back()) * options_.num_q_heads *
                  layout_.head_dim);
  for (uint16_t& q : queries_) q = Random();
}

PrefillBatch PrefillCase::batch() {
  const size_t slice = 2 * layout_.HalfElements();
  chunks_.clear();
  positions_.clear();
  chunk_offsets_.assign(1, 0);
  kv_lengths_.clear();
  for (const Seq& s : seqs_) {
    for (size_t c = 0; c < s.chunk_ids.size(); ++c) {
      chunks_.push_back(pool_.data() + static_cast<size_t>(s.chunk_ids[c]) * slice);
      positions_.push_back(s.chunk_positions[c]);
    }
    chunk_offsets_.push_back(static_cast<int32_t>(chunks_.size()));
    kv_lengths_.push_back(static_cast<int32_t>(s.positions.size()));
  }
  return PrefillBatch{chunks_, positions_, chunk_offsets_, kv_lengths_, query_offsets_};
}

std::vector<const void*> PrefillCase::Rebase(std::span<const void* const> ptrs,
                                             const void* device_base) const {
  std::vector<const void*> out;
  out.reserve(ptrs.size());
  for (const void* p : ptrs) {
    const size_t off = static_cast<const char*>(p) -
                       reinterpret_cast<const char*>(pool_.data());
    out.push_back(static_cast<const char*>(device_base) + off);
  }
  return out;
}

}  // namespace strata::kernels::testing
