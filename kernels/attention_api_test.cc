// Host API checks that refuse a call before any device work, so they run
// without a GPU (the launches themselves are covered by attention_gpu_test,
// tag "gpu").
#include <string>

#include "gtest/gtest.h"
#include "kernels/attention.h"

namespace strata::kernels {
namespace {

// A plan with RoPE on must carry the frequencies UploadPlan puts in its
// workspace; a hand-made one without them is refused, not run on garbage.
TEST(AttentionApiTest, RopeWithoutFrequenciesIsRefused) {
  DevicePlan plan;
  plan.layout = KvLayout{KvDtype::kBFloat16, 2, 128, 64};
  plan.options.num_q_heads = 8;
  plan.options.apply_rope = true;
  plan.batch = 1;
  plan.num_items = 1;
  const WorkItem item{};
  plan.items = &item;  // never read: the call is refused first
  alignas(16) static char queries[16], out[16];
  const absl::Status s = RunAttention(plan, queries, out, nullptr, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(std::string(s.message()).find("RoPE frequencies"), std::string::npos) << s;
}

}  // namespace
}  // namespace strata::kernels
