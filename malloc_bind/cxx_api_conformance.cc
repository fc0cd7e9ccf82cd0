// The C++ operator conformance suite declared in cxx_api_conformance.h.
//
// New handlers are plain function pointers, so their state lives in globals
// (g_handler); HandlerScope installs a handler for one test and restores the
// previous one. Every test runs each check for the scalar and the array
// forms.
#include "malloc_bind/cxx_api_conformance.h"

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <new>
#include <ostream>
#include <vector>

#include "gtest/gtest.h"

namespace malloc_bind {

void PrintTo(const CxxApi& api, std::ostream* os) {
  *os << "CxxApi(" << api.name << ")";
}

CxxApi ProcessCxxApi() {
  CxxApi api;
  api.name = "process";
  CxxOps& s = api.scalar;
  s.new_ = [](std::size_t n) { return ::operator new(n); };
  s.new_nothrow = [](std::size_t n) { return ::operator new(n, std::nothrow); };
  s.new_aligned = [](std::size_t n, std::align_val_t al) {
    return ::operator new(n, al);
  };
  s.new_aligned_nothrow = [](std::size_t n, std::align_val_t al) {
    return ::operator new(n, al, std::nothrow);
  };
  s.delete_ = [](void* p) { ::operator delete(p); };
  s.delete_nothrow = [](void* p) { ::operator delete(p, std::nothrow); };
#if defined(__cpp_sized_deallocation)
  s.delete_sized = [](void* p, std::size_t n) { ::operator delete(p, n); };
#else  // e.g. clang without -fsized-deallocation: no sized form to call
  s.delete_sized = [](void* p, std::size_t) { ::operator delete(p); };
#endif
  s.delete_aligned = [](void* p, std::align_val_t al) {
    ::operator delete(p, al);
  };
  s.delete_aligned_nothrow = [](void* p, std::align_val_t al) {
    ::operator delete(p, al, std::nothrow);
  };
#if defined(__cpp_sized_deallocation)
  s.delete_aligned_sized = [](void* p, std::size_t n, std::align_val_t al) {
    ::operator delete(p, n, al);
  };
#else
  s.delete_aligned_sized = [](void* p, std::size_t, std::align_val_t al) {
    ::operator delete(p, al);
  };
#endif
  CxxOps& a = api.array;
  a.new_ = [](std::size_t n) { return ::operator new[](n); };
  a.new_nothrow = [](std::size_t n) {
    return ::operator new[](n, std::nothrow);
  };
  a.new_aligned = [](std::size_t n, std::align_val_t al) {
    return ::operator new[](n, al);
  };
  a.new_aligned_nothrow = [](std::size_t n, std::align_val_t al) {
    return ::operator new[](n, al, std::nothrow);
  };
  a.delete_ = [](void* p) { ::operator delete[](p); };
  a.delete_nothrow = [](void* p) { ::operator delete[](p, std::nothrow); };
#if defined(__cpp_sized_deallocation)
  a.delete_sized = [](void* p, std::size_t n) { ::operator delete[](p, n); };
#else
  a.delete_sized = [](void* p, std::size_t) { ::operator delete[](p); };
#endif
  a.delete_aligned = [](void* p, std::align_val_t al) {
    ::operator delete[](p, al);
  };
  a.delete_aligned_nothrow = [](void* p, std::align_val_t al) {
    ::operator delete[](p, al, std::nothrow);
  };
#if defined(__cpp_sized_deallocation)
  a.delete_aligned_sized = [](void* p, std::size_t n, std::align_val_t al) {
    ::operator delete[](p, n, al);
  };
#else
  a.delete_aligned_sized = [](void* p, std::size_t, std::align_val_t al) {
    ::operator delete[](p, al);
  };
#endif
  return api;
}

namespace {

constexpr std::size_t kSizeMax = std::numeric_limits<std::size_t>::max();
constexpr std::size_t kPtrdiffMax =
    static_cast<std::size_t>(std::numeric_limits<std::ptrdiff_t>::max());
constexpr std::size_t kMiB = std::size_t{1} << 20;

// Sizes that always fail. The first ones cannot wrap when rounded up to an
// alignment; the last ones can (see aligned_new_checks_overflow).
constexpr std::size_t kHugeNoWrap[] = {kPtrdiffMax + 1, kPtrdiffMax,
                                       kPtrdiffMax - 4095,
                                       std::size_t{1} << 62};
constexpr std::size_t kHugeMayWrap[] = {kSizeMax, kSizeMax - 10,
                                        kSizeMax - 4095};

bool IsAligned(const void* p, std::size_t a) {
  return reinterpret_cast<std::uintptr_t>(p) % a == 0;
}

std::size_t DefaultAlignment(std::size_t n) {
  if (n == 0) return 1;
  return std::min<std::size_t>(__STDCPP_DEFAULT_NEW_ALIGNMENT__,
                               std::bit_floor(n));
}

struct Form {
  const char* name;
  const CxxOps* ops;
};

std::vector<Form> Forms(const CxxApi& api) {
  return {{"scalar", &api.scalar}, {"array", &api.array}};
}

// ------------------------------------------------------------ new handlers

struct HandlerState {
  int calls = 0;
  int uninstall_after = 0;  // CountingHandler uninstalls itself after this
  void* reserve = nullptr;  // ReserveHandler frees it
  void (*reserve_delete)(void*) = nullptr;
};
HandlerState g_handler;

struct Oops {};  // what ThrowingHandler throws

void CountingHandler() {
  ++g_handler.calls;
  if (g_handler.uninstall_after > 0 &&
      g_handler.calls >= g_handler.uninstall_after) {
    std::set_new_handler(nullptr);
  }
}

void ThrowingHandler() {
  ++g_handler.calls;
  throw Oops{};
}

void ThrowingBadAllocHandler() {
  ++g_handler.calls;
  throw std::bad_alloc();
}

// Frees the reserve and uninstalls itself: the classic "emergency pool".
void ReserveHandler() {
  ++g_handler.calls;
  if (g_handler.reserve != nullptr) {
    g_handler.reserve_delete(g_handler.reserve);
    g_handler.reserve = nullptr;
  }
  std::set_new_handler(nullptr);
}

// Installs `h` (with fresh state) for its lifetime.
class HandlerScope {
 public:
  explicit HandlerScope(std::new_handler h, int uninstall_after = 0) {
    g_handler = HandlerState{};
    g_handler.uninstall_after = uninstall_after;
    previous_ = std::set_new_handler(h);
  }
  ~HandlerScope() { std::set_new_handler(previous_); }
  HandlerScope(const HandlerScope&) = delete;
  HandlerScope& operator=(const HandlerScope&) = delete;

 private:
  std::new_handler previous_;
};

// Clears injected failures at the end of a test, whatever happened.
class FaultScope {
 public:
  explicit FaultScope(const CxxApi& api) : api_(api) {}
  ~FaultScope() { api_.fail_next_allocations(0); }
  void FailNext(int n) { api_.fail_next_allocations(n); }
  FaultScope(const FaultScope&) = delete;
  FaultScope& operator=(const FaultScope&) = delete;

 private:
  const CxxApi& api_;
};

void ExpectUsable(const CxxApi& api, void* p, std::size_t n, std::size_t align,
                  const char* what) {
  ASSERT_NE(p, nullptr) << what;
  EXPECT_TRUE(IsAligned(p, align)) << what << " n=" << n << " align=" << align;
  if (api.usable_size != nullptr) {
    EXPECT_GE(api.usable_size(p), n) << what;
  }
  std::memset(p, 0xC3, n);
}

// ------------------------------------------------------------------- tests

TEST_P(CxxApiConformanceTest, NewReturnsAlignedWritableBlocks) {
  const CxxApi& api = GetParam();
  for (const Form& f : Forms(api)) {
    int i = 0;
    for (std::size_t n : {0, 1, 8, 16, 24, 100, 4096, 65537, 2 << 20}) {
      void* p = f.ops->new_(n);
      ExpectUsable(api, p, n, DefaultAlignment(n), f.name);
      // Alternate between the delete forms that match plain new.
      switch (i++ % 3) {
        case 0: f.ops->delete_(p); break;
        case 1: f.ops->delete_sized(p, n); break;
        default: f.ops->delete_nothrow(p); break;
      }
      void* q = f.ops->new_nothrow(n);
      ExpectUsable(api, q, n, DefaultAlignment(n), f.name);
      f.ops->delete_sized(q, n);
    }
  }
}

TEST_P(CxxApiConformanceTest, NewZeroReturnsUniqueBlocks) {
  const CxxApi& api = GetParam();
  for (const Form& f : Forms(api)) {
    std::vector<void*> blocks;
    for (int i = 0; i < 32; ++i) {
      blocks.push_back(f.ops->new_(0));
      blocks.push_back(f.ops->new_nothrow(0));
      blocks.push_back(f.ops->new_aligned(0, std::align_val_t{64}));
      blocks.push_back(f.ops->new_aligned_nothrow(0, std::align_val_t{64}));
    }
    std::vector<void*> sorted = blocks;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(sorted.front() == nullptr, false) << f.name;
    EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end())
        << f.name << ": new(0) returned the same block twice";
    for (std::size_t i = 0; i < blocks.size(); i += 4) {
      f.ops->delete_(blocks[i]);
      f.ops->delete_sized(blocks[i + 1], 0);
      f.ops->delete_aligned(blocks[i + 2], std::align_val_t{64});
      f.ops->delete_aligned_sized(blocks[i + 3], 0, std::align_val_t{64});
    }
  }
}

TEST_P(CxxApiConformanceTest, AlignedNewHonoursEveryPowerOfTwo) {
  const CxxApi& api = GetParam();
  for (const Form& f : Forms(api)) {
    int i = 0;
    for (std::size_t a = 1; a <= 4 * kMiB; a *= 2) {
      const std::align_val_t al{a};
      for (std::size_t n : {std::size_t{1}, a + 1}) {
        void* p = f.ops->new_aligned(n, al);
        ExpectUsable(api, p, n, a, f.name);
        switch (i++ % 3) {
          case 0: f.ops->delete_aligned(p, al); break;
          case 1: f.ops->delete_aligned_sized(p, n, al); break;
          default: f.ops->delete_aligned_nothrow(p, al); break;
        }
        void* q = f.ops->new_aligned_nothrow(n, al);
        ExpectUsable(api, q, n, a, f.name);
        f.ops->delete_aligned_sized(q, n, al);
      }
    }
  }
}

TEST_P(CxxApiConformanceTest, DeleteOfNullIsANoOp) {
  const CxxApi& api = GetParam();
  for (const Form& f : Forms(api)) {
    f.ops->delete_(nullptr);
    f.ops->delete_nothrow(nullptr);
    f.ops->delete_sized(nullptr, 10);
    f.ops->delete_aligned(nullptr, std::align_val_t{64});
    f.ops->delete_aligned_nothrow(nullptr, std::align_val_t{64});
    f.ops->delete_aligned_sized(nullptr, 10, std::align_val_t{64});
  }
}

// No handler installed: the throwing forms throw bad_alloc, the nothrow
// forms return nullptr.
TEST_P(CxxApiConformanceTest, HugeRequestsThrowBadAllocOrReturnNull) {
  const CxxApi& api = GetParam();
  HandlerScope none(nullptr);
  for (const Form& f : Forms(api)) {
    for (std::size_t n : kHugeNoWrap) {
      EXPECT_THROW(f.ops->new_(n), std::bad_alloc) << f.name << " " << n;
      EXPECT_EQ(f.ops->new_nothrow(n), nullptr) << f.name << " " << n;
      EXPECT_THROW(f.ops->new_aligned(n, std::align_val_t{64}),
                   std::bad_alloc)
          << f.name << " " << n;
      EXPECT_EQ(f.ops->new_aligned_nothrow(n, std::align_val_t{4096}),
                nullptr)
          << f.name << " " << n;
    }
    for (std::size_t n : kHugeMayWrap) {
      EXPECT_THROW(f.ops->new_(n), std::bad_alloc) << f.name << " " << n;
      EXPECT_EQ(f.ops->new_nothrow(n), nullptr) << f.name << " " << n;
      if (!api.aligned_new_checks_overflow) continue;
      EXPECT_THROW(f.ops->new_aligned(n, std::align_val_t{64}),
                   std::bad_alloc)
          << f.name << " " << n;
      EXPECT_EQ(f.ops->new_aligned_nothrow(n, std::align_val_t{64}), nullptr)
          << f.name << " " << n;
    }
  }
  EXPECT_EQ(g_handler.calls, 0);
}

// The handler runs once per failed attempt, until it uninstalls itself;
// then the throwing forms throw bad_alloc and the nothrow forms return null.
TEST_P(CxxApiConformanceTest, NewHandlerIsCalledUntilItUninstallsItself) {
  const CxxApi& api = GetParam();
  for (const Form& f : Forms(api)) {
    {
      HandlerScope h(&CountingHandler, 3);
      EXPECT_THROW(f.ops->new_(kPtrdiffMax + 1), std::bad_alloc) << f.name;
      EXPECT_EQ(g_handler.calls, 3) << f.name;
    }
    {
      HandlerScope h(&CountingHandler, 4);
      EXPECT_EQ(f.ops->new_nothrow(kPtrdiffMax + 1), nullptr) << f.name;
      EXPECT_EQ(g_handler.calls, 4) << f.name;
    }
    {
      HandlerScope h(&CountingHandler, 2);
      EXPECT_THROW(f.ops->new_aligned(kPtrdiffMax, std::align_val_t{128}),
                   std::bad_alloc)
          << f.name;
      EXPECT_EQ(g_handler.calls, 2) << f.name;
    }
    {
      HandlerScope h(&CountingHandler, 5);
      EXPECT_EQ(
          f.ops->new_aligned_nothrow(kPtrdiffMax, std::align_val_t{128}),
          nullptr)
          << f.name;
      EXPECT_EQ(g_handler.calls, 5) << f.name;
    }
  }
}

// A handler's exception leaves the throwing forms; the nothrow forms turn
// it into nullptr.
TEST_P(CxxApiConformanceTest, ThrowingNewHandlerPropagatesOrYieldsNull) {
  const CxxApi& api = GetParam();
  for (const Form& f : Forms(api)) {
    {
      HandlerScope h(&ThrowingHandler);
      EXPECT_THROW(f.ops->new_(kPtrdiffMax + 1), Oops) << f.name;
      EXPECT_THROW(f.ops->new_aligned(kPtrdiffMax + 1, std::align_val_t{64}),
                   Oops)
          << f.name;
      EXPECT_EQ(g_handler.calls, 2) << f.name;
      EXPECT_EQ(f.ops->new_nothrow(kPtrdiffMax + 1), nullptr) << f.name;
      EXPECT_EQ(f.ops->new_aligned_nothrow(kPtrdiffMax + 1,
                                           std::align_val_t{64}),
                nullptr)
          << f.name;
      EXPECT_EQ(g_handler.calls, 4) << f.name;
    }
    {
      HandlerScope h(&ThrowingBadAllocHandler);
      EXPECT_THROW(f.ops->new_(kPtrdiffMax + 1), std::bad_alloc) << f.name;
      EXPECT_EQ(f.ops->new_nothrow(kPtrdiffMax + 1), nullptr) << f.name;
      EXPECT_EQ(g_handler.calls, 2) << f.name;
    }
  }
}

// A non-power-of-two alignment is a failure (libstdc++: bad_alloc at once,
// no handler: freeing memory cannot make the request valid).
TEST_P(CxxApiConformanceTest, InvalidAlignmentFailsWithoutCallingHandler) {
  const CxxApi& api = GetParam();
  HandlerScope h(&CountingHandler, 1000);
  for (const Form& f : Forms(api)) {
    for (std::size_t a : {std::size_t{0}, std::size_t{3}, std::size_t{24},
                          std::size_t{100}, kSizeMax}) {
      EXPECT_THROW(f.ops->new_aligned(16, std::align_val_t{a}),
                   std::bad_alloc)
          << f.name << " align " << a;
      EXPECT_EQ(f.ops->new_aligned_nothrow(16, std::align_val_t{a}), nullptr)
          << f.name << " align " << a;
    }
  }
  EXPECT_EQ(g_handler.calls, 0);
}

// ------------------------------------------------- with fault injection

// One injected failure, no handler: bad_alloc / nullptr; the next attempt
// succeeds (the failure was consumed).
TEST_P(CxxApiConformanceTest, InjectedFailureWithoutHandler) {
  const CxxApi& api = GetParam();
  if (api.fail_next_allocations == nullptr) GTEST_SKIP() << "no injection";
  FaultScope faults(api);
  HandlerScope none(nullptr);
  for (const Form& f : Forms(api)) {
    faults.FailNext(1);
    EXPECT_THROW(f.ops->new_(100), std::bad_alloc) << f.name;
    void* p = f.ops->new_(100);
    ASSERT_NE(p, nullptr);
    f.ops->delete_(p);
    faults.FailNext(1);
    EXPECT_EQ(f.ops->new_nothrow(100), nullptr) << f.name;
    faults.FailNext(1);
    EXPECT_THROW(f.ops->new_aligned(100, std::align_val_t{256}),
                 std::bad_alloc)
        << f.name;
    faults.FailNext(1);
    EXPECT_EQ(f.ops->new_aligned_nothrow(100, std::align_val_t{256}), nullptr)
        << f.name;
  }
}

// The handler frees an emergency reserve and uninstalls itself: the retry
// succeeds, after exactly one handler call.
TEST_P(CxxApiConformanceTest, HandlerThatFreesAReserveLetsTheRetrySucceed) {
  const CxxApi& api = GetParam();
  if (api.fail_next_allocations == nullptr) GTEST_SKIP() << "no injection";
  FaultScope faults(api);
  for (const Form& f : Forms(api)) {
    using NewFn = void* (*)(const CxxOps&);
    const NewFn news[] = {
        [](const CxxOps& o) { return o.new_(1000); },
        [](const CxxOps& o) { return o.new_nothrow(1000); },
        [](const CxxOps& o) {
          return o.new_aligned(1000, std::align_val_t{512});
        },
        [](const CxxOps& o) {
          return o.new_aligned_nothrow(1000, std::align_val_t{512});
        },
    };
    for (NewFn make : news) {
      HandlerScope h(&ReserveHandler);
      g_handler.reserve = f.ops->new_(64 * 1024);
      g_handler.reserve_delete = f.ops->delete_;
      faults.FailNext(1);
      void* p = make(*f.ops);
      ASSERT_NE(p, nullptr) << f.name;
      EXPECT_EQ(g_handler.calls, 1) << f.name;
      EXPECT_EQ(g_handler.reserve, nullptr) << "the handler freed it";
      EXPECT_EQ(std::get_new_handler(), nullptr) << "and uninstalled itself";
      std::memset(p, 1, 1000);
      f.ops->delete_(p);
    }
  }
}

// N injected failures, a handler that stays installed: called exactly N
// times, then the allocation succeeds.
TEST_P(CxxApiConformanceTest, HandlerIsCalledOncePerFailedAttempt) {
  const CxxApi& api = GetParam();
  if (api.fail_next_allocations == nullptr) GTEST_SKIP() << "no injection";
  FaultScope faults(api);
  for (const Form& f : Forms(api)) {
    for (int n : {1, 2, 5}) {
      HandlerScope h(&CountingHandler);
      faults.FailNext(n);
      void* p = f.ops->new_(48);
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(g_handler.calls, n) << f.name;
      f.ops->delete_sized(p, 48);

      g_handler.calls = 0;
      faults.FailNext(n);
      p = f.ops->new_nothrow(48);
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(g_handler.calls, n) << f.name;
      f.ops->delete_(p);

      g_handler.calls = 0;
      faults.FailNext(n);
      p = f.ops->new_aligned(48, std::align_val_t{1024});
      ASSERT_NE(p, nullptr);
      EXPECT_TRUE(IsAligned(p, 1024));
      EXPECT_EQ(g_handler.calls, n) << f.name;
      f.ops->delete_aligned_sized(p, 48, std::align_val_t{1024});

      g_handler.calls = 0;
      faults.FailNext(n);
      p = f.ops->new_aligned_nothrow(48, std::align_val_t{1024});
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(g_handler.calls, n) << f.name;
      f.ops->delete_aligned(p, std::align_val_t{1024});
    }
  }
}

}  // namespace
}  // namespace malloc_bind
