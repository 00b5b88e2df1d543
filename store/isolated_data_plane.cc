#include "store/isolated_data_plane.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "proto/data_message.h"
#include "store/common/checksum.h"
#include "store/common/status_macros.h"

namespace strata::store {

using proto::DataMessage;

absl::StatusOr<std::string> CallerTenant(const Engine& engine, uint32_t ns,
                                         std::string_view authenticated) {
  ASSIGN_OR_RETURN(NamespaceInfo info, engine.GetNamespace(ns));
  if (!authenticated.empty() && authenticated != info.tenant) {
    return absl::PermissionDeniedError(
        absl::StrCat("namespace ", ns, " belongs to another tenant"));
  }
  return info.tenant;
}

IsolatedDataPlane::~IsolatedDataPlane() {
  absl::MutexLock lock(&clients_mu_);
  clients_.clear();  // endpoints abort what is still in flight
}

transport::MessageSink IsolatedDataPlane::Sink() {
  return [this](std::span<const std::byte> header, size_t bytes) {
    return OnMessage(header, bytes);
  };
}

absl::Status IsolatedDataPlane::Attach(const DataPlaneCaller& caller,
                                       std::string_view worker_address) {
  const std::string& client_id = caller.client_id;
  {
    absl::MutexLock lock(&clients_mu_);
    if (clients_.contains(client_id)) {
      return absl::AlreadyExistsError(
          absl::StrCat("client ", client_id, " has attached its data plane already"));
    }
    if (clients_.size() >= max_clients_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the node serves at most ", max_clients_, " attached clients"));
    }
  }
  ASSIGN_OR_RETURN(std::unique_ptr<transport::Endpoint> ep, ucx_->Connect(worker_address));
  absl::MutexLock lock(&clients_mu_);
  if (!clients_.emplace(client_id, Attachment{caller, std::move(ep)}).second) {
    return absl::AlreadyExistsError(
        absl::StrCat("client ", client_id, " has attached its data plane already"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<transport::Endpoint>> IsolatedDataPlane::EndpointOf(
    const DataPlaneCaller& caller) const {
  absl::MutexLock lock(&clients_mu_);
  auto it = clients_.find(caller.client_id);
  if (it == clients_.end()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "client ", caller.client_id, " has not attached its data plane (AttachDataPlane)"));
  }
  if (!(it->second.owner == caller)) {
    return absl::PermissionDeniedError(
        absl::StrCat("the data plane of client ", caller.client_id,
                     " was attached on another connection or by another tenant"));
  }
  return it->second.endpoint;
}

absl::Status IsolatedDataPlane::CheckAttached(const DataPlaneCaller& caller) const {
  return EndpointOf(caller).status();
}

absl::Status IsolatedDataPlane::SendGet(const DataPlaneCaller& caller, uint64_t transfer_id,
                                        const ReadLease& lease, uint32_t ns, uint32_t layers,
                                        uint64_t layer_bytes) {
  absl::StatusOr<std::shared_ptr<transport::Endpoint>> found = EndpointOf(caller);
  if (!found.ok()) {
    (void)engine_->Release(lease.id);
    return found.status();
  }
  const std::shared_ptr<transport::Endpoint> ep = *std::move(found);
  // Copy out under the lease, verify, and let the lease go: the pool is
  // never exposed to the transport, and no client can hold a slot.
  uint64_t total = 0;
  for (const ReadChunk& c : lease.chunks) total += c.data.size();
  auto staging = std::make_shared<std::vector<std::byte>>(total);
  uint64_t at = 0;
  std::optional<size_t> corrupt;
  for (size_t i = 0; i < lease.chunks.size(); ++i) {
    const ReadChunk& c = lease.chunks[i];
    std::memcpy(staging->data() + at, c.data.data(), c.data.size());
    if (!corrupt && ChunkChecksum(std::span<const std::byte>(staging->data() + at, c.data.size())) !=
                        c.checksum) {
      corrupt = i;
    }
    at += c.data.size();
  }
  (void)engine_->Release(lease.id);
  if (corrupt) {
    const ChunkKey& key = lease.chunks[*corrupt].key;
    absl::Status s = engine_->CheckDramCopy(ns, key);
    return absl::DataLossError(absl::StrCat("get: chunk ", key.ShortHex(), " (key ", *corrupt,
                                            ") is corrupt in DRAM: ", s.message()));
  }
  const uint64_t chunk_bytes = lease.chunks.empty() ? 0 : lease.chunks[0].data.size();
  DataMessage m;
  m.kind = DataMessage::Kind::kGetSlice;
  m.id = transfer_id;
  for (uint32_t l = 0; l < layers; ++l) {
    for (uint32_t c = 0; c < lease.chunks.size(); ++c) {
      m.index = c;
      m.layer = l;
      const std::string header = m.Encode();
      std::span<const std::byte> slice(staging->data() + c * chunk_bytes + l * layer_bytes,
                                       layer_bytes);
      RETURN_IF_ERROR(ep->PostSend(std::as_bytes(std::span(header)), slice,
                                   [staging](absl::Status) {}));
    }
  }
  counters_.bytes_sent += total;
  return absl::OkStatus();
}

void IsolatedDataPlane::ExpectPut(uint64_t lease, const std::string& client_id,
                                  std::vector<uint32_t> expected, uint64_t chunk_bytes,
                                  absl::Time expires) {
  Inbound in;
  in.chunk_bytes = chunk_bytes;
  in.client_id = client_id;
  in.expires = expires;
  for (uint32_t p : expected) in.received[p] = false;
  in.pending = in.received.size();
  const absl::Time now = absl::Now();
  absl::MutexLock lock(&in_mu_);
  // Expired leases are the engine's to reap; their chunks can no longer be
  // awaited. Those still missing chunks are remembered (the last
  // kMaxExpiredPuts), so that a late commit hears that its lease expired.
  absl::erase_if(inbound_, [&](const auto& kv) {
    if (kv.second.expires > now) return false;
    if (kv.second.pending > 0) NoteExpiredLocked(kv.first);
    return true;
  });
  inbound_[lease] = std::move(in);
}

void IsolatedDataPlane::NoteExpiredLocked(uint64_t lease) {
  if (!expired_.insert(lease).second) return;
  expired_order_.push_back(lease);
  if (expired_order_.size() > kMaxExpiredPuts) {
    expired_.erase(expired_order_.front());
    expired_order_.pop_front();
  }
}

absl::Status IsolatedDataPlane::ExpiredError(uint64_t lease, size_t pending) {
  return absl::FailedPreconditionError(absl::StrCat(
      "commit: write lease ", lease, " expired before ",
      pending > 0 ? absl::StrCat(pending, " of its chunks") : std::string("all its chunks"),
      " arrived over the data plane"));
}

absl::Status IsolatedDataPlane::AwaitPut(uint64_t lease, absl::Time deadline) {
  absl::MutexLock lock(&in_mu_);
  while (true) {
    auto it = inbound_.find(lease);
    if (it == inbound_.end()) {
      return expired_.contains(lease) ? ExpiredError(lease, 0) : absl::OkStatus();
    }
    if (it->second.pending == 0) return absl::OkStatus();
    // Nothing more can arrive for an expired lease.
    if (it->second.expires <= absl::Now()) return ExpiredError(lease, it->second.pending);
    if (in_cv_.WaitWithDeadline(&in_mu_, deadline)) {
      it = inbound_.find(lease);
      if (it == inbound_.end() || it->second.pending == 0) return absl::OkStatus();
      return absl::FailedPreconditionError(
          absl::StrCat("commit: ", it->second.pending,
                       " chunks of the lease have not arrived over the data plane"));
    }
  }
}

void IsolatedDataPlane::ForgetPut(uint64_t lease) {
  absl::MutexLock lock(&in_mu_);
  inbound_.erase(lease);
  expired_.erase(lease);  // its place in expired_order_ goes in turn
}

size_t IsolatedDataPlane::awaited_puts() const {
  absl::MutexLock lock(&in_mu_);
  return inbound_.size();
}

transport::MessageTarget IsolatedDataPlane::OnMessage(std::span<const std::byte> header,
                                                      size_t bytes) {
  std::optional<DataMessage> m = DataMessage::Decode(header);
  absl::MutexLock lock(&in_mu_);
  auto it = m.has_value() && m->kind == DataMessage::Kind::kPutChunk ? inbound_.find(m->id)
                                                                     : inbound_.end();
  if (it == inbound_.end() || it->second.client_id != m->client_id) {
    ++counters_.messages_rejected;
    return {};
  }
  auto slot = it->second.received.find(m->index);
  if (slot == it->second.received.end() || slot->second || bytes != it->second.chunk_bytes) {
    ++counters_.messages_rejected;
    return {};
  }
  // Received into a buffer of the node's own; copied into the slot only if
  // the lease is still open then (WriteSlot checks it under the engine lock).
  auto buffer = std::make_shared<std::vector<std::byte>>(bytes);
  const uint64_t lease = m->id;
  const uint32_t index = m->index;
  transport::MessageTarget target;
  target.dest = std::span<std::byte>(*buffer);
  target.done = [this, buffer, lease, index](absl::Status status) {
    if (status.ok()) status = engine_->WriteSlot(lease, index, *buffer);
    absl::MutexLock lock(&in_mu_);
    auto in = inbound_.find(lease);
    if (!status.ok() || in == inbound_.end()) {
      ++counters_.messages_rejected;
      return;
    }
    bool& got = in->second.received[index];
    if (!got) {
      got = true;
      --in->second.pending;
      counters_.bytes_received += buffer->size();
    }
    in_cv_.SignalAll();
  };
  return target;
}

}  // namespace strata::store
