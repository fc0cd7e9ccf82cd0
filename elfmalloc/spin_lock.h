// SpinLock: a small allocation-free lock for elfmalloc's rare slow paths
// (heap construction, the thread-heap registry, the per-class fallback
// allocators, the large-block heap) that can also live inside a shared
// object, and that knows which thread holds it.
//
// Why not absl::base_internal::SpinLock: it is what we used, and it does the
// job in executables, but Debian's static abseil archive compiles the object
// that SpinLock pulls in for NumCPUs() (sysinfo.cc) with local-exec TLS
// (R_X86_64_TPOFF32 for GetCachedTID's thread_local), which cannot be linked
// into a shared object: libelfc.so failed to link. Linking the shared abseil
// libraries instead would make every LD_PRELOADed process load and expose
// them. So the allocator keeps its own lock: a futex mutex in the manner of
// Drepper's "Futexes Are Tricky" (mutex #2) with a short spin, whose lock
// word also names the holder.
//
// Why the holder. POSIX lets a signal handler call fork(), and the handler
// may have interrupted its own thread inside one of the allocator's locked
// sections. The pthread_atfork prepare handler takes every allocator lock;
// one its own thread holds it would wait for forever (the process hangs in
// fork(), as glibc's tst-mallocfork2 shows for allocators without this).
// LockForFork skips a lock the calling thread holds and UnlockAfterFork
// releases only what the same fork() took: the interrupted section keeps its
// lock in both processes and releases it if the handler returns. Forks nest
// (a signal may arrive while its thread runs fork()'s handlers), so a lock
// records the nesting depth of the fork that took it (EnterForkHandlers and
// LeaveForkHandlers count it per thread). A thread that asks again for a
// lock it holds (malloc from a handler that interrupted malloc) aborts with
// a message instead of deadlocking silently.
//
// Protocol. state_: 0 unlocked; otherwise (id << 1) | w, where id is the
// holder's thread id (ThreadId(): small, per-thread, never 0) and w says
// that a waiter may sleep on the word. The holder is set atomically with
// the acquisition, so there is no instant at which the lock is held but
// names nobody (a signal can arrive at any instruction).
//  * Lock: CAS 0 -> id << 1 (acquire) and done. Otherwise spin a little
//    (CAS again whenever the word reads 0), then loop: on 0, CAS to
//    (id << 1) | 1 (at worst one spurious wake later, as mutex #2's state
//    2); else set w with a CAS and futex_wait on the value with w.
//  * Unlock: exchange(0) (release); if w was set, futex_wake(1).
// Release/acquire on state_ order the critical sections (TSan sees them).
// constinit (constexpr constructor), trivially destructible, no allocation,
// never throws; not recursive.
#ifndef ELFMALLOC_SPIN_LOCK_H_
#define ELFMALLOC_SPIN_LOCK_H_

#include <linux/futex.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"

namespace elfmalloc {

namespace internal {
// This thread's lock id, assigned on its first lock (0: none yet). A fork
// child's thread keeps the forking thread's id, so it owns what that thread
// held.
ABSL_CONST_INIT inline thread_local std::uint32_t tls_lock_id
    __attribute__((tls_model("initial-exec"))) = 0;
ABSL_CONST_INIT inline std::atomic<std::uint32_t> g_last_lock_id{0};
// How many fork()s this thread is inside of (prepare handler run, parent or
// child handler not yet): 1 for a plain fork, 2 for a fork from a signal
// handler that interrupted another fork's handlers.
ABSL_CONST_INIT inline thread_local std::uint32_t tls_fork_depth
    __attribute__((tls_model("initial-exec"))) = 0;

// 31 bits (the lock word keeps the waiter bit below it), never 0. Ids wrap
// after 2^31 threads have taken a lock; two live threads sharing one would
// need that many thread creations in between.
ABSL_ATTRIBUTE_NOINLINE inline std::uint32_t AssignLockId() noexcept {
  std::uint32_t id;
  do {
    id = (g_last_lock_id.fetch_add(1, std::memory_order_relaxed) + 1) &
         0x7fffffffu;
  } while (id == 0);
  tls_lock_id = id;
  return id;
}
ABSL_ATTRIBUTE_ALWAYS_INLINE inline std::uint32_t ThreadId() noexcept {
  const std::uint32_t id = tls_lock_id;
  return ABSL_PREDICT_TRUE(id != 0) ? id : AssignLockId();
}
}  // namespace internal

// Called first by the allocator's prepare handler, and last by its parent
// and child handlers.
inline void EnterForkHandlers() noexcept { ++internal::tls_fork_depth; }
inline void LeaveForkHandlers() noexcept { --internal::tls_fork_depth; }

class SpinLock {
 public:
  constexpr SpinLock() noexcept = default;
  SpinLock(const SpinLock&) = delete;
  SpinLock& operator=(const SpinLock&) = delete;

  void Lock() noexcept {
    const std::uint32_t me = internal::ThreadId() << 1;
    std::uint32_t expected = 0;
    if (ABSL_PREDICT_TRUE(state_.compare_exchange_strong(
            expected, me, std::memory_order_acquire,
            std::memory_order_relaxed))) {
      return;
    }
    LockSlow(me);
  }

  // Takes the lock if it is free, else returns false at once (also when
  // this thread holds it): for work that may be skipped, such as a decay
  // purge on an allocation path, which must not wait for another thread nor
  // for a section this thread's signal handler interrupted.
  bool TryLock() noexcept {
    std::uint32_t expected = 0;
    return state_.compare_exchange_strong(expected,
                                          internal::ThreadId() << 1,
                                          std::memory_order_acquire,
                                          std::memory_order_relaxed);
  }

  void Unlock() noexcept {
    if (ABSL_PREDICT_FALSE(
            (state_.exchange(0, std::memory_order_release) & 1) != 0)) {
      Futex(FUTEX_WAKE_PRIVATE, 1);
    }
  }

  bool IsHeld() const noexcept {
    return state_.load(std::memory_order_relaxed) != 0;
  }

  // Only the holder puts its id in the word and it clears it when it
  // releases, so a thread that reads its own id there holds the lock.
  bool HeldByCurrentThread() const noexcept {
    return (state_.load(std::memory_order_relaxed) >> 1) ==
           internal::ThreadId();
  }

  // The prepare handler's lock: takes it unless this thread already holds
  // it (see "Why the holder" above). Call EnterForkHandlers() first.
  void LockForFork() noexcept {
    if (HeldByCurrentThread()) return;
    Lock();
    fork_depth_ = internal::tls_fork_depth;
  }

  // Whether the current fork's prepare handler took the lock (false: this
  // thread was inside a section it guards). Between LockForFork and
  // UnlockAfterFork only.
  bool TakenForFork() const noexcept {
    return HeldByCurrentThread() && fork_depth_ == internal::tls_fork_depth;
  }

  // The parent's and the child's handlers: releases the lock if the
  // matching LockForFork took it (in the child no other thread exists, so
  // whatever the prepare handler took is free to release).
  void UnlockAfterFork() noexcept {
    if (!TakenForFork()) return;
    fork_depth_ = 0;
    Unlock();
  }

 private:
  ABSL_ATTRIBUTE_NOINLINE void LockSlow(std::uint32_t me) noexcept {
    for (int i = 0; i < 100; ++i) {
      std::uint32_t s = state_.load(std::memory_order_relaxed);
      if (s == 0 && state_.compare_exchange_weak(s, me,
                                                 std::memory_order_acquire,
                                                 std::memory_order_relaxed)) {
        return;
      }
      if ((s & ~1u) == me) DieRelocked();
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
    for (;;) {
      std::uint32_t s = state_.load(std::memory_order_relaxed);
      if (s == 0) {
        if (state_.compare_exchange_weak(s, me | 1, std::memory_order_acquire,
                                         std::memory_order_relaxed)) {
          return;
        }
        continue;
      }
      if ((s & ~1u) == me) DieRelocked();
      if ((s & 1) == 0 &&
          !state_.compare_exchange_weak(s, s | 1, std::memory_order_relaxed,
                                        std::memory_order_relaxed)) {
        continue;
      }
      Futex(FUTEX_WAIT_PRIVATE, s | 1);
    }
  }

  [[noreturn]] ABSL_ATTRIBUTE_NOINLINE ABSL_ATTRIBUTE_COLD static void
  DieRelocked() noexcept {
    static const char kMessage[] =
        "elfmalloc: an allocator lock was requested again by the thread "
        "that holds it (malloc from a signal handler that interrupted "
        "malloc?); aborting instead of deadlocking\n";
    const ssize_t ignored =
        write(STDERR_FILENO, kMessage, sizeof(kMessage) - 1);
    (void)ignored;
    abort();
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
  // The fork nesting depth whose prepare handler took the lock, 0 if none;
  // written and read only by the holder.
  std::uint32_t fork_depth_ = 0;
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
