#include "transport/envelope.h"

#include <cstring>
#include <string>
#include <string_view>

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

// Found by tools/fuzz/envelope_fuzzer (corpus: envelope/reserved-bytes): a
// worker address with non-zero reserved bytes and a correct checksum was
// accepted, so two different strings unwrapped to one address.
uint64_t Fnv1a64(std::string_view bytes) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : bytes) {
    hash ^= c;
    hash *= 0x100000001b3ull;
  }
  return hash;
}

TEST(EnvelopeTest, RejectsNonZeroReservedBytesEvenWithAValidChecksum) {
  RkeyEnvelope key;
  key.region_base = 4096;
  key.region_size = 4096;
  key.ucx_rkey = "rkey";
  const std::string rkey = WrapRkey(key);
  const std::string address = WrapWorkerAddress("address");
  for (const std::string* wrapped : {&address, &rkey}) {
    for (size_t i = 5; i < 8; ++i) {
      std::string altered = *wrapped;
      altered[i] = 0x01;
      const uint64_t sum = Fnv1a64(std::string_view(altered).substr(0, altered.size() - 8));
      std::memcpy(altered.data() + altered.size() - 8, &sum, 8);
      const absl::Status s = wrapped == &rkey ? UnwrapRkey(altered).status()
                                              : UnwrapWorkerAddress(altered).status();
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << "byte " << i;
      EXPECT_NE(s.message().find("reserved"), std::string_view::npos) << s;
    }
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
