#include "transport/ucx_transport.h"

#include <sched.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <ucp/api/ucp.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "store/common/status_macros.h"
#include "transport/envelope.h"
#include "transport/net_devices.h"
#include "transport/tcp_settings.h"
#include "transport/ucs_status.h"

namespace strata::transport {
namespace {

class EndpointImpl;
struct EpState;

// One posted operation. A get is one UCX request; a put is a put request
// followed by an endpoint flush (so that completion means the bytes reached
// the remote memory), so an operation completes after `phases` callbacks.
// The connection handshake and the endpoint's close are operations too, so
// that everything an endpoint waits for is accounted in one place.
struct Op {
  enum class Kind { kRma, kHandshake, kClose, kSend };

  std::shared_ptr<EpState> ep;
  Endpoint::DoneCallback done;
  int phases = 1;
  ucs_status_t first_error = UCS_OK;
  Kind kind = Kind::kRma;
  // Set (under WorkerCore::mu) when the endpoint stopped waiting for UCX to
  // complete this operation (see EndpointImpl::CloseAndDrain): its caller was
  // told it failed through a stand-in, and UCX's completion, should it ever
  // come, only frees it.
  bool abandoned = false;
  // kSend: the message header, kept until UCX completes the send.
  std::string header;
};

// How the progress thread waits for UCX when it has nothing to progress.
enum class Wakeup {
  // Armed worker event fd (ucp_worker_arm), epoll with a long timeout.
  kEventFd,
  // UCX cannot arm this worker (ucp_worker_get_efd or ucp_worker_arm
  // unsupported by one of its transports): epoll on the wake fd alone with a
  // short timeout, i.e. a bounded poll.
  kPoll,
};

// The UCX context and worker, shared by the UcxContext and every object it
// creates. Every call into UCX holds `mu` (the worker runs in
// UCS_THREAD_MODE_SERIALIZED). UCX callbacks run inside ucp_worker_progress,
// i.e. with `mu` held; they only queue completed operations, which the
// progressing thread then finishes (user callbacks first) after releasing
// `mu`, so user code never runs under an internal lock.
//
// Lock order: WorkerCore::mu before EpState::mu.
class WorkerCore {
 public:
  WorkerCore() = default;
  WorkerCore(const WorkerCore&) = delete;
  WorkerCore& operator=(const WorkerCore&) = delete;
  ~WorkerCore() {
    StopProgressThread();
    if (worker != nullptr) ucp_worker_destroy(worker);
    if (context != nullptr) ucp_cleanup(context);
    if (epoll_fd >= 0) close(epoll_fd);
    if (wake_fd >= 0) close(wake_fd);
  }

  // Constant after construction.
  ucp_context_h context = nullptr;
  ucp_worker_h worker = nullptr;
  int wake_fd = -1;    // eventfd: a post or a stop request wakes the thread
  int epoll_fd = -1;   // wake_fd + the worker's event fd (kEventFd only)
  int worker_fd = -1;  // the worker's event fd, owned by UCX
  // Constant after construction, but for a fall back to kPoll by the
  // progress thread, the only reader once it runs.
  Wakeup wakeup = Wakeup::kPoll;

  absl::Mutex mu;
  // Operations (handshakes and endpoint closes included) posted and not yet
  // finished, over every endpoint: while non-zero the progress thread polls
  // for a while after each event before it sleeps, and sleeps briefly.
  std::atomic<int64_t> busy{0};

  // Called from UCX callbacks (mu held).
  void QueueFinished(Op* op) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    finished_.push_back(op);
  }
  // Queues a user callback of an incoming message, run after `mu` is
  // released (the message counted in `busy` until then).
  void QueueCall(std::function<void()> call) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    calls_.push_back(std::move(call));
  }

  // Where incoming messages go (UcxOptions::on_message); constant after
  // construction.
  MessageSink sink;

  void NoteBusy() {
    if (busy.fetch_add(1, std::memory_order_acq_rel) == 0) Wake();
  }

  void Wake() {
    if (wake_fd < 0) return;
    uint64_t one = 1;
    ssize_t ignored = write(wake_fd, &one, sizeof(one));
    (void)ignored;
  }

  // One round of progress followed by finishing completed operations.
  // Returns the number of UCX events progressed plus operations finished.
  unsigned ProgressOnce() ABSL_LOCKS_EXCLUDED(mu);

  void StartProgressThread() {
    progress_thread_ = std::thread([this] { ProgressLoop(); });
  }
  void StopProgressThread() {
    if (!progress_thread_.joinable()) return;
    stop_.store(true, std::memory_order_release);
    Wake();
    progress_thread_.join();
  }
  bool has_progress_thread() const { return progress_thread_.joinable(); }

 private:
  void ProgressLoop();
  // Blocks until the worker or the wake fd has an event, or `timeout_ms`.
  void Sleep(int timeout_ms);

  std::vector<Op*> finished_ ABSL_GUARDED_BY(mu);
  std::vector<std::function<void()>> calls_ ABSL_GUARDED_BY(mu);
  std::atomic<bool> stop_{false};

 public:
  // Connection handshakes waiting for the peer's pong, by token.
  absl::flat_hash_map<uint64_t, Op*> pings ABSL_GUARDED_BY(mu);
  uint64_t next_ping_token ABSL_GUARDED_BY(mu) = 1;

 private:
  std::thread progress_thread_;
};

// State of one endpoint shared with its in-flight operations and UCX's
// error callback.
struct EpState {
  explicit EpState(std::shared_ptr<WorkerCore> c) : core(std::move(c)) {}

  const std::shared_ptr<WorkerCore> core;

  // Guarded by core->mu: the UCX endpoint (null once closed or aborted).
  ucp_ep_h ep = nullptr;
  // Guarded by core->mu: operations UCX has not completed yet (not
  // abandoned ones).
  absl::flat_hash_set<Op*> ops;

  absl::Mutex mu;
  int64_t in_flight ABSL_GUARDED_BY(mu) = 0;  // includes a pending close
  absl::Status batch_error ABSL_GUARDED_BY(mu);
  // Sticky: once set, the endpoint is unusable.
  absl::Status failure ABSL_GUARDED_BY(mu);

  void RecordFailure(absl::Status status) {
    absl::MutexLock lock(&mu);
    if (failure.ok()) failure = std::move(status);
  }
};

unsigned WorkerCore::ProgressOnce() {
  unsigned events = 0;
  std::vector<Op*> finished;
  std::vector<std::function<void()>> calls;
  {
    absl::MutexLock lock(&mu);
    while (unsigned n = ucp_worker_progress(worker)) events += n;
    finished.swap(finished_);
    calls.swap(calls_);
  }
  for (auto& call : calls) {
    call();
    busy.fetch_sub(1, std::memory_order_acq_rel);
  }
  events += static_cast<unsigned>(calls.size());
  for (Op* op : finished) {
    if (op->abandoned) {  // its stand-in already finished it
      delete op;
      continue;
    }
    absl::Status status = FromUcsStatus(op->first_error, "RMA operation");
    if (op->done) op->done(status);
    {
      absl::MutexLock lock(&op->ep->mu);
      // Closing is best effort: a failed close still releases the endpoint.
      if (op->kind != Op::Kind::kClose && !status.ok() && op->ep->batch_error.ok()) {
        op->ep->batch_error = status;
      }
      --op->ep->in_flight;
    }
    busy.fetch_sub(1, std::memory_order_acq_rel);
    delete op;
  }
  return events + static_cast<unsigned>(finished.size());
}

void WorkerCore::Sleep(int timeout_ms) {
  epoll_event events[2];
  const int n = epoll_wait(epoll_fd, events, 2, timeout_ms);
  for (int i = 0; i < n; ++i) {
    if (events[i].data.fd == wake_fd) {
      uint64_t count;
      ssize_t ignored = read(wake_fd, &count, sizeof(count));
      (void)ignored;
    }
  }
}

void WorkerCore::ProgressLoop() {
  // After the last event, keep polling (yielding the core between rounds)
  // this long before sleeping. While operations of this context are in
  // flight this is the busy-poll that keeps transfer latency low; it ends
  // when a transfer stalls (a dead peer), so that waiting on a peer that
  // will never answer does not spin a core. When idle, a short linger
  // covers multi-step UCX protocols and bursts of requests to a node.
  constexpr absl::Duration kBusyLinger = absl::Milliseconds(50);
  constexpr absl::Duration kIdleLinger = absl::Microseconds(500);
  // Sleeps with the worker's event fd armed end at the first UCX event, or
  // at these bounds. UCX also has work that signals no event (sends waiting
  // for room in a peer's shared-memory queue, keepalive, timers): in flight
  // and for kRecent after the last event, sleep at most kShortSleepMs so
  // that such work moves on; after that, a node is idle and sleeps up to
  // kIdleSleepMs (about UCX's keepalive interval).
  constexpr absl::Duration kRecent = absl::Seconds(1);
  constexpr int kShortSleepMs = 1;
  constexpr int kIdleSleepMs = 1000;
  // Without a usable event fd (Wakeup::kPoll): a bounded poll, coarser when
  // idle; an idle node then notices a request up to kPollIdleSleepMs late.
  constexpr int kPollIdleSleepMs = 5;
  absl::Time last_event = absl::Now();
  while (!stop_.load(std::memory_order_acquire)) {
    if (ProgressOnce() > 0) {
      last_event = absl::Now();
      continue;
    }
    const bool in_flight = busy.load(std::memory_order_acquire) > 0;
    const absl::Duration quiet = absl::Now() - last_event;
    if (quiet < (in_flight ? kBusyLinger : kIdleLinger)) {
      sched_yield();
      continue;
    }
    const bool short_sleep = in_flight || quiet < kRecent;
    if (wakeup == Wakeup::kEventFd) {
      ucs_status_t armed;
      {
        absl::MutexLock lock(&mu);
        armed = ucp_worker_arm(worker);
      }
      if (armed == UCS_ERR_BUSY) continue;  // events arrived meanwhile
      if (armed != UCS_OK) {
        // Not expected after the check in UcxContext::Create; poll from now.
        wakeup = Wakeup::kPoll;
        epoll_ctl(epoll_fd, EPOLL_CTL_DEL, worker_fd, nullptr);
        continue;
      }
      Sleep(short_sleep ? kShortSleepMs : kIdleSleepMs);
    } else {
      Sleep(short_sleep ? kShortSleepMs : kPollIdleSleepMs);
    }
  }
}

// --- UCX callbacks (run inside ucp_worker_progress, core->mu held) ---------

void OnPhaseDone(Op* op, ucs_status_t status) {
  if (status != UCS_OK && op->first_error == UCS_OK) op->first_error = status;
  if (--op->phases > 0) return;
  WorkerCore& core = *op->ep->core;
  core.mu.AssertHeld();
  if (!op->abandoned) op->ep->ops.erase(op);
  core.QueueFinished(op);  // an abandoned op is freed there
}

void OnRequestDone(void* request, ucs_status_t status, void* user_data) {
  OnPhaseDone(static_cast<Op*>(user_data), status);
  ucp_request_free(request);
}

void OnEndpointError(void* arg, ucp_ep_h /*ep*/, ucs_status_t status) {
  auto* state = static_cast<EpState*>(arg);
  absl::Status error = FromUcsStatus(status, "peer endpoint failed");
  if (error.code() != absl::StatusCode::kUnavailable) {
    error = absl::UnavailableError(error.message());
  }
  state->RecordFailure(std::move(error));
  // A handshake in progress will get no pong.
  WorkerCore& core = *state->core;
  core.mu.AssertHeld();
  for (auto it = core.pings.begin(); it != core.pings.end();) {
    if (it->second->ep.get() == state) {
      OnPhaseDone(it->second, status);
      core.pings.erase(it++);
    } else {
      ++it;
    }
  }
}

// Connection handshake over active messages: the client pings, the peer
// pongs over its own endpoint back to the client. The pong travels the same
// way as UCX's wire-up reply, so once it arrived both directions are fully
// connected. (UCX 1.13 aborts a process whose wire-up reply is still queued
// when the other side goes away; without the pong a client that connects and
// leaves at once can trip that in its peer.)
constexpr unsigned kPingId = 0x5354;  // "ST"
constexpr unsigned kPongId = 0x5355;

void FreeToken(void* request, ucs_status_t /*status*/, void* user_data) {
  delete static_cast<uint64_t*>(user_data);
  if (request != nullptr) ucp_request_free(request);
}

// Sends `token` as an active message; the payload lives until completion.
ucs_status_t SendToken(ucp_ep_h ep, unsigned id, uint64_t token, bool want_reply) {
  auto* payload = new uint64_t(token);
  ucp_request_param_t param;
  param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA |
                       UCP_OP_ATTR_FIELD_FLAGS;
  param.flags = want_reply ? UCP_AM_SEND_FLAG_REPLY : 0;
  param.cb.send = &FreeToken;
  param.user_data = payload;
  ucs_status_ptr_t request = ucp_am_send_nbx(ep, id, nullptr, 0, payload, sizeof(*payload), &param);
  if (UCS_PTR_IS_PTR(request)) return UCS_INPROGRESS;
  delete payload;
  return UCS_PTR_STATUS(request);
}

ucs_status_t OnPing(void* /*arg*/, const void* /*header*/, size_t /*header_length*/,
                    void* data, size_t length, const ucp_am_recv_param_t* param) {
  uint64_t token;
  if (length != sizeof(token) || !(param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP)) {
    return UCS_OK;  // not ours to answer
  }
  std::memcpy(&token, data, sizeof(token));
  SendToken(param->reply_ep, kPongId, token, /*want_reply=*/false);
  return UCS_OK;
}

ucs_status_t OnPong(void* arg, const void* /*header*/, size_t /*header_length*/, void* data,
                    size_t length, const ucp_am_recv_param_t* /*param*/) {
  auto* core = static_cast<WorkerCore*>(arg);
  uint64_t token;
  if (length != sizeof(token)) return UCS_OK;
  std::memcpy(&token, data, sizeof(token));
  core->mu.AssertHeld();
  auto it = core->pings.find(token);
  if (it != core->pings.end()) {
    Op* op = it->second;
    core->pings.erase(it);
    OnPhaseDone(op, UCS_OK);
  }
  return UCS_OK;
}

// Two-sided messages (Endpoint::PostSend): the receiver's sink picks the
// destination of each payload; nothing of the receiver is exposed.
constexpr unsigned kMessageId = 0x5356;
constexpr size_t kMaxMessageHeader = 1024;

struct IncomingRecv {
  WorkerCore* core;
  std::function<void(absl::Status)> done;
};

void OnMessageData(void* request, ucs_status_t status, size_t /*length*/, void* user_data) {
  auto* recv = static_cast<IncomingRecv*>(user_data);
  recv->core->mu.AssertHeld();
  recv->core->QueueCall([done = std::move(recv->done), status] {
    done(FromUcsStatus(status, "receiving a message"));
  });
  delete recv;
  if (request != nullptr) ucp_request_free(request);
}

ucs_status_t OnMessage(void* arg, const void* header, size_t header_length, void* data,
                       size_t length, const ucp_am_recv_param_t* param) {
  auto* core = static_cast<WorkerCore*>(arg);
  core->mu.AssertHeld();
  if (!core->sink) return UCS_OK;
  MessageTarget target = core->sink(
      std::span<const std::byte>(static_cast<const std::byte*>(header), header_length), length);
  if (target.dest.empty() || target.dest.size() != length) {
    // Dropped; a rendezvous sender learns it (its send fails).
    return (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) ? UCS_ERR_REJECTED : UCS_OK;
  }
  core->NoteBusy();
  if (!(param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV)) {
    std::memcpy(target.dest.data(), data, length);
    core->QueueCall([done = std::move(target.done)] { done(absl::OkStatus()); });
    return UCS_OK;
  }
  auto* recv = new IncomingRecv{core, std::move(target.done)};
  ucp_request_param_t rp;
  rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  rp.cb.recv_am = &OnMessageData;
  rp.user_data = recv;
  ucs_status_ptr_t request =
      ucp_am_recv_data_nbx(core->worker, data, target.dest.data(), length, &rp);
  if (!UCS_PTR_IS_PTR(request)) OnMessageData(nullptr, UCS_PTR_STATUS(request), length, recv);
  return UCS_INPROGRESS;
}

// --- RegisteredMemory / RemoteMemory ----------------------------------------

class RegisteredMemoryImpl final : public RegisteredMemory {
 public:
  RegisteredMemoryImpl(std::shared_ptr<WorkerCore> core, ucp_mem_h memh,
                       std::span<std::byte> region, std::string packed)
      : core_(std::move(core)), memh_(memh), region_(region),
        packed_(std::move(packed)) {}
  ~RegisteredMemoryImpl() override {
    absl::MutexLock lock(&core_->mu);
    ucp_mem_unmap(core_->context, memh_);
  }

  uint64_t base() const override { return reinterpret_cast<uint64_t>(region_.data()); }
  size_t size() const override { return region_.size(); }
  std::string packed_rkey() const override { return packed_; }

 private:
  const std::shared_ptr<WorkerCore> core_;
  const ucp_mem_h memh_;
  const std::span<std::byte> region_;
  const std::string packed_;
};

class RemoteMemoryImpl final : public RemoteMemory {
 public:
  RemoteMemoryImpl(std::shared_ptr<EpState> owner, ucp_rkey_h rkey,
                   uint64_t base, size_t size)
      : owner_(std::move(owner)), rkey_(rkey), base_(base), size_(size) {}
  ~RemoteMemoryImpl() override {
    absl::MutexLock lock(&owner_->core->mu);
    ucp_rkey_destroy(rkey_);
  }

  uint64_t base() const override { return base_; }
  size_t size() const override { return size_; }
  const EpState* owner() const { return owner_.get(); }
  ucp_rkey_h rkey() const { return rkey_; }

 private:
  const std::shared_ptr<EpState> owner_;
  const ucp_rkey_h rkey_;
  const uint64_t base_;
  const size_t size_;
};

// --- Endpoint -----------------------------------------------------------------

enum class RmaKind { kGet, kPut };

class EndpointImpl final : public Endpoint {
 public:
  EndpointImpl(std::shared_ptr<EpState> state, absl::Duration close_timeout)
      : state_(std::move(state)), close_timeout_(close_timeout) {}

  ~EndpointImpl() override {
    // Abort whatever is still in flight (a caller that wanted the results
    // would have waited) and release the UCX endpoint.
    CloseAndDrain();
  }

  absl::StatusOr<std::unique_ptr<RemoteMemory>> ImportRemote(
      uint64_t base, size_t size, std::string_view packed_rkey) override {
    ASSIGN_OR_RETURN(internal::RkeyEnvelope envelope, internal::UnwrapRkey(packed_rkey));
    if (size == 0 || base < envelope.region_base ||
        base - envelope.region_base > envelope.region_size ||
        size > envelope.region_size - (base - envelope.region_base)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "range [", base, ", +", size, ") is not within the registered region [",
          envelope.region_base, ", +", envelope.region_size, ")"));
    }
    WorkerCore& core = *state_->core;
    absl::MutexLock lock(&core.mu);
    RETURN_IF_ERROR(UsableLocked());
    ucp_rkey_h rkey = nullptr;
    ucs_status_t status =
        ucp_ep_rkey_unpack(state_->ep, envelope.ucx_rkey.data(), &rkey);
    if (status != UCS_OK) {
      absl::Status error = FromUcsStatus(status, "unpacking remote key");
      if (status == UCS_ERR_NO_MEMORY) return error;
      // Whatever else UCX rejects here is a key this peer cannot use.
      return absl::InvalidArgumentError(error.message());
    }
    return std::make_unique<RemoteMemoryImpl>(state_, rkey, base, size);
  }

  absl::Status PostGet(std::span<std::byte> local, const RemoteMemory& remote,
                       uint64_t remote_addr) override {
    return Post(RmaKind::kGet, local.data(), local.size(), remote, remote_addr, nullptr);
  }
  absl::Status PostGet(std::span<std::byte> local, const RemoteMemory& remote,
                       uint64_t remote_addr, DoneCallback done) override {
    return Post(RmaKind::kGet, local.data(), local.size(), remote, remote_addr,
                std::move(done));
  }
  absl::Status PostPut(std::span<const std::byte> local, const RemoteMemory& remote,
                       uint64_t remote_addr) override {
    return Post(RmaKind::kPut, const_cast<std::byte*>(local.data()), local.size(),
                remote, remote_addr, nullptr);
  }
  absl::Status PostPut(std::span<const std::byte> local, const RemoteMemory& remote,
                       uint64_t remote_addr, DoneCallback done) override {
    return Post(RmaKind::kPut, const_cast<std::byte*>(local.data()), local.size(),
                remote, remote_addr, std::move(done));
  }

  absl::Status PostSend(std::span<const std::byte> header, std::span<const std::byte> payload,
                        DoneCallback done) override {
    if (header.size() > kMaxMessageHeader) {
      return absl::InvalidArgumentError(absl::StrCat("message header of ", header.size(),
                                                     " bytes; at most ", kMaxMessageHeader));
    }
    WorkerCore& core = *state_->core;
    auto* op = new Op{state_, std::move(done), 1, UCS_OK, Op::Kind::kSend};
    op->header.assign(reinterpret_cast<const char*>(header.data()), header.size());
    absl::MutexLock lock(&core.mu);
    if (absl::Status usable = UsableLocked(); !usable.ok()) {
      delete op;
      return usable;
    }
    ucp_request_param_t param;
    param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    param.cb.send = &OnRequestDone;
    param.user_data = op;
    ucs_status_ptr_t request = ucp_am_send_nbx(state_->ep, kMessageId, op->header.data(),
                                               op->header.size(), payload.data(),
                                               payload.size(), &param);
    if (UCS_PTR_IS_ERR(request)) {
      delete op;
      return FromUcsStatus(UCS_PTR_STATUS(request), "posting a message");
    }
    state_->ops.insert(op);
    {
      absl::MutexLock ep_lock(&state_->mu);
      ++state_->in_flight;
    }
    core.NoteBusy();
    if (request == nullptr) OnPhaseDone(op, UCS_OK);
    return absl::OkStatus();
  }

  // Completes the connection with a ping/pong round trip (see kPingId), so
  // that Connect reports an unreachable peer. Unavailable on failure or at
  // `deadline`.
  absl::Status Handshake(absl::Time deadline) {
    WorkerCore& core = *state_->core;
    {
      absl::MutexLock lock(&core.mu);
      const uint64_t token = core.next_ping_token++;
      ucs_status_t sent = SendToken(state_->ep, kPingId, token, /*want_reply=*/true);
      if (UCS_STATUS_IS_ERR(sent)) {
        return absl::UnavailableError(FromUcsStatus(sent, "connecting to peer").message());
      }
      auto* op = new Op{state_, nullptr, 1, UCS_OK, Op::Kind::kHandshake};
      core.pings[token] = op;
      state_->ops.insert(op);
      {
        absl::MutexLock ep_lock(&state_->mu);
        ++state_->in_flight;
      }
      core.NoteBusy();
    }
    if (!WaitIdle(deadline)) {
      CloseAndDrain();
      return absl::UnavailableError("peer did not complete the connection in time");
    }
    absl::MutexLock lock(&state_->mu);
    absl::Status result = state_->failure.ok() ? state_->batch_error : state_->failure;
    state_->batch_error = absl::OkStatus();
    if (result.ok()) return result;
    return absl::UnavailableError(absl::StrCat("connecting to peer: ", result.message()));
  }

  absl::Status WaitAll(absl::Duration timeout) override {
    const absl::Time deadline = absl::Now() + timeout;
    if (!WaitIdle(deadline)) {
      CloseAndDrain();
      state_->RecordFailure(absl::UnavailableError(
          "endpoint aborted after an operation timed out"));
      absl::MutexLock lock(&state_->mu);
      state_->batch_error = absl::OkStatus();
      return absl::DeadlineExceededError(absl::StrCat(
          "RMA operations did not complete within ", absl::FormatDuration(timeout),
          "; endpoint aborted"));
    }
    absl::MutexLock lock(&state_->mu);
    absl::Status result = std::move(state_->batch_error);
    state_->batch_error = absl::OkStatus();
    // A peer failure is the root cause of whatever the operations reported
    // (often just "canceled").
    if (!state_->failure.ok()) return state_->failure;
    return result;
  }

 private:
  // Unavailable once the endpoint failed or was closed.
  absl::Status UsableLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->core->mu) {
    absl::MutexLock lock(&state_->mu);
    if (!state_->failure.ok()) return state_->failure;
    if (state_->ep == nullptr) return absl::UnavailableError("endpoint is closed");
    return absl::OkStatus();
  }

  absl::Status Post(RmaKind kind, std::byte* local, size_t length,
                    const RemoteMemory& remote, uint64_t remote_addr,
                    DoneCallback done) {
    const auto* imported = dynamic_cast<const RemoteMemoryImpl*>(&remote);
    if (imported == nullptr || imported->owner() != state_.get()) {
      return absl::InvalidArgumentError("remote memory was imported by another endpoint");
    }
    if (length == 0) return absl::InvalidArgumentError("empty local buffer");
    if (remote_addr < remote.base() || remote_addr - remote.base() > remote.size() ||
        length > remote.size() - (remote_addr - remote.base())) {
      return absl::OutOfRangeError(absl::StrCat(
          "remote range [", remote_addr, ", +", length, ") is outside [",
          remote.base(), ", +", remote.size(), ")"));
    }
    WorkerCore& core = *state_->core;
    auto* op = new Op{state_, std::move(done), kind == RmaKind::kPut ? 2 : 1};

    absl::MutexLock lock(&core.mu);
    if (absl::Status usable = UsableLocked(); !usable.ok()) {
      delete op;
      return usable;
    }
    ucp_request_param_t param;
    param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    param.cb.send = &OnRequestDone;
    param.user_data = op;
    ucs_status_ptr_t request =
        kind == RmaKind::kGet
            ? ucp_get_nbx(state_->ep, local, length, remote_addr, imported->rkey(), &param)
            : ucp_put_nbx(state_->ep, local, length, remote_addr, imported->rkey(), &param);
    if (UCS_PTR_IS_ERR(request)) {
      delete op;
      return FromUcsStatus(UCS_PTR_STATUS(request),
                           kind == RmaKind::kGet ? "posting get" : "posting put");
    }
    // From here on the operation is in flight and completes through the
    // finished queue (an immediate completion too: callbacks never run
    // inside Post).
    state_->ops.insert(op);
    {
      absl::MutexLock ep_lock(&state_->mu);
      ++state_->in_flight;
    }
    core.NoteBusy();
    if (request == nullptr) OnPhaseDone(op, UCS_OK);
    if (kind == RmaKind::kPut) {
      // The put's own completion is local (the buffer may be reused); the
      // flush completes once the bytes are in the remote memory.
      ucs_status_ptr_t flush = ucp_ep_flush_nbx(state_->ep, &param);
      if (UCS_PTR_IS_ERR(flush)) {
        OnPhaseDone(op, UCS_PTR_STATUS(flush));
      } else if (flush == nullptr) {
        OnPhaseDone(op, UCS_OK);
      }
    }
    return absl::OkStatus();
  }

  // Waits until nothing of this endpoint is in flight. False at `deadline`.
  bool WaitIdle(absl::Time deadline) {
    WorkerCore& core = *state_->core;
    auto idle = [this]() ABSL_SHARED_LOCKS_REQUIRED(state_->mu) {
      return state_->in_flight == 0;
    };
    if (core.has_progress_thread()) {
      absl::MutexLock lock(&state_->mu);
      return state_->mu.AwaitWithDeadline(absl::Condition(&idle), deadline);
    }
    while (true) {
      unsigned events = core.ProgressOnce();
      {
        absl::MutexLock lock(&state_->mu);
        if (idle()) return true;
      }
      if (absl::Now() >= deadline) return false;
      if (events == 0) sched_yield();
    }
  }

  // Force-closes the UCX endpoint (UCX fails every operation in flight with
  // UCS_ERR_CANCELED) and waits until all of them, and the close, finished,
  // for up to close_timeout_. UCX may never complete some of them (UCX 1.13
  // can leave a force-closed endpoint's requests pending forever when its
  // peer died, e.g. behind shared memory): those are then abandoned, i.e.
  // reported to their callers as Cancelled at once, and freed whenever UCX
  // completes them. Their UCX endpoint is force-closed by then (no new
  // transfer starts), and a dead peer moves no more bytes, but a peer that
  // is merely stuck and resumes could still complete an abandoned get or put;
  // the caller was told it failed, so it treats the destination as unwritten
  // either way. Returns false when operations were abandoned.
  bool CloseAndDrain() {
    WorkerCore& core = *state_->core;
    {
      absl::MutexLock lock(&core.mu);
      for (auto it = core.pings.begin(); it != core.pings.end();) {
        if (it->second->ep == state_) {
          OnPhaseDone(it->second, UCS_ERR_CANCELED);
          core.pings.erase(it++);
        } else {
          ++it;
        }
      }
      if (state_->ep != nullptr) {
        auto* op = new Op{state_, nullptr, 1, UCS_OK, Op::Kind::kClose};
        ucp_request_param_t param;
        param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA |
                             UCP_OP_ATTR_FIELD_FLAGS;
        param.flags = UCP_EP_CLOSE_FLAG_FORCE;
        param.cb.send = &OnRequestDone;
        param.user_data = op;
        ucs_status_ptr_t request = ucp_ep_close_nbx(state_->ep, &param);
        state_->ep = nullptr;
        if (UCS_PTR_IS_PTR(request)) {
          state_->ops.insert(op);
          {
            absl::MutexLock ep_lock(&state_->mu);
            ++state_->in_flight;
          }
          core.NoteBusy();
        } else {
          delete op;
        }
      }
    }
    if (WaitIdle(absl::Now() + close_timeout_)) return true;

    // Abandon what UCX did not complete: a stand-in for each reports it
    // through the finished queue (callback, in_flight, busy).
    {
      absl::MutexLock lock(&core.mu);
      for (Op* op : state_->ops) {
        op->abandoned = true;
        core.QueueFinished(new Op{op->ep, std::move(op->done), 0, UCS_ERR_CANCELED, op->kind});
      }
      state_->ops.clear();
    }
    core.Wake();
    // Stand-ins finish on the next progress round: only callbacks run.
    WaitIdle(absl::Now() + close_timeout_);
    return false;
  }

  const std::shared_ptr<EpState> state_;
  const absl::Duration close_timeout_;
};

// --- UcxContext -------------------------------------------------------------

// Lists the transport resources the context opened, "tl/device,...", parsed
// from UCX's context report (lines "#  resource N : md M dev D flags -- tl/dev").
std::string OpenedTransports(ucp_context_h context) {
  char* text = nullptr;
  size_t length = 0;
  FILE* stream = open_memstream(&text, &length);
  if (stream == nullptr) return "unknown";
  ucp_context_print_info(context, stream);
  fclose(stream);
  std::string report(text, length);
  free(text);
  std::vector<std::string> found;
  for (absl::string_view line : absl::StrSplit(report, '\n')) {
    if (line.find("resource") == absl::string_view::npos) continue;
    std::vector<absl::string_view> tokens = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (!tokens.empty() && tokens.back().find('/') != absl::string_view::npos) {
      found.emplace_back(tokens.back());
    }
  }
  return found.empty() ? "unknown" : absl::StrJoin(found, ",");
}

// Whether a UCX_TLS-style list may open UCX's mm (posix/sysv) transports.
bool UsesSharedMemory(const std::string& transports) {
  const char* env = std::getenv("UCX_TLS");
  std::string list = !transports.empty()              ? transports
                     : (env != nullptr && *env != '\0') ? env
                                                         : "all";
  for (absl::string_view name : absl::StrSplit(list, ',', absl::SkipEmpty())) {
    if (!name.empty() && name.front() == '^') return true;  // "all but ..."
    if (name == "all" || name == "sm" || name == "shm" || name == "mm" ||
        name == "posix" || name == "sysv") {
      return true;
    }
  }
  return false;
}

// Opens only the network devices holding `address`'s host and makes tcp
// listen on its port (see UcxOptions::data_listen).
absl::Status RestrictToAddress(ucp_config_t* config, const std::string& address) {
  ASSIGN_OR_RETURN(internal::HostPort where, internal::ParseHostPort(address));
  if (std::getenv("UCX_NET_DEVICES") == nullptr) {
    ASSIGN_OR_RETURN(std::vector<std::string> devices, internal::InterfacesHolding(where.host));
    if (!devices.empty()) {
      const std::string list = absl::StrJoin(devices, ",");
      if (ucp_config_modify(config, "NET_DEVICES", list.c_str()) != UCS_OK) {
        return absl::InvalidArgumentError(absl::StrCat("UCX rejected network devices ", list));
      }
    }
  }
  return absl::OkStatus();
}

class UcxContextImpl final : public UcxContext {
 public:
  UcxContextImpl(std::shared_ptr<WorkerCore> core, std::string address,
                 std::string transports, absl::Duration connect_timeout,
                 absl::Duration close_timeout, bool remote_access,
                 size_t tcp_receive_segment)
      : core_(std::move(core)), address_(std::move(address)),
        transports_(std::move(transports)), connect_timeout_(connect_timeout),
        close_timeout_(close_timeout), remote_access_(remote_access),
        tcp_receive_segment_(tcp_receive_segment) {}
  ~UcxContextImpl() override { core_->StopProgressThread(); }

  std::string worker_address() const override { return address_; }

  absl::StatusOr<std::unique_ptr<RegisteredMemory>> Register(
      std::span<std::byte> region) override {
    if (region.empty()) return absl::InvalidArgumentError("empty region");
    if (!remote_access_) {
      return absl::FailedPreconditionError(
          "this UCX context grants no remote access (UcxOptions::remote_access is off)");
    }
    ucp_mem_map_params_t params;
    params.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
    params.address = region.data();
    params.length = region.size();
    absl::MutexLock lock(&core_->mu);
    ucp_mem_h memh = nullptr;
    ucs_status_t status = ucp_mem_map(core_->context, &params, &memh);
    if (status != UCS_OK) {
      absl::Status error = FromUcsStatus(status, "registering memory");
      if (error.code() == absl::StatusCode::kInternal) {
        return absl::ResourceExhaustedError(error.message());
      }
      return error;
    }
    void* packed = nullptr;
    size_t packed_size = 0;
    status = ucp_rkey_pack(core_->context, memh, &packed, &packed_size);
    if (status != UCS_OK) {
      ucp_mem_unmap(core_->context, memh);
      return FromUcsStatus(status, "packing remote key");
    }
    internal::RkeyEnvelope envelope;
    envelope.region_base = reinterpret_cast<uint64_t>(region.data());
    envelope.region_size = region.size();
    envelope.ucx_rkey.assign(static_cast<const char*>(packed), packed_size);
    ucp_rkey_buffer_release(packed);
    return std::make_unique<RegisteredMemoryImpl>(core_, memh, region,
                                                  internal::WrapRkey(envelope));
  }

  absl::StatusOr<std::unique_ptr<Endpoint>> Connect(
      std::string_view peer_worker_address) override {
    ASSIGN_OR_RETURN(std::string address,
                     internal::UnwrapWorkerAddress(peer_worker_address));
    auto state = std::make_shared<EpState>(core_);
    ucp_ep_params_t params;
    params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS |
                        UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                        UCP_EP_PARAM_FIELD_ERR_HANDLER;
    params.address = reinterpret_cast<const ucp_address_t*>(address.data());
    params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
    params.err_handler.cb = &OnEndpointError;
    params.err_handler.arg = state.get();
    absl::ReleasableMutexLock lock(&core_->mu);
    ucs_status_t status = ucp_ep_create(core_->worker, &params, &state->ep);
    if (status != UCS_OK) {
      absl::Status error = FromUcsStatus(status, "connecting to peer worker");
      if (error.code() == absl::StatusCode::kInternal ||
          error.code() == absl::StatusCode::kInvalidArgument) {
        // No common transport with the peer (e.g. tcp here, shared memory
        // there): the peer is unreachable from this context.
        return absl::UnavailableError(error.message());
      }
      return error;
    }
    auto endpoint = std::make_unique<EndpointImpl>(std::move(state), close_timeout_);
    lock.Release();
    RETURN_IF_ERROR(endpoint->Handshake(absl::Now() + connect_timeout_));
    return endpoint;
  }

  std::string transports_in_use() const override { return transports_; }

  size_t tcp_receive_segment() const override { return tcp_receive_segment_; }

 private:
  const std::shared_ptr<WorkerCore> core_;
  const std::string address_;
  const std::string transports_;
  const absl::Duration connect_timeout_;
  const absl::Duration close_timeout_;
  const bool remote_access_;
  const size_t tcp_receive_segment_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<UcxContext>> UcxContext::Create(const UcxOptions& options) {
  auto core = std::make_shared<WorkerCore>();

  ucp_config_t* config = nullptr;
  int tcp_port = 0;
  if (!options.data_listen.empty()) {
    ASSIGN_OR_RETURN(internal::HostPort where, internal::ParseHostPort(options.data_listen));
    tcp_port = where.port;
  }
  ASSIGN_OR_RETURN(const internal::TcpSegments segments,
                   internal::EffectiveTcpSegments(options.tcp_send_segment,
                                                  options.tcp_receive_segment));
  // UCX 1.13 reads its tcp transport's settings from the environment when
  // it creates the worker's interfaces (ucp_config_modify accepts
  // TCP_PORT_RANGE or TCP_TX_SEG_SIZE, but the tcp transport never sees
  // them), so they are put in the environment from configuration to worker
  // creation, each unless the variable is set already.
  std::vector<std::pair<std::string, std::string>> tcp_settings = {
      {"TCP_TX_SEG_SIZE", absl::StrCat(segments.send)},
      {"TCP_RX_SEG_SIZE", absl::StrCat(segments.receive)}};
  if (tcp_port != 0) tcp_settings.push_back({"TCP_PORT_RANGE", absl::StrCat(tcp_port, "-", tcp_port)});
  auto port_scope = std::make_unique<internal::ScopedTcpEnvironment>(tcp_settings);
  RETURN_IF_ERROR(FromUcsStatus(ucp_config_read(nullptr, nullptr, &config),
                                "reading UCX configuration"));
  // An empty list, as an option or as UCX_TLS="", means UCX's default ("all"),
  // not "no transport".
  const char* env_tls = std::getenv("UCX_TLS");
  const std::string tls =
      !options.transports.empty() ? options.transports
      : (env_tls != nullptr && *env_tls == '\0') ? std::string("all")
                                                  : std::string();
  if (!tls.empty()) {
    ucs_status_t status = ucp_config_modify(config, "TLS", tls.c_str());
    if (status != UCS_OK) {
      ucp_config_release(config);
      return absl::InvalidArgumentError(
          absl::StrCat("UCX rejected transports '", options.transports,
                       "': ", ucs_status_string(status)));
    }
  }
  if (!options.data_listen.empty()) {
    absl::Status bound = RestrictToAddress(config, options.data_listen);
    if (!bound.ok()) {
      ucp_config_release(config);
      return bound;
    }
  }
  // Strata needs peer-failure handling on every endpoint (a dead node must
  // fail operations, not hang them). UCX 1.13 leaves it off for its
  // shared-memory transports unless asked; with it off they are not selected
  // for such endpoints at all. Environment settings still win.
  // ("MM_" is the part of the posix and sysv settings both inherit.)
  if (UsesSharedMemory(options.transports) &&
      std::getenv("UCX_MM_ERROR_HANDLING") == nullptr &&
      std::getenv("UCX_POSIX_ERROR_HANDLING") == nullptr &&
      std::getenv("UCX_SYSV_ERROR_HANDLING") == nullptr) {
    ucs_status_t status = ucp_config_modify(config, "MM_ERROR_HANDLING", "y");
    (void)status;  // a UCX without the setting: nothing to enable
  }
  if (std::getenv("UCX_KEEPALIVE_INTERVAL") == nullptr &&
      options.keepalive_interval > absl::ZeroDuration()) {
    const std::string interval =
        absl::StrCat(absl::ToInt64Microseconds(options.keepalive_interval), "us");
    if (ucp_config_modify(config, "KEEPALIVE_INTERVAL", interval.c_str()) != UCS_OK) {
      ucp_config_release(config);
      return absl::InvalidArgumentError(
          absl::StrCat("UCX rejected keepalive interval ", interval));
    }
  }
  ucp_params_t params;
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_NAME;
  // Without UCP_FEATURE_RMA UCX installs no handler for emulated one-sided
  // operations, so peers reach nothing of this process (see remote_access).
  params.features = (options.remote_access ? UCP_FEATURE_RMA : 0) | UCP_FEATURE_AM |
                    UCP_FEATURE_WAKEUP;
  params.name = "strata";
  ucs_status_t status = ucp_init(&params, config, &core->context);
  ucp_config_release(config);
  if (status != UCS_OK) {
    core->context = nullptr;
    absl::Status error = FromUcsStatus(status, "initialising UCX");
    if (status == UCS_ERR_NO_DEVICE || status == UCS_ERR_NO_ELEM) {
      return absl::UnavailableError(absl::StrCat(
          error.message(), " (no usable transport among '", options.transports, "')"));
    }
    return error;
  }

  ucp_worker_params_t worker_params;
  worker_params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  worker_params.thread_mode = UCS_THREAD_MODE_SERIALIZED;
  status = ucp_worker_create(core->context, &worker_params, &core->worker);
  port_scope.reset();
  if (status != UCS_OK) {
    core->worker = nullptr;
    return FromUcsStatus(status, "creating UCX worker");
  }

  core->sink = options.on_message;
  for (auto [id, callback] : {std::pair{kPingId, &OnPing}, std::pair{kPongId, &OnPong},
                              std::pair{kMessageId, &OnMessage}}) {
    ucp_am_handler_param_t handler;
    handler.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                         UCP_AM_HANDLER_PARAM_FIELD_ARG;
    handler.id = id;
    handler.cb = callback;
    handler.arg = core.get();
    RETURN_IF_ERROR(FromUcsStatus(ucp_worker_set_am_recv_handler(core->worker, &handler),
                                  "installing handshake handlers"));
  }

  ucp_address_t* address = nullptr;
  size_t address_length = 0;
  RETURN_IF_ERROR(FromUcsStatus(
      ucp_worker_get_address(core->worker, &address, &address_length),
      "packing worker address"));
  std::string wrapped = internal::WrapWorkerAddress(
      std::string_view(reinterpret_cast<const char*>(address), address_length));
  ucp_worker_release_address(core->worker, address);

  std::string transports = absl::StrCat(
      "requested=", options.transports.empty() ? "default" : options.transports,
      "; opened=", OpenedTransports(core->context));

  if (options.progress_thread) {
    core->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    core->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (core->wake_fd < 0 || core->epoll_fd < 0) {
      return absl::InternalError(absl::StrCat("eventfd/epoll: ", std::strerror(errno)));
    }
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.fd = core->wake_fd;
    if (epoll_ctl(core->epoll_fd, EPOLL_CTL_ADD, core->wake_fd, &event) != 0) {
      return absl::InternalError(absl::StrCat("epoll_ctl: ", std::strerror(errno)));
    }
    // Sleep on the worker's event fd when the worker can be armed (every
    // transport of the worker signals events); otherwise poll, coarsely
    // when idle.
    ucs_status_t armed = ucp_worker_get_efd(core->worker, &core->worker_fd);
    if (armed == UCS_OK) {
      do {
        while (ucp_worker_progress(core->worker) != 0) {
        }
        armed = ucp_worker_arm(core->worker);
      } while (armed == UCS_ERR_BUSY);
    }
    if (armed == UCS_OK) {
      event.data.fd = core->worker_fd;
      if (epoll_ctl(core->epoll_fd, EPOLL_CTL_ADD, core->worker_fd, &event) == 0) {
        core->wakeup = Wakeup::kEventFd;
      }
    }
    absl::StrAppend(&transports, "; wakeup=",
                    core->wakeup == Wakeup::kEventFd
                        ? "event-fd"
                        : absl::StrCat("poll (", ucs_status_string(armed), ")"));
    core->StartProgressThread();
  }
  return std::make_unique<UcxContextImpl>(std::move(core), std::move(wrapped),
                                          std::move(transports), options.connect_timeout,
                                          options.close_timeout, options.remote_access,
                                          segments.receive);
}

}  // namespace strata::transport
