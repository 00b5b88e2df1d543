#include "client/runtime/chunk_pool.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace strata::runtime {

absl::StatusOr<std::unique_ptr<ChunkPool>> ChunkPool::Create(const Options& options,
                                                             std::unique_ptr<SlotMemory> memory) {
  if (memory == nullptr) return absl::InvalidArgumentError("chunk pool without memory");
  if (options.chunk_bytes == 0) return absl::InvalidArgumentError("chunk_bytes must be > 0");
  const uint64_t layer_bytes = options.layer_bytes == 0 ? options.chunk_bytes : options.layer_bytes;
  if (options.chunk_bytes % layer_bytes != 0) {
    return absl::InvalidArgumentError(absl::StrCat("chunk_bytes ", options.chunk_bytes,
                                                   " is not a multiple of layer_bytes ", layer_bytes));
  }
  if (memory->bytes() < options.chunk_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("slot memory of ", memory->bytes(),
                                                   " bytes holds no chunk of ", options.chunk_bytes));
  }
  Options o = options;
  o.layer_bytes = layer_bytes;
  if (o.clock == nullptr) o.clock = Clock::Real();
  auto policy = eviction::CreatePolicy(o.policy, o.clock);
  if (!policy.ok()) return policy.status();
  return std::unique_ptr<ChunkPool>(new ChunkPool(o, std::move(memory), *std::move(policy)));
}

ChunkPool::ChunkPool(const Options& options, std::unique_ptr<SlotMemory> memory,
                     std::unique_ptr<eviction::EvictionPolicy> policy)
    : memory_(std::move(memory)),
      chunk_bytes_(options.chunk_bytes),
      layer_bytes_(options.layer_bytes),
      num_slots_(memory_->bytes() / options.chunk_bytes),
      clock_(options.clock),
      policy_(std::move(policy)),
      slots_(num_slots_) {
  free_.reserve(num_slots_);
  // Lowest id last, so slots are handed out in ascending order (consecutive
  // allocations in an empty pool are contiguous).
  for (size_t i = num_slots_; i > 0; --i) free_.push_back(static_cast<SlotId>(i - 1));
}

ChunkPool::~ChunkPool() = default;

absl::Status ChunkPool::CheckSlot(SlotId slot) const {
  if (slot < 0 || static_cast<size_t>(slot) >= num_slots_) {
    return absl::InvalidArgumentError(
        absl::StrCat("slot ", slot, " out of range [0, ", num_slots_, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<SlotId> ChunkPool::Find(const ChunkKey& key) const {
  absl::MutexLock lock(&mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return absl::NotFoundError(absl::StrCat("chunk ", key.ShortHex(), " not in the pool"));
  return it->second;
}

absl::StatusOr<SlotState> ChunkPool::State(SlotId slot) const {
  if (absl::Status s = CheckSlot(slot); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  return slots_[slot].state;
}

eviction::EntryId ChunkPool::EntryFor(const ChunkKey& key) {
  auto [it, inserted] = entry_ids_.try_emplace(key, entry_ids_.size());
  return it->second;
}

absl::StatusOr<SlotId> ChunkPool::TakeFreeSlot() {
  if (free_.empty()) {
    const eviction::EntryId victim = policy_->PickVictim([this](eviction::EntryId id) {
      auto it = entry_slots_.find(id);
      if (it == entry_slots_.end()) return false;
      const Slot& s = slots_[it->second];
      return s.state == SlotState::kReady && s.holds == 0 && s.pins == 0;
    });
    if (victim == eviction::kNoEntry) {
      size_t loading = 0, held = 0, pinned = 0;
      for (const Slot& s : slots_) {
        loading += s.state == SlotState::kLoading;
        held += s.holds > 0;
        pinned += s.pins > 0;
      }
      return absl::ResourceExhaustedError(absl::StrCat(
          "chunk pool full: ", num_slots_, " slots of ", chunk_bytes_, " bytes, ", loading,
          " loading, ", held, " held by sequences, ", pinned, " pinned by kernels; none evictable"));
    }
    const SlotId slot = entry_slots_.at(victim);
    policy_->OnRemove(victim);
    ++evictions_;
    FreeSlot(slot);
  }
  const SlotId slot = free_.back();
  free_.pop_back();
  return slot;
}

void ChunkPool::FreeSlot(SlotId slot) {
  Slot& s = slots_[slot];
  if (!s.is_private) {
    index_.erase(s.key);
    entry_slots_.erase(s.entry);
  }
  s = Slot{};
  free_.push_back(slot);
}

absl::StatusOr<SlotId> ChunkPool::Allocate(const ChunkKey& key, std::optional<ChunkKey> parent) {
  absl::MutexLock lock(&mu_);
  if (index_.contains(key)) {
    return absl::AlreadyExistsError(absl::StrCat("chunk ", key.ShortHex(), " is already in the pool"));
  }
  auto slot = TakeFreeSlot();
  if (!slot.ok()) return slot.status();
  slots_[*slot].state = SlotState::kLoading;
  IndexKey(*slot, key, parent);
  return *slot;
}

void ChunkPool::IndexKey(SlotId slot, const ChunkKey& key, std::optional<ChunkKey> parent) {
  Slot& s = slots_[slot];
  s.key = key;
  s.entry = EntryFor(key);
  // The parent's id is fixed now so that the policy sees it when the chunk
  // becomes ready.
  parent_of_[s.entry] = parent.has_value() ? EntryFor(*parent) : eviction::kNoEntry;
  index_[key] = slot;
}

absl::Status ChunkPool::MarkReady(SlotId slot, bool hold) {
  if (absl::Status st = CheckSlot(slot); !st.ok()) return st;
  absl::MutexLock lock(&mu_);
  Slot& s = slots_[slot];
  if (s.state != SlotState::kLoading) {
    return absl::FailedPreconditionError(absl::StrCat("slot ", slot, " is not loading"));
  }
  s.state = SlotState::kReady;
  entry_slots_[s.entry] = slot;
  auto p = parent_of_.find(s.entry);
  policy_->OnInsert(s.entry, p == parent_of_.end() ? eviction::kNoEntry : p->second);
  if (hold) ++s.holds;
  return absl::OkStatus();
}

absl::Status ChunkPool::FailLoad(SlotId slot) {
  if (absl::Status st = CheckSlot(slot); !st.ok()) return st;
  absl::MutexLock lock(&mu_);
  if (slots_[slot].state != SlotState::kLoading) {
    return absl::FailedPreconditionError(absl::StrCat("slot ", slot, " is not loading"));
  }
  FreeSlot(slot);
  return absl::OkStatus();
}

absl::StatusOr<SlotId> ChunkPool::AllocatePrivate() {
  absl::MutexLock lock(&mu_);
  auto slot = TakeFreeSlot();
  if (!slot.ok()) return slot.status();
  Slot& s = slots_[*slot];
  s.state = SlotState::kReady;
  s.is_private = true;
  s.holds = 1;
  return *slot;
}

absl::Status ChunkPool::Publish(SlotId slot, const ChunkKey& key, std::optional<ChunkKey> parent) {
  if (absl::Status st = CheckSlot(slot); !st.ok()) return st;
  absl::MutexLock lock(&mu_);
  Slot& s = slots_[slot];
  if (!s.is_private || s.state != SlotState::kReady) {
    return absl::FailedPreconditionError(absl::StrCat("slot ", slot, " is not a private slot"));
  }
  if (index_.contains(key)) {
    return absl::AlreadyExistsError(absl::StrCat("chunk ", key.ShortHex(), " is already in the pool"));
  }
  s.is_private = false;
  IndexKey(slot, key, parent);
  entry_slots_[s.entry] = slot;
  policy_->OnInsert(s.entry, parent_of_[s.entry]);
  return absl::OkStatus();
}

absl::Status ChunkPool::Discard(SlotId slot) {
  if (absl::Status st = CheckSlot(slot); !st.ok()) return st;
  absl::MutexLock lock(&mu_);
  Slot& s = slots_[slot];
  if (s.is_private || s.state != SlotState::kReady || s.holds > 0 || s.pins > 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("slot ", slot, " is not a ready chunk that nobody holds"));
  }
  policy_->OnRemove(s.entry);
  FreeSlot(slot);
  return absl::OkStatus();
}

absl::Status ChunkPool::AcquireLocked(SlotId slot) {
  Slot& s = slots_[slot];
  if (s.state != SlotState::kReady) {
    return absl::FailedPreconditionError(absl::StrCat(
        "slot ", slot, s.state == SlotState::kLoading ? " is still loading" : " is free"));
  }
  ++s.holds;
  if (!s.is_private) policy_->OnAccess(s.entry);
  return absl::OkStatus();
}

absl::StatusOr<SlotId> ChunkPool::Acquire(const ChunkKey& key) {
  absl::MutexLock lock(&mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return absl::NotFoundError(absl::StrCat("chunk ", key.ShortHex(), " not in the pool"));
  if (absl::Status s = AcquireLocked(it->second); !s.ok()) return s;
  return it->second;
}

absl::Status ChunkPool::Acquire(SlotId slot) {
  if (absl::Status st = CheckSlot(slot); !st.ok()) return st;
  absl::MutexLock lock(&mu_);
  return AcquireLocked(slot);
}

absl::Status ChunkPool::Release(SlotId slot) {
  if (absl::Status st = CheckSlot(slot); !st.ok()) return st;
  absl::MutexLock lock(&mu_);
  Slot& s = slots_[slot];
  if (s.holds == 0) return absl::FailedPreconditionError(absl::StrCat("slot ", slot, " is not held"));
  if (--s.holds == 0 && s.is_private && s.pins == 0) FreeSlot(slot);
  return absl::OkStatus();
}

absl::Status ChunkPool::Pin(SlotId slot) {
  if (absl::Status st = CheckSlot(slot); !st.ok()) return st;
  absl::MutexLock lock(&mu_);
  Slot& s = slots_[slot];
  if (s.state != SlotState::kReady) {
    return absl::FailedPreconditionError(absl::StrCat("slot ", slot, " is not ready"));
  }
  ++s.pins;
  return absl::OkStatus();
}

absl::Status ChunkPool::Unpin(SlotId slot) {
  if (absl::Status st = CheckSlot(slot); !st.ok()) return st;
  absl::MutexLock lock(&mu_);
  Slot& s = slots_[slot];
  if (s.pins == 0) return absl::FailedPreconditionError(absl::StrCat("slot ", slot, " is not pinned"));
  if (--s.pins == 0 && s.is_private && s.holds == 0) FreeSlot(slot);
  return absl::OkStatus();
}

absl::StatusOr<int> ChunkPool::HoldCount(SlotId slot) const {
  if (absl::Status st = CheckSlot(slot); !st.ok()) return st;
  absl::MutexLock lock(&mu_);
  return slots_[slot].holds;
}

absl::StatusOr<int> ChunkPool::PinCount(SlotId slot) const {
  if (absl::Status st = CheckSlot(slot); !st.ok()) return st;
  absl::MutexLock lock(&mu_);
  return slots_[slot].pins;
}

absl::StatusOr<std::byte*> ChunkPool::SlotBase(SlotId slot) const {
  if (absl::Status st = CheckSlot(slot); !st.ok()) return st;
  return memory_->base() + static_cast<size_t>(slot) * chunk_bytes_;
}

absl::StatusOr<std::byte*> ChunkPool::LayerSlice(SlotId slot, uint32_t layer) const {
  if (layer >= num_layers()) {
    return absl::InvalidArgumentError(absl::StrCat("layer ", layer, " out of range [0, ", num_layers(), ")"));
  }
  auto base = SlotBase(slot);
  if (!base.ok()) return base.status();
  return *base + static_cast<size_t>(layer) * layer_bytes_;
}

absl::StatusOr<std::span<std::byte>> ChunkPool::HostBytes(SlotId slot) const {
  if (!memory_->host_accessible()) {
    return absl::FailedPreconditionError("the chunk pool's memory is not host accessible");
  }
  auto base = SlotBase(slot);
  if (!base.ok()) return base.status();
  return std::span<std::byte>(*base, chunk_bytes_);
}

std::vector<eviction::HintedEntry> ChunkPool::ToEntries(std::span<const KeyHint> hints) {
  std::vector<eviction::HintedEntry> out;
  out.reserve(hints.size());
  for (const KeyHint& h : hints) out.push_back({EntryFor(h.key), h.needed_at});
  return out;
}

void ChunkPool::OnHints(std::span<const KeyHint> hints) {
  absl::MutexLock lock(&mu_);
  policy_->OnHints(ToEntries(hints));
}

void ChunkPool::BeginHints() {
  absl::MutexLock lock(&mu_);
  policy_->BeginHints();
}

void ChunkPool::AddHints(std::span<const KeyHint> hints) {
  absl::MutexLock lock(&mu_);
  policy_->AddHints(ToEntries(hints));
}

bool ChunkPool::EndHints(size_t budget) {
  absl::MutexLock lock(&mu_);
  return policy_->EndHints(budget);
}

bool ChunkPool::full() const {
  absl::MutexLock lock(&mu_);
  return free_.empty();
}

std::string_view ChunkPool::policy_name() const {
  absl::MutexLock lock(&mu_);
  return policy_->name();
}

ChunkPoolStats ChunkPool::Stats() const {
  absl::MutexLock lock(&mu_);
  ChunkPoolStats st;
  st.slots = num_slots_;
  st.evictions = evictions_;
  for (const Slot& s : slots_) {
    st.free += s.state == SlotState::kFree;
    st.loading += s.state == SlotState::kLoading;
    st.ready += s.state == SlotState::kReady && !s.is_private;
    st.private_slots += s.is_private;
    st.held += s.holds > 0;
    st.pinned += s.pins > 0;
  }
  return st;
}

}  // namespace strata::runtime
