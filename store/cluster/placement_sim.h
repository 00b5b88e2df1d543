// A placement simulation: how evenly rendezvous placement (placement.h)
// spreads keys over nodes, with and without replicas, and how many keys move
// when one node joins or leaves. Pure code (no I/O); the figures are in the
// README and placement_sim_test checks them against the theory.
#ifndef STRATA_STORE_CLUSTER_PLACEMENT_SIM_H_
#define STRATA_STORE_CLUSTER_PLACEMENT_SIM_H_

#include <cstddef>
#include <cstdint>

namespace strata::cluster {

struct PlacementSimOptions {
  size_t nodes = 100;     // node ids "node-0" .. "node-<nodes-1>"
  size_t keys = 1000000;  // uniformly random 32-byte keys (as SHA-256 keys are)
  size_t replicas = 1;
  uint64_t seed = 1;
};

struct PlacementSimResult {
  // Replica assignments per node over their mean (keys * replicas / nodes).
  double max_over_mean = 0;
  double min_over_mean = 0;
  // Fraction of keys whose replica set changes when node "node-<nodes>"
  // joins (theory: replicas / (nodes + 1)), and when node "node-0" leaves
  // (theory: replicas / nodes).
  double moved_on_join = 0;
  double moved_on_leave = 0;
  // Keys whose set changed on join without the new node taking exactly one
  // replica of it, or on leave without the leaving node having held it
  // (rendezvous: none).
  uint64_t join_moves_elsewhere = 0;
  uint64_t leave_moves_elsewhere = 0;
  // Keys (every 4096th) whose replicas were checked against PlaceReplicas,
  // and how many differed (none).
  uint64_t checked = 0;
  uint64_t mismatched = 0;
};

// REQUIRES: nodes >= 2, 1 <= replicas < nodes.
PlacementSimResult SimulatePlacement(const PlacementSimOptions& options);

}  // namespace strata::cluster

#endif  // STRATA_STORE_CLUSTER_PLACEMENT_SIM_H_
