#include "client/runtime/sequence_tree.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace strata::runtime {

absl::StatusOr<std::unique_ptr<SequenceTree>> SequenceTree::Create(const Options& options,
                                                                   ChunkPool* pool) {
  if (pool == nullptr) return absl::InvalidArgumentError("sequence tree without a pool");
  const uint64_t slice = options.layout.SliceBytes();
  if (options.layout.tokens_per_chunk <= 0 || slice == 0 || options.num_layers == 0) {
    return absl::InvalidArgumentError("empty layout or no layers");
  }
  if (pool->layer_bytes() != slice || pool->num_layers() != options.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pool of ", pool->num_layers(), " layers of ", pool->layer_bytes(),
        " bytes does not match the layout's ", options.num_layers, " layers of ", slice, " bytes"));
  }
  return std::unique_ptr<SequenceTree>(new SequenceTree(options, pool));
}

SequenceTree::~SequenceTree() {
  for (auto& [id, seq] : sequences_) ReleaseEntries(seq.entries);
}

void SequenceTree::ReleaseEntries(std::span<const Entry> entries) {
  for (const Entry& e : entries) {
    (void)pool_->Release(e.slot);  // held by this tree: cannot fail
    if (!e.keyed) continue;
    auto it = users_.find(e.key);
    if (--it->second == 0) users_.erase(it);
  }
}

void SequenceTree::Rebase(Sequence& s) const {
  for (size_t i = 0; i < s.entries.size(); ++i) {
    s.entries[i].position = static_cast<int32_t>(i) * options_.layout.tokens_per_chunk;
  }
}

int SequenceTree::LengthOf(const Sequence& s) const {
  return s.full_chunks() * options_.layout.tokens_per_chunk + s.partial_tokens;
}

absl::Status SequenceTree::AddSequence(SequenceId id, std::span<const ChunkKey> keys,
                                       int partial_tokens) {
  if (sequences_.contains(id)) return absl::AlreadyExistsError(absl::StrCat("sequence ", id, " exists"));
  if (partial_tokens < 0 || partial_tokens >= options_.layout.tokens_per_chunk) {
    return absl::InvalidArgumentError(absl::StrCat("partial_tokens ", partial_tokens,
                                                   " not in [0, ", options_.layout.tokens_per_chunk, ")"));
  }
  if (keys.empty() && partial_tokens == 0) {
    return absl::InvalidArgumentError(absl::StrCat("sequence ", id, " has no tokens"));
  }
  Sequence seq;
  seq.partial_tokens = partial_tokens;
  seq.entries.reserve(keys.size() + 1);
  for (const ChunkKey& key : keys) {
    auto slot = pool_->Acquire(key);
    if (!slot.ok()) {
      for (const Entry& e : seq.entries) (void)pool_->Release(e.slot);
      return slot.status();
    }
    seq.entries.push_back({*slot, 0, true, key});
  }
  if (partial_tokens > 0) {
    auto slot = pool_->AllocatePrivate();
    if (!slot.ok()) {
      for (const Entry& e : seq.entries) (void)pool_->Release(e.slot);
      return slot.status();
    }
    seq.entries.push_back({*slot, 0, false, ChunkKey{}});
  }
  for (const Entry& e : seq.entries) {
    if (e.keyed) ++users_[e.key];
  }
  Rebase(seq);
  sequences_.emplace(id, std::move(seq));
  return absl::OkStatus();
}

absl::Status SequenceTree::RemoveSequence(SequenceId id) {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) return absl::NotFoundError(absl::StrCat("no sequence ", id));
  ReleaseEntries(it->second.entries);
  sequences_.erase(it);
  return absl::OkStatus();
}

absl::Status SequenceTree::Truncate(SequenceId id, int keep_chunks, int drop_chunks) {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) return absl::NotFoundError(absl::StrCat("no sequence ", id));
  Sequence& s = it->second;
  if (keep_chunks < 0 || drop_chunks <= 0 || keep_chunks + drop_chunks > s.full_chunks()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot drop ", drop_chunks, " chunks after ",
                                                   keep_chunks, " of ", s.full_chunks(), " full chunks"));
  }
  auto first = s.entries.begin() + keep_chunks;
  ReleaseEntries(std::span<const Entry>(&*first, drop_chunks));
  s.entries.erase(first, first + drop_chunks);
  Rebase(s);
  return absl::OkStatus();
}

absl::StatusOr<SlotId> SequenceTree::PartialSlot(SequenceId id) const {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) return absl::NotFoundError(absl::StrCat("no sequence ", id));
  if (it->second.partial_tokens == 0) return absl::NotFoundError(absl::StrCat("sequence ", id, " has no partial chunk"));
  return it->second.entries.back().slot;
}

absl::StatusOr<int> SequenceTree::Length(SequenceId id) const {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) return absl::NotFoundError(absl::StrCat("no sequence ", id));
  return LengthOf(it->second);
}

int SequenceTree::Users(const ChunkKey& key) const {
  auto it = users_.find(key);
  return it == users_.end() ? 0 : it->second;
}

const void* SequenceTree::Slice(const Entry& e, uint32_t layer) const {
  // Slot and layer were checked (Resolve): cannot fail.
  return *pool_->LayerSlice(e.slot, layer);
}

absl::StatusOr<std::vector<const SequenceTree::Sequence*>> SequenceTree::Resolve(
    std::span<const SequenceId> ids, uint32_t layer) const {
  if (ids.empty()) return absl::InvalidArgumentError("empty batch");
  if (layer >= options_.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("layer ", layer, " out of range [0, ", options_.num_layers, ")"));
  }
  absl::flat_hash_set<SequenceId> seen;
  std::vector<const Sequence*> out;
  out.reserve(ids.size());
  for (SequenceId id : ids) {
    if (!seen.insert(id).second) return absl::InvalidArgumentError(absl::StrCat("sequence ", id, " twice in the batch"));
    auto it = sequences_.find(id);
    if (it == sequences_.end()) return absl::NotFoundError(absl::StrCat("no sequence ", id));
    out.push_back(&it->second);
  }
  return out;
}

namespace {

// Same slot at the same depth (and position) in two sequences' entries.
template <typename E>
bool SameChunk(const E& a, const E& b) {
  return a.keyed && b.keyed && a.slot == b.slot && a.position == b.position;
}

}  // namespace

absl::StatusOr<PagedTables> SequenceTree::BuildPaged(std::span<const SequenceId> ids,
                                                     uint32_t layer) const {
  auto seqs = Resolve(ids, layer);
  if (!seqs.ok()) return seqs.status();
  PagedTables t;
  t.chunk_offsets.push_back(0);
  for (size_t b = 0; b < seqs->size(); ++b) {
    const Sequence& s = *(*seqs)[b];
    for (const Entry& e : s.entries) t.chunks.push_back(Slice(e, layer));
    t.chunk_offsets.push_back(static_cast<int32_t>(t.chunks.size()));
    t.lengths.push_back(LengthOf(s));
    // Leading chunks some other sequence of the batch has at the same depth.
    int shared = 0;
    for (size_t d = 0; d < s.entries.size(); ++d) {
      bool any = false;
      for (size_t o = 0; o < seqs->size() && !any; ++o) {
        const Sequence& other = *(*seqs)[o];
        any = o != b && d < other.entries.size() && SameChunk(s.entries[d], other.entries[d]);
      }
      if (!any) break;
      ++shared;
    }
    t.shared_chunks.push_back(shared);
  }
  return t;
}

absl::StatusOr<RelayTables> SequenceTree::BuildRelay(std::span<const SequenceId> ids,
                                                     uint32_t layer) const {
  auto seqs = Resolve(ids, layer);
  if (!seqs.ok()) return seqs.status();
  // The longest run of leading full chunks common to every sequence.
  const Sequence& first = *seqs->front();
  size_t common = first.full_chunks();
  for (const Sequence* s : *seqs) {
    size_t d = 0;
    while (d < common && d < static_cast<size_t>(s->full_chunks()) &&
           SameChunk(first.entries[d], s->entries[d])) {
      ++d;
    }
    common = d;
  }
  RelayTables r;
  for (size_t d = 0; d < common; ++d) r.prefix_chunks.push_back(Slice(first.entries[d], layer));
  r.prefix_length = static_cast<int>(common) * options_.layout.tokens_per_chunk;
  r.context.chunk_offsets.push_back(0);
  for (const Sequence* s : *seqs) {
    for (size_t d = common; d < s->entries.size(); ++d) r.context.chunks.push_back(Slice(s->entries[d], layer));
    r.context.chunk_offsets.push_back(static_cast<int32_t>(r.context.chunks.size()));
    r.context.lengths.push_back(LengthOf(*s) - r.prefix_length);
    r.context.shared_chunks.push_back(0);
  }
  return r;
}

absl::StatusOr<PrefillTables> SequenceTree::BuildPrefill(std::span<const PrefillRequest> requests,
                                                         uint32_t layer) const {
  std::vector<SequenceId> ids;
  ids.reserve(requests.size());
  for (const PrefillRequest& r : requests) ids.push_back(r.id);
  auto seqs = Resolve(ids, layer);
  if (!seqs.ok()) return seqs.status();
  PrefillTables t;
  t.chunk_offsets.push_back(0);
  t.query_offsets.push_back(0);
  for (size_t b = 0; b < seqs->size(); ++b) {
    const Sequence& s = *(*seqs)[b];
    const int length = LengthOf(s);
    if (requests[b].num_new < 0 || requests[b].num_new > length) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", requests[b].id, ": ", requests[b].num_new,
                                                     " new tokens of ", length));
    }
    for (const Entry& e : s.entries) {
      t.chunks.push_back(Slice(e, layer));
      t.positions.push_back(e.position);
    }
    t.chunk_offsets.push_back(static_cast<int32_t>(t.chunks.size()));
    t.kv_lengths.push_back(length);
    t.query_offsets.push_back(t.query_offsets.back() + requests[b].num_new);
  }
  return t;
}

}  // namespace strata::runtime
