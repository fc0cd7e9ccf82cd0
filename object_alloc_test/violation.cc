// Implementation of the violation sink (see violation.h).
#include "object_alloc_test/violation.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

namespace object_alloc_test {
namespace {

// The active capture. Written only by ScopedViolationCapture's constructor
// and destructor, which the harness runs on its main thread while no
// allocator under test exists; read by reporters on any thread.
std::atomic<ScopedViolationCapture*> g_capture{nullptr};

}  // namespace

std::string_view KindName(ViolationKind kind) {
  switch (kind) {
    case ViolationKind::kNullAllocation:
      return "null-allocation";
    case ViolationKind::kMisaligned:
      return "misaligned";
    case ViolationKind::kDoubleHandOut:
      return "double-hand-out";
    case ViolationKind::kOverlap:
      return "overlap";
    case ViolationKind::kUnconstructed:
      return "unconstructed";
    case ViolationKind::kInvalidReuse:
      return "invalid-reuse";
    case ViolationKind::kCorrupted:
      return "corrupted";
    case ViolationKind::kNotDestroyed:
      return "not-destroyed";
    case ViolationKind::kBadDestroy:
      return "bad-destroy";
  }
  return "unknown";
}

ScopedViolationCapture::ScopedViolationCapture() {
  ScopedViolationCapture* expected = nullptr;
  if (!g_capture.compare_exchange_strong(expected, this,
                                         std::memory_order_acq_rel)) {
    std::fprintf(stderr,
                 "object_alloc_test: nested ScopedViolationCapture; only one "
                 "may be active at a time\n");
    std::abort();
  }
}

ScopedViolationCapture::~ScopedViolationCapture() {
  g_capture.store(nullptr, std::memory_order_release);
}

bool ScopedViolationCapture::has_violation() const {
  // Polled after every operation by every harness thread: an atomic load, no
  // lock. Record() stores first_ before bumping count_ (both under mu_), so a
  // poller that sees count_ > 0 and then calls first() finds it.
  return count_.load(std::memory_order_acquire) > 0;
}

std::optional<Violation> ScopedViolationCapture::first() const {
  std::lock_guard<std::mutex> lock(mu_);
  return first_;
}

int ScopedViolationCapture::count() const {
  return count_.load(std::memory_order_acquire);
}

void ScopedViolationCapture::Record(Violation v) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!first_.has_value()) first_ = std::move(v);
  count_.fetch_add(1, std::memory_order_release);
}

void ReportViolation(ViolationKind kind, const void* address,
                     std::string message) {
  ScopedViolationCapture* capture = g_capture.load(std::memory_order_acquire);
  if (capture != nullptr) {
    capture->Record(Violation{
        kind, reinterpret_cast<std::uintptr_t>(address), std::move(message)});
    return;
  }
  std::fprintf(stderr, "object_alloc_test: %s at %p: %s\n",
               std::string(KindName(kind)).c_str(), address, message.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace object_alloc_test
