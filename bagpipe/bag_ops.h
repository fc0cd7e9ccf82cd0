// bag_ops: the retrying and self-pinning operations every bagpipe structure
// derives from its single-attempt primitives, written once.
//
// Each structure implements the hard part, one attempt made while the caller
// is pinned in the epoch (epoch.h), and inherits from these mixins the
// operations with uniform semantics across structures:
//   - TryPush / TryPushPinned: one attempt; false on transient failure or when
//     out of memory (the item is then not queued).
//   - Push / PushPinned: retry transient failures; false only out of memory.
//   - TryPop: one attempt, pinning itself; kTransient also when no epoch record
//     can be had (out of memory), so callers never mistake that for empty.
//   - Pop: retry while transient; false means empty.
// The mixins add no state and no synchronisation of their own: every memory
// ordering argument lives with the primitive in the structure's header.
#ifndef BAGPIPE_BAG_OPS_H_
#define BAGPIPE_BAG_OPS_H_

#include "absl/base/attributes.h"
#include "bagpipe/bag.h"
#include "bagpipe/epoch.h"

namespace bagpipe {
namespace internal {

// The outcome of one push attempt, telling a transient failure (another
// thread took the claimed cell; try again) from exhaustion (stop).
enum class PushResult { kPushed, kRetry, kNoMemory };

// Requires of D: `PopStatus TryPopPinned(T*) noexcept` (REQUIRES: pinned).
template <class D, class T>
class PopOps {
 public:
  PopStatus TryPop(T* out) noexcept {
    epoch::Guard g;
    if (!g.ok()) return PopStatus::kTransient;
    return self().TryPopPinned(out);
  }

  bool Pop(T* out) noexcept {
    for (;;) {
      const PopStatus s = TryPop(out);
      if (s != PopStatus::kTransient) return s == PopStatus::kOk;
    }
  }

 private:
  D& self() noexcept { return static_cast<D&>(*this); }
};

// Requires of D, both possibly private with this class a friend:
// `PushResult PushOnce(T) noexcept` (pins itself) and
// `PushResult PushOncePinned(T) noexcept` (REQUIRES: pinned).
template <class D, class T>
class PushOps {
 public:
  bool TryPush(T item) noexcept {
    return self().PushOnce(item) == PushResult::kPushed;
  }

  bool Push(T item) noexcept {
    for (;;) {
      const PushResult r = self().PushOnce(item);
      if (r != PushResult::kRetry) return r == PushResult::kPushed;
    }
  }

  // For callers that already hold an epoch::Guard (Bagpipe pins once per
  // operation instead of once per probe). REQUIRES: the thread is pinned.
  ABSL_ATTRIBUTE_ALWAYS_INLINE bool TryPushPinned(T item) noexcept {
    return self().PushOncePinned(item) == PushResult::kPushed;
  }

  bool PushPinned(T item) noexcept {
    for (;;) {
      const PushResult r = self().PushOncePinned(item);
      if (r != PushResult::kRetry) return r == PushResult::kPushed;
    }
  }

 private:
  D& self() noexcept { return static_cast<D&>(*this); }
};

}  // namespace internal
}  // namespace bagpipe

#endif  // BAGPIPE_BAG_OPS_H_
