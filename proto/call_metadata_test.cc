#include "proto/call_metadata.h"

#include <cstdint>

#include "gtest/gtest.h"

namespace strata::proto {
namespace {

TEST(CallMetadataTest, IncarnationsRoundTrip) {
  for (uint64_t v : {uint64_t{1}, uint64_t{0x9e3779b97f4a7c15}, UINT64_MAX}) {
    EXPECT_EQ(ParseIncarnation(FormatIncarnation(v)), v);
  }
}

TEST(CallMetadataTest, AnythingElseIsNotAnIncarnation) {
  for (const char* bad : {"", "0", "00", "-1", "12a", " 1", "1 ", "0x10", "18446744073709551616",
                          "99999999999999999999", "123456789012345678901"}) {
    EXPECT_EQ(ParseIncarnation(bad), std::nullopt) << bad;
  }
}

}  // namespace
}  // namespace strata::proto
