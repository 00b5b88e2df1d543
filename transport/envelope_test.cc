#include "transport/envelope.h"

#include <string>

#include "gtest/gtest.h"

namespace strata::transport::internal {
namespace {

TEST(EnvelopeTest, WorkerAddressRoundTrips) {
  const std::string ucx("\x01\x02\x00\x7f some ucx address bytes", 29);
  absl::StatusOr<std::string> back = UnwrapWorkerAddress(WrapWorkerAddress(ucx));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, ucx);
}

TEST(EnvelopeTest, RkeyRoundTripsWithRegion) {
  RkeyEnvelope in;
  in.region_base = 0x7f0000001000;
  in.region_size = 64 << 20;
  in.ucx_rkey = std::string("\x00rkey\xff", 6);
  absl::StatusOr<RkeyEnvelope> out = UnwrapRkey(WrapRkey(in));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->region_base, in.region_base);
  EXPECT_EQ(out->region_size, in.region_size);
  EXPECT_EQ(out->ucx_rkey, in.ucx_rkey);
}

TEST(EnvelopeTest, RejectsGarbageTruncationCorruptionAndWrongKind) {
  const std::string address = WrapWorkerAddress("address");
  RkeyEnvelope key;
  key.region_base = 4096;
  key.region_size = 4096;
  key.ucx_rkey = "rkey";
  const std::string rkey = WrapRkey(key);

  EXPECT_EQ(UnwrapWorkerAddress("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UnwrapWorkerAddress("not an address at all, just text").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UnwrapWorkerAddress(address.substr(0, address.size() - 1)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UnwrapWorkerAddress(address + "x").status().code(),
            absl::StatusCode::kInvalidArgument);
  for (size_t i = 0; i < address.size(); ++i) {
    std::string corrupt = address;
    corrupt[i] ^= 0x20;
    EXPECT_EQ(UnwrapWorkerAddress(corrupt).status().code(),
              absl::StatusCode::kInvalidArgument)
        << "byte " << i;
  }
  // An rkey is not an address and vice versa.
  EXPECT_EQ(UnwrapWorkerAddress(rkey).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UnwrapRkey(address).status().code(), absl::StatusCode::kInvalidArgument);
  for (size_t i = 0; i < rkey.size(); ++i) {
    std::string corrupt = rkey;
    corrupt[i] ^= 0x01;
    EXPECT_EQ(UnwrapRkey(corrupt).status().code(), absl::StatusCode::kInvalidArgument)
        << "byte " << i;
  }
}

TEST(EnvelopeTest, RejectsEmptyOrWrappingRegion) {
  RkeyEnvelope key;
  key.ucx_rkey = "rkey";
  key.region_base = 4096;
  key.region_size = 0;
  EXPECT_EQ(UnwrapRkey(WrapRkey(key)).status().code(), absl::StatusCode::kInvalidArgument);
  key.region_base = ~uint64_t{0} - 10;
  key.region_size = 100;
  EXPECT_EQ(UnwrapRkey(WrapRkey(key)).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace strata::transport::internal
