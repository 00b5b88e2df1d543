// The placement simulation at the size the README reports (100 nodes, 1M
// keys), checked against what rendezvous hashing promises: loads within a
// few standard deviations of the mean, about replicas/N of the keys moving
// on a join or a leave, and every move going to the new node or away from
// the one that left.
#include "store/cluster/placement_sim.h"

#include <cmath>
#include <cstdio>

#include "gtest/gtest.h"

namespace strata::cluster {
namespace {

class PlacementSimTest : public ::testing::TestWithParam<size_t> {};

TEST_P(PlacementSimTest, HundredNodesMillionKeys) {
  PlacementSimOptions o;
  o.replicas = GetParam();
  const PlacementSimResult r = SimulatePlacement(o);
  std::printf(
      "R=%zu: max/mean %.4f min/mean %.4f moved on join %.5f (R/(N+1) = %.5f) "
      "on leave %.5f (R/N = %.5f)\n",
      o.replicas, r.max_over_mean, r.min_over_mean, r.moved_on_join,
      static_cast<double>(o.replicas) / (o.nodes + 1), r.moved_on_leave,
      static_cast<double>(o.replicas) / o.nodes);
  // Per node a binomial count with mean m = keys * R / N: its relative
  // standard deviation is about 1/sqrt(m); the extremes of 100 such counts
  // stay within 5 of them.
  const double mean = static_cast<double>(o.keys) * o.replicas / o.nodes;
  const double sd = 1 / std::sqrt(mean);
  EXPECT_LT(r.max_over_mean, 1 + 5 * sd);
  EXPECT_GT(r.min_over_mean, 1 - 5 * sd);
  EXPECT_GT(r.max_over_mean, 1.0);
  // Moves: a binomial fraction around R/(N+1) and R/N.
  const double join = static_cast<double>(o.replicas) / (o.nodes + 1);
  const double leave = static_cast<double>(o.replicas) / o.nodes;
  EXPECT_NEAR(r.moved_on_join, join, 5 * std::sqrt(join / o.keys));
  EXPECT_NEAR(r.moved_on_leave, leave, 5 * std::sqrt(leave / o.keys));
  EXPECT_EQ(r.join_moves_elsewhere, 0u);
  EXPECT_EQ(r.leave_moves_elsewhere, 0u);
  EXPECT_GT(r.checked, 200u);
  EXPECT_EQ(r.mismatched, 0u);
}

INSTANTIATE_TEST_SUITE_P(Replicas, PlacementSimTest, ::testing::Values(1, 2, 3));

}  // namespace
}  // namespace strata::cluster
