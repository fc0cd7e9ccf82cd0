// SpinLock: a small allocation-free lock for elfmalloc's rare slow paths
// (heap construction, the thread-heap registry, the per-class fallback
// allocators) that can also live inside a shared object.
//
// Why not absl::base_internal::SpinLock: it is what we used, and it does the
// job in executables, but Debian's static abseil archive compiles the object
// that SpinLock pulls in for NumCPUs() (sysinfo.cc) with local-exec TLS
// (R_X86_64_TPOFF32 for GetCachedTID's thread_local), which cannot be linked
// into a shared object: libelfc.so failed to link. Linking the shared abseil
// libraries instead would make every LD_PRELOADed process load and expose
// them. So the allocator keeps its own lock; it is the classic three-state
// futex mutex (Drepper, "Futexes Are Tricky", mutex #2) with a short spin.
//
// Protocol. state_: 0 unlocked, 1 locked, 2 locked and maybe waited on.
//  * Lock: CAS 0 -> 1 (acquire) and done. Otherwise spin a little reading
//    the word (CAS again whenever it reads 0), then exchange(2) (acquire):
//    if that returned 0 we own the lock (with state 2: at worst one spurious
//    wake later); else futex_wait(2) and retry the exchange. Setting 2
//    before sleeping is what guarantees the owner's unlock sees a waiter.
//  * Unlock: exchange(0) (release); if it returned 2, futex_wake(1).
// Release/acquire on state_ order the critical sections (TSan sees them).
// constinit (constexpr constructor), trivially destructible, no allocation,
// never throws; not recursive.
#ifndef ELFMALLOC_SPIN_LOCK_H_
#define ELFMALLOC_SPIN_LOCK_H_

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"

namespace elfmalloc {

class SpinLock {
 public:
  constexpr SpinLock() noexcept = default;
  SpinLock(const SpinLock&) = delete;
  SpinLock& operator=(const SpinLock&) = delete;

  void Lock() noexcept {
    std::uint32_t expected = 0;
    if (ABSL_PREDICT_TRUE(state_.compare_exchange_strong(
            expected, 1, std::memory_order_acquire,
            std::memory_order_relaxed))) {
      return;
    }
    LockSlow();
  }

  void Unlock() noexcept {
    if (ABSL_PREDICT_FALSE(state_.exchange(0, std::memory_order_release) ==
                           2)) {
      Futex(FUTEX_WAKE_PRIVATE, 1);
    }
  }

  bool IsHeld() const noexcept {
    return state_.load(std::memory_order_relaxed) != 0;
  }

 private:
  ABSL_ATTRIBUTE_NOINLINE void LockSlow() noexcept {
    for (int i = 0; i < 100; ++i) {
      std::uint32_t s = state_.load(std::memory_order_relaxed);
      if (s == 0 && state_.compare_exchange_weak(s, 1,
                                                 std::memory_order_acquire,
                                                 std::memory_order_relaxed)) {
        return;
      }
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
    while (state_.exchange(2, std::memory_order_acquire) != 0) {
      Futex(FUTEX_WAIT_PRIVATE, 2);
    }
  }

  void Futex(int op, std::uint32_t val) noexcept {
    // EINTR / EAGAIN from FUTEX_WAIT just mean "look again"; errno is
    // restored because callers (malloc) must not change it on success.
    const int saved = errno;
    syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&state_), op, val,
            nullptr, nullptr, 0);
    errno = saved;
  }

  std::atomic<std::uint32_t> state_{0};
};

// Scoped holder.
class SpinLockHolder {
 public:
  explicit SpinLockHolder(SpinLock* l) noexcept : l_(l) { l_->Lock(); }
  ~SpinLockHolder() { l_->Unlock(); }
  SpinLockHolder(const SpinLockHolder&) = delete;
  SpinLockHolder& operator=(const SpinLockHolder&) = delete;

 private:
  SpinLock* l_;
};

}  // namespace elfmalloc

#endif  // ELFMALLOC_SPIN_LOCK_H_
