#include "store/common/checksum.h"

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <xxhash.h>

#include <cstddef>
#include <cstring>
#include <random>
#include <span>
#include <vector>

#include "gtest/gtest.h"
#include "store/common/checksum_internal.h"

namespace strata {
namespace {

using checksum_internal::kCopyBlock;

// Sizes around XXH3's internal boundaries (16, 128, 240 bytes, 64-byte
// stripes, 1024-byte blocks), the copy loop's 128-byte step and the fused
// copy's blocks, odd ones among them.
std::vector<size_t> Sizes() {
  std::vector<size_t> sizes = {0,    1,    3,    7,    16,   17,   37,   63,   64,  65,
                               127,  128,  129,  239,  240,  241,  255,  256,  1023, 1024,
                               1025, 4095, 4096, 4097, 65537};
  for (size_t n : {kCopyBlock - 1, kCopyBlock, kCopyBlock + 1, 2 * kCopyBlock,
                   3 * kCopyBlock + 17, (size_t{8} << 20) + 3}) {
    sizes.push_back(n);
  }
  return sizes;
}

std::vector<std::byte> Random(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> v(n);
  for (std::byte& b : v) b = static_cast<std::byte>(rng());
  return v;
}

// The definition: XXH3-64 with seed 0 (the published value of the empty
// input, and the linked library's value of any input).
TEST(ChecksumTest, IsXxh3With64BitsAndSeedZero) {
  EXPECT_EQ(ChunkChecksum({}), uint64_t{0x2D06800538D394C2});
  for (size_t n : Sizes()) {
    const std::vector<std::byte> bytes = Random(n, n);
    EXPECT_EQ(ChunkChecksum(bytes), XXH3_64bits(bytes.data(), n)) << n;
  }
}

// The fused copy gives the bytes and the checksum of a plain copy, at sizes
// around its block boundaries.
TEST(ChecksumTest, CopyAndChecksumEqualsCopyThenChecksum) {
  for (size_t n : Sizes()) {
    const std::vector<std::byte> src = Random(n, 7 + n);
    std::vector<std::byte> dest(n, std::byte{0x5a});
    const uint64_t sum = CopyAndChecksum(dest, src.data());
    EXPECT_EQ(dest, src) << n;
    EXPECT_EQ(sum, XXH3_64bits(src.data(), n)) << n;
  }
}

// Every variant, on source and destination addresses of every alignment
// mod 32, writes exactly dest[0, n) and returns the library's XXH3.
void ExpectVariantsAgree(const char* name, uint64_t (*checksum)(const std::byte*, size_t),
                         uint64_t (*copy_and_checksum)(std::byte*, const std::byte*, size_t)) {
  for (size_t n : Sizes()) {
    const std::vector<std::byte> src = Random(n + 64, 11 + n);
    for (size_t src_off : {size_t{0}, size_t{1}, size_t{13}, size_t{32}}) {
      const uint64_t want = XXH3_64bits(src.data() + src_off, n);
      EXPECT_EQ(checksum(src.data() + src_off, n), want) << name << " " << n << " +" << src_off;
      for (size_t dest_off : {size_t{0}, size_t{5}, size_t{31}}) {
        std::vector<std::byte> dest(n + 64, std::byte{0xa5});
        EXPECT_EQ(copy_and_checksum(dest.data() + dest_off, src.data() + src_off, n), want)
            << name << " " << n << " +" << src_off << " -> +" << dest_off;
        for (size_t i = 0; i < dest.size(); ++i) {
          const std::byte expected =
              i >= dest_off && i < dest_off + n ? src[src_off + i - dest_off] : std::byte{0xa5};
          if (dest[i] != expected) {
            ADD_FAILURE() << name << " " << n << " +" << src_off << " -> +" << dest_off
                          << ": byte " << i << " of the destination is wrong";
            break;
          }
        }
      }
    }
  }
}

TEST(ChecksumTest, PortableVariantAgreesWithTheLibrary) {
  ExpectVariantsAgree("portable", checksum_internal::ChecksumPortable,
                      checksum_internal::CopyAndChecksumPortable);
}

#if defined(__x86_64__)
TEST(ChecksumTest, Avx2VariantAgreesWithTheLibrary) {
  if (!checksum_internal::Avx2Available()) GTEST_SKIP() << "this CPU has no AVX2";
  ExpectVariantsAgree("avx2", checksum_internal::ChecksumAvx2,
                      checksum_internal::CopyAndChecksumAvx2);
}
#endif

// ChunkChecksumStream over the pieces of a chunk cut at `cuts` (offsets,
// ascending): each piece copied (or, with `hash_only_first`, the first piece
// appended in place) from src + src_off into dest + dest_off.
uint64_t StreamCopy(const std::vector<std::byte>& src, size_t src_off, std::vector<std::byte>& dest,
                    size_t dest_off, size_t n, const std::vector<size_t>& cuts,
                    bool hash_only_first = false) {
  ChunkChecksumStream stream;
  size_t begin = 0;
  for (size_t i = 0; i <= cuts.size(); ++i) {
    const size_t end = i < cuts.size() ? cuts[i] : n;
    if (i == 0 && hash_only_first) {
      std::memcpy(dest.data() + dest_off, src.data() + src_off, end);
      stream.Append(std::span<const std::byte>(dest.data() + dest_off, end));
    } else {
      stream.CopyAndAppend(std::span<std::byte>(dest.data() + dest_off + begin, end - begin),
                           src.data() + src_off + begin);
    }
    begin = end;
  }
  return stream.Checksum();
}

// Cuts of n bytes: none, halves, odd-sized pieces, 256 KiB layer slices,
// single bytes around the fused copy's block, an empty piece.
std::vector<std::vector<size_t>> Cuts(size_t n) {
  std::vector<std::vector<size_t>> cuts = {{}, {n / 2}, {0, n}};
  std::vector<size_t> odd;
  for (size_t c = 37; c < n; c = c * 3 + 1) odd.push_back(c);
  cuts.push_back(odd);
  std::vector<size_t> slices;
  for (size_t c = size_t{256} << 10; c < n; c += size_t{256} << 10) slices.push_back(c);
  cuts.push_back(slices);
  if (n > kCopyBlock + 1) cuts.push_back({kCopyBlock - 1, kCopyBlock, kCopyBlock + 1});
  return cuts;
}

// The stream's checksum is the checksum of the concatenation, however the
// chunk is cut, and its copies write exactly dest[0, n) at every alignment.
TEST(ChecksumStreamTest, PiecesGiveTheChecksumOfTheWhole) {
  EXPECT_EQ(ChunkChecksumStream().Checksum(), ChunkChecksum({}));
  for (size_t n : Sizes()) {
    const std::vector<std::byte> src = Random(n + 64, 23 + n);
    for (const std::vector<size_t>& cuts : Cuts(n)) {
      for (size_t src_off : {size_t{0}, size_t{1}, size_t{13}, size_t{32}}) {
        const uint64_t want = XXH3_64bits(src.data() + src_off, n);
        for (size_t dest_off : {size_t{0}, size_t{5}, size_t{31}}) {
          for (bool hash_only_first : {false, true}) {
            std::vector<std::byte> dest(n + 64, std::byte{0xa5});
            EXPECT_EQ(StreamCopy(src, src_off, dest, dest_off, n, cuts, hash_only_first), want)
                << n << " in " << cuts.size() + 1 << " pieces +" << src_off << " -> +"
                << dest_off;
            for (size_t i = 0; i < dest.size(); ++i) {
              const std::byte expected = i >= dest_off && i < dest_off + n
                                             ? src[src_off + i - dest_off]
                                             : std::byte{0xa5};
              if (dest[i] != expected) {
                ADD_FAILURE() << n << " +" << src_off << " -> +" << dest_off << ": byte " << i
                              << " of the destination is wrong";
                break;
              }
            }
          }
        }
      }
      if (n > (size_t{1} << 20)) break;  // the large sizes: one cut of each kind is enough
    }
  }
}

// Checksum() leaves the stream open, and a copy of a stream goes on by
// itself.
TEST(ChecksumStreamTest, ChecksumMidwayAndCopiesAreIndependent) {
  const std::vector<std::byte> a = Random(300001, 1), b = Random(70001, 2);
  std::vector<std::byte> d(a.size() + b.size());
  ChunkChecksumStream stream;
  stream.CopyAndAppend(std::span<std::byte>(d.data(), a.size()), a.data());
  EXPECT_EQ(stream.Checksum(), XXH3_64bits(a.data(), a.size()));
  ChunkChecksumStream fork = stream;
  stream.CopyAndAppend(std::span<std::byte>(d.data() + a.size(), b.size()), b.data());
  EXPECT_EQ(stream.Checksum(), XXH3_64bits(d.data(), d.size()));
  EXPECT_EQ(fork.Checksum(), XXH3_64bits(a.data(), a.size()));
  fork.Append(std::span<const std::byte>(d.data() + a.size(), b.size()));
  EXPECT_EQ(fork.Checksum(), stream.Checksum());
}

// A different byte in any piece changes the checksum.
TEST(ChecksumStreamTest, ADifferentByteChangesTheChecksum) {
  std::vector<std::byte> a(1 << 20, std::byte{1});
  std::vector<std::byte> d(a.size());
  const std::vector<size_t> slices = Cuts(a.size())[4];
  const uint64_t base = StreamCopy(a, 0, d, 0, a.size(), slices);
  for (size_t at : {size_t{0}, (size_t{256} << 10) - 1, size_t{256} << 10, a.size() - 1}) {
    std::vector<std::byte> b = a;
    b[at] = std::byte{2};
    EXPECT_NE(StreamCopy(b, 0, d, 0, b.size(), slices), base) << at;
  }
}

// The variants' stream updates, on a state reset by the library, give the
// library's XXH3 of the pieces at every alignment.
void ExpectStreamVariantAgrees(const char* name,
                               void (*update)(void*, const std::byte*, size_t),
                               void (*copy_and_update)(void*, std::byte*, const std::byte*,
                                                       size_t)) {
  for (size_t n : Sizes()) {
    const std::vector<std::byte> src = Random(n + 64, 31 + n);
    for (size_t src_off : {size_t{0}, size_t{1}, size_t{13}, size_t{32}}) {
      const uint64_t want = XXH3_64bits(src.data() + src_off, n);
      for (size_t dest_off : {size_t{0}, size_t{5}, size_t{31}}) {
        std::vector<std::byte> dest(n + 64, std::byte{0xa5});
        XXH3_state_t state;
        XXH3_INITSTATE(&state);
        XXH3_64bits_reset(&state);
        const size_t half = n / 3;  // a hashed-only piece, then a copied one
        std::memcpy(dest.data() + dest_off, src.data() + src_off, half);
        update(&state, dest.data() + dest_off, half);
        copy_and_update(&state, dest.data() + dest_off + half, src.data() + src_off + half,
                        n - half);
        EXPECT_EQ(XXH3_64bits_digest(&state), want)
            << name << " " << n << " +" << src_off << " -> +" << dest_off;
        for (size_t i = 0; i < dest.size(); ++i) {
          const std::byte expected =
              i >= dest_off && i < dest_off + n ? src[src_off + i - dest_off] : std::byte{0xa5};
          if (dest[i] != expected) {
            ADD_FAILURE() << name << " " << n << " +" << src_off << " -> +" << dest_off
                          << ": byte " << i << " of the destination is wrong";
            break;
          }
        }
      }
    }
  }
}

TEST(ChecksumStreamTest, PortableUpdatesAgreeWithTheLibrary) {
  ExpectStreamVariantAgrees("portable", checksum_internal::UpdatePortable,
                            checksum_internal::CopyAndUpdatePortable);
}

#if defined(__x86_64__)
TEST(ChecksumStreamTest, Avx2UpdatesAgreeWithTheLibrary) {
  if (!checksum_internal::Avx2Available()) GTEST_SKIP() << "this CPU has no AVX2";
  ExpectStreamVariantAgrees("avx2", checksum_internal::UpdateAvx2,
                            checksum_internal::CopyAndUpdateAvx2);
}
#endif

TEST(ChecksumTest, ADifferentByteChangesTheChecksum) {
  std::vector<std::byte> a(300000, std::byte{1});
  std::vector<std::byte> b = a;
  b[200000] = std::byte{2};
  std::vector<std::byte> d(a.size());
  EXPECT_NE(CopyAndChecksum(d, a.data()), CopyAndChecksum(d, b.data()));
}

}  // namespace
}  // namespace strata
