#include "store/faulty_nvme_tier.h"

#include <cstdio>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace strata::store {
namespace {

absl::Status BadItem(absl::string_view item, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("--nvme_faults item '", item, "': ", why));
}

class FaultyNvmeTierImpl final : public FaultyNvmeTier {
 public:
  FaultyNvmeTierImpl(std::unique_ptr<NvmeTier> inner, const NvmeFaults& faults)
      : inner_(std::move(inner)), faults_(faults), rng_(std::seed_seq{faults.seed}) {}

  void SetFaults(const NvmeFaults& faults) override {
    absl::MutexLock lock(&mu_);
    faults_ = faults;
    written_ = 0;
  }

  NvmeFaultCounts counts() const override {
    absl::MutexLock lock(&mu_);
    return counts_;
  }

  absl::Status Write(const NvmeRecord& rec, std::span<const std::byte> payload) override {
    Slow();
    bool torn = false;
    {
      absl::MutexLock lock(&mu_);
      if (faults_.full_after_bytes != 0 && written_ >= faults_.full_after_bytes) {
        ++counts_.disk_full;
        Note("disk_full", rec.key);
        return absl::ResourceExhaustedError(
            absl::StrCat("injected: no space left on device writing chunk ", rec.key.ShortHex()));
      }
      if (Draw(faults_.disk_full)) {
        ++counts_.disk_full;
        Note("disk_full", rec.key);
        return absl::ResourceExhaustedError(
            absl::StrCat("injected: no space left on device writing chunk ", rec.key.ShortHex()));
      }
      if (Draw(faults_.write_error)) {
        ++counts_.write_errors;
        Note("write_error", rec.key);
        return absl::UnavailableError(
            absl::StrCat("injected: I/O error writing chunk ", rec.key.ShortHex()));
      }
      torn = Draw(faults_.torn);
    }
    absl::Status s = inner_->Write(rec, payload);
    if (!s.ok()) return s;
    absl::MutexLock lock(&mu_);
    written_ += payload.size();
    if (!torn) return s;
    // The device acknowledged the write but kept a damaged copy.
    std::vector<std::byte> damaged(payload.begin(), payload.end());
    damaged[damaged.size() / 2] ^= std::byte{0x5a};
    if (absl::Status c = inner_->CorruptPayloadForTesting(rec.key, damaged); !c.ok()) return c;
    ++counts_.torn;
    Note("torn", rec.key);
    return s;
  }

  absl::Status Read(const ChunkKey& key, std::span<std::byte> out) override {
    Slow();
    {
      absl::MutexLock lock(&mu_);
      if (Draw(faults_.read_error)) {
        ++counts_.read_errors;
        Note("read_error", key);
        return absl::UnavailableError(
            absl::StrCat("injected: I/O error reading chunk ", key.ShortHex()));
      }
    }
    return inner_->Read(key, out);
  }

  absl::Status Delete(const ChunkKey& key) override { return inner_->Delete(key); }
  absl::Status ForEach(absl::FunctionRef<void(const NvmeRecord&)> fn) const override {
    return inner_->ForEach(fn);
  }
  absl::Status PutNamespace(uint32_t id, std::span<const uint8_t> canonical) override {
    return inner_->PutNamespace(id, canonical);
  }
  absl::Status DeleteNamespace(uint32_t id) override { return inner_->DeleteNamespace(id); }
  absl::Status ForEachNamespace(
      absl::FunctionRef<void(uint32_t, std::span<const uint8_t>)> fn) const override {
    return inner_->ForEachNamespace(fn);
  }
  uint64_t used_bytes() const override { return inner_->used_bytes(); }
  size_t chunk_count() const override { return inner_->chunk_count(); }
  uint64_t records_dropped_on_open() const override { return inner_->records_dropped_on_open(); }
  absl::Status Flush() override { return inner_->Flush(); }
  absl::Status CorruptPayloadForTesting(const ChunkKey& key,
                                        std::span<const std::byte> bytes) override {
    return inner_->CorruptPayloadForTesting(key, bytes);
  }

 private:
  // Appends "<kind> <key hex>" to the fault log, if any.
  void Note(const char* kind, const ChunkKey& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (faults_.log_path.empty()) return;
    if (std::FILE* f = std::fopen(faults_.log_path.c_str(), "a")) {
      std::fprintf(f, "%s %s\n", kind, key.ToHex().c_str());
      std::fclose(f);
    }
  }

  bool Draw(double p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return p > 0 && absl::Bernoulli(rng_, p);
  }
  void Slow() const {
    absl::Duration slow;
    {
      absl::MutexLock lock(&mu_);
      slow = faults_.slow;
    }
    if (slow > absl::ZeroDuration()) absl::SleepFor(slow);
  }

  const std::unique_ptr<NvmeTier> inner_;
  mutable absl::Mutex mu_;
  NvmeFaults faults_ ABSL_GUARDED_BY(mu_);
  absl::BitGen rng_ ABSL_GUARDED_BY(mu_);
  uint64_t written_ ABSL_GUARDED_BY(mu_) = 0;
  NvmeFaultCounts counts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<NvmeFaults> NvmeFaults::Parse(absl::string_view spec) {
  NvmeFaults f;
  for (absl::string_view item : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
    const absl::string_view name = kv.first, value = kv.second;
    double* prob = nullptr;
    if (name == "write_error") prob = &f.write_error;
    if (name == "disk_full") prob = &f.disk_full;
    if (name == "torn") prob = &f.torn;
    if (name == "read_error") prob = &f.read_error;
    if (prob != nullptr) {
      if (!absl::SimpleAtod(value, prob) || !(*prob >= 0 && *prob <= 1)) {
        return BadItem(item, "a probability in [0, 1] is expected");
      }
    } else if (name == "full_after") {
      if (!absl::SimpleAtoi(value, &f.full_after_bytes)) return BadItem(item, "bytes expected");
    } else if (name == "slow_ms") {
      int64_t ms = 0;
      if (!absl::SimpleAtoi(value, &ms) || ms < 0) return BadItem(item, "milliseconds expected");
      f.slow = absl::Milliseconds(ms);
    } else if (name == "seed") {
      if (!absl::SimpleAtoi(value, &f.seed)) return BadItem(item, "an integer expected");
    } else if (name == "log") {
      if (value.empty()) return BadItem(item, "a path expected");
      f.log_path = std::string(value);
    } else {
      return BadItem(item, "unknown fault (write_error, disk_full, full_after, torn, read_error, "
                           "slow_ms, seed, log)");
    }
  }
  return f;
}

std::unique_ptr<FaultyNvmeTier> NewFaultyNvmeTier(std::unique_ptr<NvmeTier> inner,
                                                  const NvmeFaults& faults) {
  return std::make_unique<FaultyNvmeTierImpl>(std::move(inner), faults);
}

}  // namespace strata::store
