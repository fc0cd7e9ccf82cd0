// Tests for platform.h: the clock moves forward at the wall clock's pace,
// the CPU count matches the affinity mask, SleepMs sleeps, a detached
// thread runs with every signal blocked, and a living main thread is seen
// as such.
#include "elfmalloc/platform.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>

#include "gtest/gtest.h"

namespace elfmalloc {
namespace {

TEST(PlatformTest, CoarseClockAdvances) {
  const std::uint64_t a = CoarseMonotonicMs();
  struct timespec ts = {0, 50 * 1000 * 1000};
  nanosleep(&ts, nullptr);
  const std::uint64_t b = CoarseMonotonicMs();
  EXPECT_GE(b, a + 40);  // coarse: a tick's resolution either side
  EXPECT_LT(b, a + 5000);
}

TEST(PlatformTest, SleepMsSleeps) {
  const std::uint64_t a = CoarseMonotonicMs();
  SleepMs(50);
  EXPECT_GE(CoarseMonotonicMs(), a + 40);
}

std::atomic<int> g_ran{0};
std::atomic<bool> g_all_blocked{false};

void* Probe(void* arg) {
  sigset_t mask;
  pthread_sigmask(SIG_SETMASK, nullptr, &mask);
  g_all_blocked.store(sigismember(&mask, SIGINT) == 1 &&
                      sigismember(&mask, SIGTERM) == 1 &&
                      sigismember(&mask, SIGUSR1) == 1);
  g_ran.store(*static_cast<int*>(arg));
  return nullptr;
}

TEST(PlatformTest, DetachedThreadRunsWithSignalsBlocked) {
  static int arg = 7;
  sigset_t before, after;
  pthread_sigmask(SIG_SETMASK, nullptr, &before);
  ASSERT_TRUE(StartDetachedThread(&Probe, &arg));
  pthread_sigmask(SIG_SETMASK, nullptr, &after);
  // The creator's mask is restored.
  EXPECT_EQ(sigismember(&before, SIGINT), sigismember(&after, SIGINT));
  while (g_ran.load() == 0) SleepMs(1);
  EXPECT_EQ(g_ran.load(), 7);
  EXPECT_TRUE(g_all_blocked.load());
}

TEST(PlatformTest, MainThreadIsAlive) { EXPECT_FALSE(MainThreadExited()); }

TEST(PlatformTest, CpuCountIsTheAffinityMask) {
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  EXPECT_EQ(AvailableCpus(), static_cast<std::size_t>(CPU_COUNT(&set)));
  EXPECT_GE(AvailableCpus(), 1u);
}

TEST(PlatformTest, RandomBytesDifferBetweenCalls) {
  std::uint64_t a[4] = {};
  std::uint64_t b[4] = {};
  ASSERT_TRUE(RandomBytes(a, sizeof(a)));
  ASSERT_TRUE(RandomBytes(b, sizeof(b)));
  // 256 random bits: equal by chance with probability 2^-256.
  EXPECT_NE(std::memcmp(a, b, sizeof(a)), 0);
  EXPECT_TRUE(RandomBytes(a, 0));
}

// The SIGSEGV hook: the handler sees the faulting address; when it returns
// the fault ends the process as without it; a program's own handler is
// never replaced.
void* g_fault_seen = nullptr;
const void* g_fault_pc = nullptr;
void RecordFault(void* addr, const void* pc) {
  g_fault_seen = addr;
  g_fault_pc = pc;
}
void DieOnFault(void* addr, const void* pc) {
  if (addr == g_fault_seen && pc != nullptr) {
    static const char kMsg[] = "fault handler: expected address\n";
    (void)!write(2, kMsg, sizeof(kMsg) - 1);
    _exit(42);
  }
}
void ProgramHandler(int) { _exit(43); }
struct sigaction g_chained;
void ChainingHandler(int sig, siginfo_t* info, void* context) {
  g_chained.sa_sigaction(sig, info, context);
  struct sigaction current;
  sigaction(SIGSEGV, nullptr, &current);
  _exit(current.sa_sigaction == ChainingHandler ? 44 : 45);
}

TEST(PlatformDeathTest, FaultHandlerSeesTheAddressAndChains) {
#if defined(ADDRESS_SANITIZER) || defined(THREAD_SANITIZER)
  GTEST_SKIP() << "the sanitizer owns SIGSEGV";
#endif
  void* page = mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                    0);
  ASSERT_NE(page, MAP_FAILED);
  char* target = static_cast<char*>(page) + 100;
  // A handler that claims the fault.
  EXPECT_EXIT(
      {
        g_fault_seen = target;
        signal(SIGSEGV, SIG_DFL);  // the allocator's own hook, under elfc
        if (!InstallFaultHandler(DieOnFault)) _exit(1);
        *static_cast<volatile char*>(target) = 0;
      },
      ::testing::ExitedWithCode(42), "expected address");
  // A handler that returns: the default action, as if there were none.
  EXPECT_EXIT(
      {
        signal(SIGSEGV, SIG_DFL);
        if (!InstallFaultHandler(RecordFault)) _exit(1);
        *static_cast<volatile char*>(target) = 0;
      },
      ::testing::KilledBySignal(SIGSEGV), "");
  // A program's handler stays.
  EXPECT_EXIT(
      {
        signal(SIGSEGV, ProgramHandler);
        if (InstallFaultHandler(DieOnFault)) _exit(1);
        *static_cast<volatile char*>(target) = 0;
      },
      ::testing::ExitedWithCode(43), "");
  // A program's handler installed over this one, calling it for a fault
  // it does not handle: the program's handler stays installed.
  EXPECT_EXIT(
      {
        signal(SIGSEGV, SIG_DFL);
        if (!InstallFaultHandler(RecordFault)) _exit(1);
        struct sigaction mine;
        std::memset(&mine, 0, sizeof(mine));
        mine.sa_sigaction = ChainingHandler;
        mine.sa_flags = SA_SIGINFO;
        if (sigaction(SIGSEGV, &mine, &g_chained) != 0) _exit(2);
        *static_cast<volatile char*>(target) = 0;
      },
      ::testing::ExitedWithCode(44), "");
  munmap(page, 4096);
}

}  // namespace
}  // namespace elfmalloc
