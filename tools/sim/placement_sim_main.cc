// placement_sim: rendezvous placement (store/cluster/placement.h) of random
// keys over simulated nodes: the load skew per node with 1..R replicas and
// the fraction of keys that move when one node joins or leaves, as a
// Markdown table.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "store/cluster/placement_sim.h"
#include "tools/cli/flags.h"

namespace strata::cluster {
namespace {

int Main(int argc, char** argv) {
  int64_t nodes = 100, keys = 1000000, max_replicas = 3, seed = 1;
  cli::FlagSet flags(
      "placement_sim [flags]\n\n"
      "Places random 32-byte keys on nodes by rendezvous hashing and prints, per\n"
      "replica count, the load skew (most and least loaded node over the mean) and\n"
      "the fraction of keys whose replica set changes when a node joins or leaves.");
  flags.Add("nodes", "nodes in the cluster", &nodes);
  flags.Add("keys", "keys placed", &keys);
  flags.Add("max_replicas", "replica counts 1..this", &max_replicas);
  flags.Add("seed", "key generator seed", &seed);
  auto rest = flags.Parse(std::vector<std::string>(argv + 1, argv + argc));
  if (!rest.ok()) {
    std::fprintf(stderr, "placement_sim: %s\n", std::string(rest.status().message()).c_str());
    return 2;
  }
  if (flags.help_requested()) {
    std::printf("%s", flags.Help().c_str());
    return 0;
  }
  if (!rest->empty() || nodes < 2 || keys < 1 || max_replicas < 1 || max_replicas >= nodes) {
    std::fprintf(stderr,
                 "placement_sim: want no arguments, --nodes >= 2, --keys >= 1 and "
                 "1 <= --max_replicas < --nodes\n");
    return 2;
  }
  std::printf("%lld nodes, %lld keys\n\n", static_cast<long long>(nodes),
              static_cast<long long>(keys));
  std::printf(
      "| replicas | max/mean | min/mean | moved on join | R/(N+1) | moved on leave | R/N |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  for (int64_t r = 1; r <= max_replicas; ++r) {
    PlacementSimOptions o;
    o.nodes = static_cast<size_t>(nodes);
    o.keys = static_cast<size_t>(keys);
    o.replicas = static_cast<size_t>(r);
    o.seed = static_cast<uint64_t>(seed);
    const PlacementSimResult s = SimulatePlacement(o);
    std::printf("| %lld | %.4f | %.4f | %.5f | %.5f | %.5f | %.5f |\n", static_cast<long long>(r),
                s.max_over_mean, s.min_over_mean, s.moved_on_join,
                static_cast<double>(r) / (nodes + 1), s.moved_on_leave,
                static_cast<double>(r) / nodes);
    if (s.mismatched != 0 || s.join_moves_elsewhere != 0 || s.leave_moves_elsewhere != 0) {
      std::fprintf(stderr, "placement_sim: R=%lld: the simulation disagrees with placement.h\n",
                   static_cast<long long>(r));
      return 1;
    }
  }
  return 0;
}

}  // namespace
}  // namespace strata::cluster

int main(int argc, char** argv) { return strata::cluster::Main(argc, argv); }
