// object_alloc_test: the reusable correctness suites for object allocators.
//
// A package instantiates them with one line per allocator configuration (see
// README.md for every form):
//
//   // A typed allocator template, default-constructed, at all 47 sizes and
//   // every valid alignment up to a page:
//   OBJECT_ALLOC_TEST_SUITE(Heap, object_alloc_test::TypedCases<
//       object_alloc_test::DefaultConstructed<object_alloc::HeapObjectAlloc>>());
//
//   // An untyped allocator built by a factory from a Layout, same sweep:
//   OBJECT_ALLOC_TEST_SUITE(HeapUntyped, object_alloc_test::UntypedCases(
//       [](object_alloc::Layout l) {
//         return std::make_unique<object_alloc::HeapUntypedObjectAlloc>(l);
//       }));
//
//   // An untyped allocator whose layout is fixed by its factory:
//   OBJECT_ALLOC_TEST_SUITE(Pages, object_alloc_test::FixedLayoutCase([] {
//     return std::make_unique<mmap_alloc::PageObjectAlloc>(...);
//   }));
//
//   // The multi-threaded suite, for allocators with kThreadSafe = true (any
//   // of the case lists above; it runs a subset of their sizes):
//   OBJECT_ALLOC_TEST_THREADED_SUITE(Heap, object_alloc_test::TypedCases<...>());
//
// Write these at namespace scope, outside namespace object_alloc_test (the
// macros bring the suite names in with using-declarations), and link with
// //object_alloc_test.
//
// Typed allocators are instantiated for carrier types Carrier<N, A>: a
// CorruptionTester<N, A> when N >= 9, else Bytes<N, A>. A typed *policy*
// names the allocator for a carrier T and says how to build it:
//
//   struct MyPolicy {
//     template <class T>
//     using Alloc = MyAlloc<T>;                         // required
//     static constexpr std::size_t kMaxAlign = 4096;   // optional (4096)
//     static constexpr std::size_t kMaxSize = 8192;    // optional (8192)
//     template <class T>                               // optional; without
//     static MyAlloc<T>* New(object_alloc_test::TestEnv& env);  // it: new
//   };                                                 // Alloc<T>()
//
// New may also take no argument; the harness owns what it returns (delete).
// TestEnv::leaky() is a LeakyAlloc that outlives the allocator (use it as
// backing memory where the allocator allows). DefaultConstructed<A> and
// LeakyConstructed<A> below are the two common policies. (A raw pointer
// rather than a std::unique_ptr because a policy is instantiated for ~200
// carrier types, and a unique_ptr per type makes that several times slower
// to compile.)
//
// Each case runs:
//   ObjectAllocTest.RandomOps     seeded random alloc/free sequence
//                                 (OBJECT_ALLOC_TEST_ITERS operations for the
//                                 base alignment of each size, a tenth of
//                                 that for the other alignments), then the
//                                 teardown and after-destruction checks.
//   ObjectAllocTest.FillAndDrain  4 rounds of filling up to 512 objects
//                                 (bounded by 256 KiB) and freeing them all in
//                                 random order: large live sets and reuse.
//   ThreadedObjectAllocTest.RandomOpsAcrossThreads
//                                 OBJECT_ALLOC_TEST_THREADS threads (default
//                                 4) share the allocator, each running
//                                 OBJECT_ALLOC_TEST_THREADED_ITERS operations
//                                 (default 25000), and pass objects to each
//                                 other to be freed.
// What each check catches is in harness.h; failures print the kind of
// violation, the seed, the failing operation and a shrunk replay.
#ifndef OBJECT_ALLOC_TEST_OBJECT_ALLOC_TEST_H_
#define OBJECT_ALLOC_TEST_OBJECT_ALLOC_TEST_H_

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "object_alloc/interface.h"
#include "object_alloc/object_alloc.h"
#include "object_alloc_test/corruption_tester.h"
#include "object_alloc_test/harness.h"
#include "object_alloc_test/leaky_alloc.h"
#include "object_alloc_test/types.h"
#include "object_alloc_test/version.h"

namespace object_alloc_test {

// The fixtures. Their tests live in object_alloc_test.cc.
class ObjectAllocTest : public ::testing::TestWithParam<AllocCase> {};
class ThreadedObjectAllocTest : public ::testing::TestWithParam<AllocCase> {};

// The bodies of the suites' tests, for callers that build their own cases or
// sequences: run, and on a violation add a gtest failure that names the kind,
// the seed (and how to rerun), the failing operation, the operations before
// it and a shrunk failing sequence. Setup errors fail too. Return the result.
RunResult CheckSequence(const AllocCase& c, const SuiteOptions& options,
                        std::string_view test, std::span<const Op> ops,
                        std::uint64_t seed);
RunResult CheckThreaded(const AllocCase& c, const SuiteOptions& options,
                        const ThreadedOptions& threaded);

// gtest parameter names and printing.
std::string CaseName(const ::testing::TestParamInfo<AllocCase>& info);
void PrintTo(const AllocCase& c, std::ostream* os);

// "Size64Align8".
std::string LayoutName(object_alloc::Layout layout);

// The sizes the threaded suite runs (at each size's base alignment).
inline constexpr std::size_t kThreadedSizes[] = {1, 16, 64, 157, 1024, 4096};

// The cases of `cases` that the threaded suite runs: a single case is kept
// as is; of a sweep, the base alignment of each size in kThreadedSizes.
std::vector<AllocCase> ThreadedSubset(std::vector<AllocCase> cases);

// The object type a typed allocator is instantiated for, per size and
// alignment.
template <std::size_t N, std::size_t A>
using Carrier = std::conditional_t<(N >= kMinTesterSize),
                                   CorruptionTester<N, A>, Bytes<N, A>>;

// Policy: the allocator template A, default-constructed.
template <template <class> class A, std::size_t kMaxAlignment = kDefaultMaxAlign,
          std::size_t kMaxObjectSize = kMaxSize>
struct DefaultConstructed {
  template <class T>
  using Alloc = A<T>;
  static constexpr std::size_t kMaxAlign = kMaxAlignment;
  static constexpr std::size_t kMaxSize = kMaxObjectSize;
};

// Policy: the allocator template A, constructed from the run's LeakyAlloc
// (A<T>(LeakyAlloc&)).
template <template <class> class A, std::size_t kMaxAlignment = kDefaultMaxAlign,
          std::size_t kMaxObjectSize = kMaxSize>
struct LeakyConstructed {
  template <class T>
  using Alloc = A<T>;
  static constexpr std::size_t kMaxAlign = kMaxAlignment;
  static constexpr std::size_t kMaxSize = kMaxObjectSize;
  template <class T>
  static A<T>* New(TestEnv& env) {
    return new A<T>(env.leaky());
  }
};

namespace internal {

template <class P>
constexpr std::size_t PolicyMaxAlign() {
  if constexpr (requires { P::kMaxAlign; }) {
    return P::kMaxAlign;
  } else {
    return kDefaultMaxAlign;
  }
}

template <class P>
constexpr std::size_t PolicyMaxSize() {
  if constexpr (requires { P::kMaxSize; }) {
    return P::kMaxSize;
  } else {
    return kMaxSize;
  }
}

template <class T>
struct IsUniquePtr : std::false_type {};
template <class T, class D>
struct IsUniquePtr<std::unique_ptr<T, D>> : std::true_type {};

// A factory's result as a unique_ptr (movable allocators may be returned by
// value).
template <class R>
auto ToUnique(R&& r) {
  if constexpr (IsUniquePtr<std::decay_t<R>>::value) {
    return std::forward<R>(r);
  } else {
    return std::make_unique<std::decay_t<R>>(std::forward<R>(r));
  }
}

// Calls f(args..., env) if f takes the TestEnv, else f(args...).
template <class F, class... Args>
decltype(auto) CallFactory(F& f, TestEnv& env, Args&&... args) {
  if constexpr (std::is_invocable_v<F&, Args..., TestEnv&>) {
    return f(std::forward<Args>(args)..., env);
  } else {
    return f(std::forward<Args>(args)...);
  }
}

// Policy::New<T>(env), Policy::New<T>(), or new Policy::Alloc<T>().
template <class Policy, class T>
typename Policy::template Alloc<T>* CallNew(TestEnv& env) {
  if constexpr (requires { Policy::template New<T>(env); }) {
    return Policy::template New<T>(env);
  } else if constexpr (requires { Policy::template New<T>(); }) {
    return Policy::template New<T>();
  } else {
    return new typename Policy::template Alloc<T>();
  }
}

// Owns an untyped allocator and exposes it through the interface.
template <object_alloc::UntypedObjectAlloc U>
class OwningUntyped final : public object_alloc::UntypedObjectAllocInterface {
 public:
  explicit OwningUntyped(std::unique_ptr<U> u) : u_(std::move(u)) {}
  object_alloc::Layout layout() const noexcept override { return u_->layout(); }
  void* Allocate() noexcept override { return u_->Allocate(); }
  void Deallocate(void* p) noexcept override { u_->Deallocate(p); }
  bool thread_safe() const noexcept override {
    return object_alloc::IsThreadSafe<U>();
  }

 private:
  std::unique_ptr<U> u_;
};

// How the harness holds a typed allocator: an owning pointer plus a table
// of three functions, exposed as untyped by ErasedTyped (object_alloc_test.cc;
// like object_alloc::TypedAsUntyped, but for allocators that can be neither
// copied nor moved). The per-type code is just TypedOps<X> and MakeTyped,
// which keeps the ~200 instantiations of TypedCases cheap to compile (a
// std::unique_ptr<X> per type costs more compile time than all of this).
struct TypedAllocOps {
  void* (*allocate)(void* alloc) noexcept;
  void (*deallocate)(void* alloc, void* p) noexcept;
  void (*destroy)(void* alloc) noexcept;
};

struct MadeTyped {
  void* alloc;  // Owned; nullptr if the policy failed to build it.
  const TypedAllocOps* ops;
};

template <object_alloc::ObjectAlloc X>
struct TypedOps {
  using T = typename X::value_type;
  static void* Allocate(void* a) noexcept {
    return static_cast<X*>(a)->Allocate();
  }
  static void Deallocate(void* a, void* p) noexcept {
    static_cast<X*>(a)->Deallocate(static_cast<T*>(p));
  }
  static void Destroy(void* a) noexcept { delete static_cast<X*>(a); }
  static constexpr TypedAllocOps kOps = {&Allocate, &Deallocate, &Destroy};
};

template <class X>
std::unique_ptr<object_alloc::UntypedObjectAllocInterface> EraseUntyped(
    std::unique_ptr<X> x) {
  if constexpr (std::is_base_of_v<object_alloc::UntypedObjectAllocInterface,
                                  X>) {
    return x;
  } else {
    static_assert(object_alloc::UntypedObjectAlloc<X>,
                  "the factory must build an object_alloc::UntypedObjectAlloc");
    return std::make_unique<OwningUntyped<X>>(std::move(x));
  }
}

using MakeTypedFn = MadeTyped (*)(TestEnv&);

// Appends the typed case (size, align). Out of line and type-free.
void AddTypedCase(std::vector<AllocCase>& out, std::size_t size,
                  std::size_t align, bool thread_safe, MakeTypedFn make);

template <class Policy, class T>
MadeTyped MakeTyped(TestEnv& env) {
  using X = typename Policy::template Alloc<T>;
  static_assert(object_alloc::ObjectAlloc<X>,
                "Policy::Alloc<T> must be an object_alloc::ObjectAlloc");
  static_assert(std::is_same_v<typename X::value_type, T>,
                "Policy::Alloc<T> must allocate T");
  return MadeTyped{CallNew<Policy, T>(env), &TypedOps<X>::kOps};
}

template <class Policy, std::size_t N, std::size_t A>
void MaybeAddTypedCase(std::vector<AllocCase>& out) {
  if constexpr (N <= PolicyMaxSize<Policy>() &&
                IsValidAlign(N, A, PolicyMaxAlign<Policy>())) {
    using T = Carrier<N, A>;
    static_assert(sizeof(T) == N && alignof(T) == A);
    AddTypedCase(
        out, N, A,
        object_alloc::IsThreadSafe<typename Policy::template Alloc<T>>(),
        &MakeTyped<Policy, T>);
  }
}

template <class Policy, std::size_t N, std::size_t... kLog2>
void AddTypedCasesForSize(std::vector<AllocCase>& out,
                          std::index_sequence<kLog2...>) {
  (MaybeAddTypedCase<Policy, N, std::size_t{1} << kLog2>(out), ...);
}

template <class Policy, std::size_t... kIndex>
void AddTypedCases(std::vector<AllocCase>& out,
                   std::index_sequence<kIndex...>) {
  (AddTypedCasesForSize<Policy, kSizes[kIndex]>(
       out, std::make_index_sequence<kMaxAlignLog2 + 1>()),
   ...);
}

}  // namespace internal

// Every (size, alignment) case of the typed allocators Policy builds: the 47
// sizes up to Policy::kMaxSize, each at every valid alignment up to
// Policy::kMaxAlign.
template <class Policy>
std::vector<AllocCase> TypedCases() {
  std::vector<AllocCase> out;
  internal::AddTypedCases<Policy>(out,
                                  std::make_index_sequence<kSizes.size()>());
  return out;
}

// Just the cases the threaded suite runs, ThreadedSubset(TypedCases<Policy>()),
// instantiating only those 6 carrier types: for a package that runs only the
// threaded suite on a typed allocator, it saves compiling ~200 others.
template <class Policy>
std::vector<AllocCase> ThreadedTypedCases() {
  std::vector<AllocCase> out;
  [&out]<std::size_t... kIndex>(std::index_sequence<kIndex...>) {
    (internal::MaybeAddTypedCase<Policy, kThreadedSizes[kIndex], 1>(out), ...);
  }(std::make_index_sequence<std::size(kThreadedSizes)>());
  return out;
}

// Every (size, alignment) case of an untyped allocator built from a Layout by
// `factory`: factory(Layout) or factory(Layout, TestEnv&), returning a
// std::unique_ptr to (or a movable value of) an UntypedObjectAlloc or an
// object_alloc::UntypedObjectAllocInterface. Sizes up to max_size, alignments
// up to max_align.
template <class F>
std::vector<AllocCase> UntypedCases(F factory,
                                    std::size_t max_align = kDefaultMaxAlign,
                                    std::size_t max_size = kMaxSize) {
  std::vector<AllocCase> out;
  using X = typename decltype(internal::ToUnique(internal::CallFactory(
      std::declval<F&>(), std::declval<TestEnv&>(),
      object_alloc::Layout{})))::element_type;
  bool thread_safe = false;
  if constexpr (std::is_base_of_v<object_alloc::UntypedObjectAllocInterface,
                                  X>) {
    // thread_safe() is a run-time property here: ask one probe instance.
    TestEnv env;
    auto probe = internal::ToUnique(
        internal::CallFactory(factory, env, object_alloc::Layout{8, 8}));
    thread_safe = probe != nullptr && probe->thread_safe();
  } else {
    thread_safe = object_alloc::IsThreadSafe<X>();
  }
  for (std::size_t size : kSizes) {
    if (size > max_size) continue;
    bool base = true;
    ForEachAlign(size, 1, max_align, [&](std::size_t align) {
      AllocCase c;
      c.layout = object_alloc::Layout{size, align};
      c.name = LayoutName(c.layout);
      c.typed = false;
      c.thread_safe = thread_safe;
      c.full_length = base;
      base = false;
      c.make = [factory, layout = c.layout](TestEnv& env) mutable
          -> std::unique_ptr<object_alloc::UntypedObjectAllocInterface> {
        return internal::EraseUntyped(
            internal::ToUnique(internal::CallFactory(factory, env, layout)));
      };
      out.push_back(std::move(c));
    });
  }
  return out;
}

// The single case of an untyped allocator whose layout its factory fixes:
// factory() or factory(TestEnv&), returning as for UntypedCases. One probe
// instance is built (and destroyed) to read the layout.
template <class F>
std::vector<AllocCase> FixedLayoutCase(F factory) {
  AllocCase c;
  {
    TestEnv env;
    auto probe = internal::EraseUntyped(
        internal::ToUnique(internal::CallFactory(factory, env)));
    c.layout = probe->layout();
    c.thread_safe = probe->thread_safe();
  }
  c.name = LayoutName(c.layout);
  c.typed = false;
  c.full_length = true;
  c.make = [factory](TestEnv& env) mutable
      -> std::unique_ptr<object_alloc::UntypedObjectAllocInterface> {
    return internal::EraseUntyped(
        internal::ToUnique(internal::CallFactory(factory, env)));
  };
  return {std::move(c)};
}

}  // namespace object_alloc_test

// Instantiates ObjectAllocTest (RandomOps, FillAndDrain) for every case of
// the std::vector<AllocCase> expression that follows the name.
#define OBJECT_ALLOC_TEST_SUITE(Name, ...)                           \
  using ::object_alloc_test::ObjectAllocTest;                        \
  INSTANTIATE_TEST_SUITE_P(Name, ObjectAllocTest,                    \
                           ::testing::ValuesIn(__VA_ARGS__),         \
                           ::object_alloc_test::CaseName)

// Instantiates ThreadedObjectAllocTest for ThreadedSubset(cases). Every case
// must be thread-safe (the test fails otherwise).
#define OBJECT_ALLOC_TEST_THREADED_SUITE(Name, ...)                       \
  using ::object_alloc_test::ThreadedObjectAllocTest;                     \
  INSTANTIATE_TEST_SUITE_P(                                               \
      Name, ThreadedObjectAllocTest,                                      \
      ::testing::ValuesIn(::object_alloc_test::ThreadedSubset(__VA_ARGS__)), \
      ::object_alloc_test::CaseName)

#endif  // OBJECT_ALLOC_TEST_OBJECT_ALLOC_TEST_H_
