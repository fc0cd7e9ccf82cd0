// Tests for corruption_tester.h: the state machine, that corruption, copies
// and double destruction are detected, the hash, and IsMappedRange. Includes
// the reference's tests (test_corruption_tester, ..._corruption,
// ..._panic_on_drop, test_is_mapped_range) and the test for the fixed QUIRK
// (New objects are bound to their address).
#include "object_alloc_test/corruption_tester.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "gtest/gtest.h"
#include "object_alloc_test/violation.h"

namespace object_alloc_test {
namespace {

using Tester64 = CorruptionTester<64, 8>;

static_assert(sizeof(CorruptionTester<9>) == 9);
static_assert(alignof(CorruptionTester<9>) == 1);
static_assert(sizeof(Tester64) == 64 && alignof(Tester64) == 8);
static_assert(sizeof(CorruptionTester<8192, 8192>) == 8192);
static_assert(alignof(CorruptionTester<8192, 8192>) == 8192);
static_assert(std::is_nothrow_default_constructible_v<Tester64>);

// Raw storage for constructing testers in place, where the test can look at
// the bytes before and after the object's lifetime.
template <class T>
struct Storage {
  alignas(T) unsigned char bytes[sizeof(T)];
  T* Construct() { return ::new (bytes) T(); }
  TesterState State() const { return tester::StateOf(bytes, sizeof(T)); }
};

// Moves a New tester at p to Valid, as the harness does on hand-out.
void MakeValid(void* p, std::size_t size) {
  std::uint64_t ph = 0;
  ASSERT_EQ(tester::StateOf(p, size, &ph), TesterState::kNew);
  tester::SetState(p, TesterState::kValid, ph);
}

TEST(CorruptionTesterTest, LifeCycle) {
  Storage<Tester64> s;
  Tester64* t = s.Construct();
  EXPECT_EQ(t->state(), TesterState::kNew);
  MakeValid(t, sizeof(*t));
  EXPECT_EQ(t->state(), TesterState::kValid);
  t->~Tester64();
  EXPECT_EQ(s.State(), TesterState::kDropped);
}

TEST(CorruptionTesterTest, DestroyingANewObjectIsFine) {
  // An allocator may construct objects it never hands out.
  ScopedViolationCapture capture;
  Storage<Tester64> s;
  s.Construct()->~Tester64();
  EXPECT_EQ(s.State(), TesterState::kDropped);
  EXPECT_FALSE(capture.has_violation());
}

TEST(CorruptionTesterTest, EveryByteIsCovered) {
  // Any single-byte change anywhere (header or payload) makes the object
  // Invalid, in every state, at the smallest size and a larger one.
  for (std::size_t size : {std::size_t{9}, std::size_t{61}, std::size_t{64}}) {
    std::vector<unsigned char> buf(size + 8);
    void* p = buf.data();
    for (TesterState st : {TesterState::kNew, TesterState::kValid}) {
      for (std::size_t i = 0; i < size; ++i) {
        tester::Construct(p, size, st);
        ASSERT_EQ(tester::StateOf(p, size), st);
        static_cast<unsigned char*>(p)[i] ^= 0x01;
        EXPECT_EQ(tester::StateOf(p, size), TesterState::kInvalid)
            << "size " << size << ", byte " << i << " flipped";
      }
    }
  }
}

TEST(CorruptionTesterTest, CopyOfValidObjectIsInvalid) {
  // The reference's test_corruption_tester_corruption.
  Storage<Tester64> a, b;
  Tester64* ta = a.Construct();
  Tester64* tb = b.Construct();
  MakeValid(ta, sizeof(*ta));
  MakeValid(tb, sizeof(*tb));
  std::memcpy(b.bytes, a.bytes, sizeof(a.bytes));
  EXPECT_EQ(a.State(), TesterState::kValid);
  EXPECT_EQ(b.State(), TesterState::kInvalid);
}

TEST(CorruptionTesterTest, CopyOfNewObjectIsInvalid) {
  // Fixed QUIRK: the reference hashed New objects built by Default with
  // address 0, so copying one New object over another was not detected.
  Storage<Tester64> a, b;
  a.Construct();
  b.Construct();
  std::memcpy(b.bytes, a.bytes, sizeof(a.bytes));
  EXPECT_EQ(a.State(), TesterState::kNew);
  EXPECT_EQ(b.State(), TesterState::kInvalid);
}

TEST(CorruptionTesterTest, CopyConstructionMakesAFreshObject) {
  Storage<Tester64> a, b;
  Tester64* ta = a.Construct();
  MakeValid(ta, sizeof(*ta));
  Tester64* tb = ::new (b.bytes) Tester64(*ta);
  EXPECT_EQ(ta->state(), TesterState::kValid) << "the source is untouched";
  EXPECT_EQ(tb->state(), TesterState::kNew) << "the copy is a new object";
  tb->~Tester64();
  ta->~Tester64();
}

TEST(CorruptionTesterTest, StatesAreDistinguishable) {
  Storage<Tester64> s;
  s.Construct()->~Tester64();
  EXPECT_EQ(s.State(), TesterState::kDropped);
  // A Dropped object cannot pass for Valid by rewriting the nonce alone.
  std::memcpy(s.bytes, &kNonceValid, sizeof(kNonceValid));
  EXPECT_EQ(s.State(), TesterState::kInvalid);
  std::memset(s.bytes, 0, sizeof(s.bytes));
  EXPECT_EQ(s.State(), TesterState::kInvalid) << "zeroed memory";
}

TEST(CorruptionTesterTest, DestroyTwiceIsReported) {
  ScopedViolationCapture capture;
  Storage<Tester64> s;
  Tester64* t = s.Construct();
  t->~Tester64();
  EXPECT_FALSE(capture.has_violation());
  t->~Tester64();
  ASSERT_TRUE(capture.has_violation());
  EXPECT_EQ(capture.first()->kind, ViolationKind::kBadDestroy);
  EXPECT_EQ(capture.first()->address, reinterpret_cast<std::uintptr_t>(t));
  EXPECT_EQ(s.State(), TesterState::kDropped) << "left alone";
}

TEST(CorruptionTesterTest, DestroyingUnconstructedMemoryIsReported) {
  // The reference's ..._panic_on_drop, with the report captured.
  ScopedViolationCapture capture;
  Storage<Tester64> s;
  std::memset(s.bytes, 0, sizeof(s.bytes));
  reinterpret_cast<Tester64*>(s.bytes)->~Tester64();
  ASSERT_TRUE(capture.has_violation());
  EXPECT_EQ(capture.first()->kind, ViolationKind::kBadDestroy);
  EXPECT_NE(capture.first()->message.find("Invalid"), std::string::npos);
}

TEST(CorruptionTesterDeathTest, UncapturedViolationAborts) {
  // The reference's ..._panic_on_drop: with no harness listening, a bad
  // destruction stops the program with its message.
  EXPECT_DEATH(
      {
        Storage<Tester64> s;
        std::memset(s.bytes, 0, sizeof(s.bytes));
        reinterpret_cast<Tester64*>(s.bytes)->~Tester64();
      },
      "bad-destroy");
}

TEST(HashBytesTest, DeterministicAndSensitive) {
  std::vector<unsigned char> data(100);
  for (std::size_t i = 0; i < data.size(); ++i) {
    data[i] = static_cast<unsigned char>(i * 7);
  }
  EXPECT_EQ(HashBytes(data.data(), 100, 1), HashBytes(data.data(), 100, 1));
  EXPECT_NE(HashBytes(data.data(), 100, 1), HashBytes(data.data(), 100, 2));
  // Length matters even when the extra byte is zero.
  data[50] = 0;
  EXPECT_NE(HashBytes(data.data(), 50, 1), HashBytes(data.data(), 51, 1));
  // Every single-bit flip in every length up to 100 changes the hash: all
  // 8 * n variants of each length hash differently from each other and from
  // the original.
  for (std::size_t n = 1; n <= 100; ++n) {
    std::set<std::uint64_t> hashes = {HashBytes(data.data(), n, 0)};
    for (std::size_t i = 0; i < n; ++i) {
      for (int bit = 0; bit < 8; ++bit) {
        data[i] ^= static_cast<unsigned char>(1 << bit);
        hashes.insert(HashBytes(data.data(), n, 0));
        data[i] ^= static_cast<unsigned char>(1 << bit);
      }
    }
    EXPECT_EQ(hashes.size(), 8 * n + 1) << "length " << n;
  }
}

TEST(IsMappedRangeTest, HeapAndStackAreMapped) {
  // The reference's test_is_mapped_range.
  auto heap = std::make_unique<std::uint64_t[]>(100);
  EXPECT_TRUE(IsMappedRange(heap.get(), 100 * sizeof(std::uint64_t)));
  int local = 0;
  EXPECT_TRUE(IsMappedRange(&local, sizeof(local)));
  EXPECT_TRUE(IsMappedRange(&local, 0));
  EXPECT_FALSE(IsMappedRange(reinterpret_cast<void*>(1), 1));
}

TEST(IsMappedRangeTest, UnmappedAndProtectedPages) {
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  void* m = ::mmap(nullptr, 3 * page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(m, MAP_FAILED);
  auto* base = static_cast<unsigned char*>(m);
  EXPECT_TRUE(IsMappedRange(base, 3 * page));
  // The last page becomes unreadable, then the middle one goes away.
  ASSERT_EQ(::mprotect(base + 2 * page, page, PROT_NONE), 0);
  EXPECT_TRUE(IsMappedRange(base, 2 * page));
  EXPECT_FALSE(IsMappedRange(base + 2 * page, 1)) << "PROT_NONE";
  EXPECT_FALSE(IsMappedRange(base + page, page + 1)) << "spans into it";
  ASSERT_EQ(::munmap(base + page, page), 0);
  EXPECT_TRUE(IsMappedRange(base, page));
  EXPECT_FALSE(IsMappedRange(base + page, 1)) << "unmapped";
  EXPECT_FALSE(IsMappedRange(base + page - 8, 16)) << "straddles the hole";
  unsigned char copy[16];
  EXPECT_FALSE(CopyMemory(base + page - 8, 16, copy)) << "straddles the hole";
  EXPECT_FALSE(internal::CopyThroughPipe(base + page - 8, 16, copy));
  ASSERT_EQ(::munmap(base, page), 0);
  ASSERT_EQ(::munmap(base + 2 * page, page), 0);
}

TEST(CopyMemoryTest, CopiesReadableMemory) {
  std::vector<unsigned char> src(3 * 4096 + 123);
  for (std::size_t i = 0; i < src.size(); ++i) {
    src[i] = static_cast<unsigned char>(i * 31 + 7);
  }
  std::vector<unsigned char> a(src.size()), b(src.size());
  ASSERT_TRUE(CopyMemory(src.data(), src.size(), a.data()));
  EXPECT_EQ(a, src);
  // The pipe fallback, in chunks of at most a page.
  ASSERT_TRUE(internal::CopyThroughPipe(src.data(), src.size(), b.data()));
  EXPECT_EQ(b, src);
  EXPECT_TRUE(CopyMemory(src.data(), 0, a.data()));
  EXPECT_FALSE(CopyMemory(reinterpret_cast<void*>(8), 8, a.data()));
}

TEST(CopyMemoryTest, StateOfCopyUsesTheOriginalAddress) {
  Storage<Tester64> s;
  Tester64* t = s.Construct();
  MakeValid(t, sizeof(*t));
  unsigned char copy[sizeof(Tester64)];
  ASSERT_TRUE(CopyMemory(s.bytes, sizeof(s.bytes), copy));
  EXPECT_EQ(tester::StateOfCopy(copy, sizeof(copy), s.bytes),
            TesterState::kValid);
  EXPECT_EQ(tester::StateOf(copy, sizeof(copy)), TesterState::kInvalid)
      << "at the copy's own address it is a copy";
  t->~Tester64();
}

TEST(CopyMemoryTest, ReadsFreedHeapMemoryWithoutSanitizerReports) {
  // What the after-destruction check does with memory an allocator gave
  // back to the C heap. Under ASan/TSan an ordinary read here would be a
  // use-after-free report; the kernel's copy is not.
  auto* p = new std::uint64_t[64];
  p[10] = 42;
  // volatile: the address outlives the block on purpose, and GCC's
  // -Wuse-after-free would otherwise follow it through the integer.
  volatile std::uintptr_t addr = reinterpret_cast<std::uintptr_t>(p);
  delete[] p;
  unsigned char copy[64 * 8];
  EXPECT_TRUE(CopyMemory(reinterpret_cast<void*>(addr), sizeof(copy), copy));
}

}  // namespace
}  // namespace object_alloc_test
