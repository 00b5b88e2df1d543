#include "store/cluster/membership.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace strata::cluster {

std::vector<std::string> MembershipView::NodeIds() const {
  std::vector<std::string> ids;
  ids.reserve(nodes.size());
  for (const NodeRecord& n : nodes) ids.push_back(n.node_id);
  return ids;
}

const NodeRecord* MembershipView::Find(std::string_view node_id) const {
  auto it = std::lower_bound(nodes.begin(), nodes.end(), node_id,
                             [](const NodeRecord& n, std::string_view id) { return n.node_id < id; });
  return it != nodes.end() && it->node_id == node_id ? &*it : nullptr;
}

namespace {

class StaticMembership final : public Membership {
 public:
  explicit StaticMembership(MembershipView view) : view_(std::move(view)) {}

  MembershipView Snapshot() const override { return view_; }

  MembershipView WaitForChange(uint64_t after_version, absl::Duration timeout) const override {
    // A static list never changes: wait out the timeout if asked to.
    if (view_.version <= after_version) absl::SleepFor(timeout);
    return view_;
  }

 private:
  const MembershipView view_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Membership>> CreateStaticMembership(std::string_view peers) {
  MembershipView view;
  view.version = 1;
  absl::flat_hash_set<std::string> seen;
  const absl::string_view list(peers.data(), peers.size());
  for (absl::string_view raw : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
    absl::string_view peer = absl::StripAsciiWhitespace(raw);
    const size_t colon = peer.rfind(':');
    int port = 0;
    if (colon == absl::string_view::npos || colon == 0 ||
        !absl::SimpleAtoi(peer.substr(colon + 1), &port) || port <= 0 || port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("peer '", peer, "': want host:port"));
    }
    if (!seen.insert(std::string(peer)).second) {
      return absl::InvalidArgumentError(absl::StrCat("peer '", peer, "' is listed twice"));
    }
    NodeRecord r;
    r.node_id = std::string(peer);
    r.grpc_address = std::string(peer);
    view.nodes.push_back(std::move(r));
  }
  if (view.nodes.empty()) return absl::InvalidArgumentError("no peers given");
  std::sort(view.nodes.begin(), view.nodes.end(),
            [](const NodeRecord& a, const NodeRecord& b) { return a.node_id < b.node_id; });
  return std::unique_ptr<Membership>(std::make_unique<StaticMembership>(std::move(view)));
}

}  // namespace strata::cluster
