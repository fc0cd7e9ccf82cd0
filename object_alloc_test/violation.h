// object_alloc_test violations: what the checks can find, and where they go.
//
// Every check in this package reports a Violation. Most are found by the
// harness itself and returned as values (harness.h); some can only be found
// inside an object's destructor, which the *allocator under test* runs (e.g.
// destroying a cached object twice). Those go through ReportViolation() to the
// active ScopedViolationCapture, which the harness installs for the whole run
// and polls after every operation. With no capture installed (a
// CorruptionTester used outside the harness), a violation aborts the process
// with its message, which is the reference design's "panic".
//
// The capture is process-global, not per thread, because in multi-threaded
// runs an allocator may destroy objects on any thread.
#ifndef OBJECT_ALLOC_TEST_VIOLATION_H_
#define OBJECT_ALLOC_TEST_VIOLATION_H_

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace object_alloc_test {

enum class ViolationKind {
  // Allocate() returned nullptr (the suites allocate far below any sane
  // limit, so for them out-of-memory is a failure).
  kNullAllocation,
  // Allocate() returned memory not aligned to the layout's alignment.
  kMisaligned,
  // Allocate() returned a pointer that is already live (handed out and not
  // yet given back).
  kDoubleHandOut,
  // Allocate() returned memory overlapping a live object at another address.
  kOverlap,
  // A typed allocator handed out an object that is not constructed: never
  // constructed (fresh memory not in the New state), or destroyed (a Dropped
  // object handed out again without constructing it).
  kUnconstructed,
  // Memory handed out again after a free is neither a constructed object nor
  // a destroyed one: the allocator (or someone) wrote into it while it held
  // it. For untyped allocators: handed-out memory still holds a live object.
  kInvalidReuse,
  // A live object (held by the test, not the allocator) was modified.
  kCorrupted,
  // After the allocator was destroyed, an object it once handed out is still
  // constructed and mapped: a cached object was never destroyed.
  kNotDestroyed,
  // An object's destructor ran on something that is not a constructed object
  // (destroyed twice, or never constructed).
  kBadDestroy,
};

// A stable, human-readable name ("double-hand-out", ...).
std::string_view KindName(ViolationKind kind);

struct Violation {
  ViolationKind kind;
  // The object concerned (0 if none).
  std::uintptr_t address = 0;
  std::string message;
};

// Installs itself as the process's violation sink for its lifetime and
// records the first violation reported (and a count of all). Thread-safe.
// At most one may be active at a time.
class ScopedViolationCapture {
 public:
  ScopedViolationCapture();
  ~ScopedViolationCapture();
  ScopedViolationCapture(const ScopedViolationCapture&) = delete;
  ScopedViolationCapture& operator=(const ScopedViolationCapture&) = delete;

  // Cheap enough to call after every operation.
  bool has_violation() const;
  std::optional<Violation> first() const;
  int count() const;

  // Called by ReportViolation.
  void Record(Violation v);

 private:
  mutable std::mutex mu_;
  std::optional<Violation> first_;  // Guarded by mu_.
  std::atomic<int> count_{0};
};

// Reports a violation to the active capture, or aborts with the message when
// none is active. Safe to call from destructors and from any thread.
void ReportViolation(ViolationKind kind, const void* address,
                     std::string message);

}  // namespace object_alloc_test

#endif  // OBJECT_ALLOC_TEST_VIOLATION_H_
