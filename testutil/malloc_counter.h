// testutil/malloc_counter.h: a counting (and optionally trapping) malloc for
// tests that must prove some code never reaches the C heap.
//
// Linking //testutil:malloc_counter replaces the process's malloc family
// (malloc, free, calloc, realloc, reallocarray, memalign, posix_memalign,
// aligned_alloc, valloc, pvalloc, malloc_usable_size) and every C++ operator
// new / delete with thin wrappers that count the call and forward to glibc's
// own implementation (__libc_malloc and friends). The usual way to link it is
// as the test binary's malloc:
//
//   cc_test(
//       name = "foo_no_malloc_test",
//       malloc = "//testutil:malloc_counter",
//       linkstatic = True,
//       # Sanitizer runtimes replace malloc themselves; two replacements in one
//       # process cannot both win, so these tests run without ASan/TSan.
//       tags = ["noasan", "notsan"],
//       ...
//   )
//
// and then, on every thread whose allocations matter:
//
//   testutil::NoMallocScope scope;             // or (Mode::kTrap)
//   CodeThatMustNotAllocate();
//   EXPECT_EQ(scope.calls(), 0);
//
// Counting is per thread (initial-exec thread-local storage of a trivial type:
// reading or bumping it never allocates, unlike lazily constructed
// thread_locals), so other threads (gtest's, the runtime's) cannot disturb a
// scope. A call counts as one whether it succeeds or fails, and free(nullptr)
// counts too: the question a scope answers is "did this thread call into the
// allocator at all". operator new / delete count once each (they call the
// counting malloc / free).
//
// A scope in trap mode aborts the process with a message naming the function
// at the *first* call, before it runs: the stack (in a debugger or core dump)
// then points at the culprit. Use it in threads you cannot easily inspect.
#ifndef TESTUTIL_MALLOC_COUNTER_H_
#define TESTUTIL_MALLOC_COUNTER_H_

#include <cstdint>

namespace testutil {

// Calls into the allocation API made by the calling thread since it started.
std::uint64_t MallocCallsOnThisThread() noexcept;

// Calls into the allocation API made by all threads since the process started.
std::uint64_t TotalMallocCalls() noexcept;

// True if this process's malloc really is the counting one: checks that a
// malloc made from inside libc (strdup) is seen. False in a binary where a
// sanitizer or another library's malloc won. Allocates (that is the check).
bool MallocCounterInstalled() noexcept;

// Counts (and in trap mode forbids) allocation calls by the constructing
// thread while it is alive. Scopes nest; a trapping scope traps whatever
// scopes are around it. Must be destroyed on the thread that created it.
class NoMallocScope {
 public:
  enum class Mode {
    kCount,  // count only; read calls()
    kTrap,   // abort with a message at the first call
  };

  explicit NoMallocScope(Mode mode = Mode::kCount) noexcept;
  ~NoMallocScope();

  NoMallocScope(const NoMallocScope&) = delete;
  NoMallocScope& operator=(const NoMallocScope&) = delete;

  // Calls made by this thread since the scope was constructed.
  std::uint64_t calls() const noexcept;

 private:
  std::uint64_t start_;
  Mode mode_;
};

}  // namespace testutil

#endif  // TESTUTIL_MALLOC_COUNTER_H_
