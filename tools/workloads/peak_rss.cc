// peak_rss: runs a command and reports its peak resident set size, measured
// from outside with wait4(2)'s ru_maxrss.
//
//   peak_rss [--preload=LIB] PROGRAM [ARGS...]
//
// The command inherits stdin/stdout/stderr; when it has exited, peak_rss
// prints `PEAK_RSS_KIB=<n>` on stdout and exits with the command's status
// (128 + signal if it was killed), after a `WALL_SECONDS=<s>` line: the
// command's wall time from fork to exit, which is the throughput measure of
// the harness's real-program rows (sqlite3, python3, perl). --preload sets LD_PRELOAD for the command
// only (peak_rss itself runs with the environment it was given, and the
// variable is removed for the command when --preload is absent).
//
// Why a launcher rather than wait4 in tools/harness.py: Linux carries a
// process's peak RSS across execve (the old address space's high-water mark
// is folded into ru_maxrss), so a program started by a fork of the Python
// harness reports at least Python's own ~14 MiB. A child forked from this
// small process starts from its ~1-2 MiB instead, below any workload's own
// footprint.

#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <time.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

int main(int argc, char** argv) {
  int first = 1;
  const char* preload = nullptr;
  if (argc > 1 && std::strncmp(argv[1], "--preload=", 10) == 0) {
    preload = argv[1] + 10;
    first = 2;
  }
  if (first >= argc) {
    std::fprintf(stderr, "usage: peak_rss [--preload=LIB] PROGRAM [ARGS...]\n");
    return 2;
  }
  struct timespec start, end;
  clock_gettime(CLOCK_MONOTONIC, &start);
  pid_t pid = fork();
  if (pid < 0) {
    std::perror("peak_rss: fork");
    return 2;
  }
  if (pid == 0) {
    if (preload != nullptr && preload[0] != '\0') {
      setenv("LD_PRELOAD", preload, 1);
    } else {
      unsetenv("LD_PRELOAD");
    }
    execv(argv[first], argv + first);
    std::fprintf(stderr, "peak_rss: cannot run %s: %s\n", argv[first],
                 std::strerror(errno));
    _exit(127);
  }
  int status = 0;
  struct rusage usage;
  pid_t r;
  do {
    r = wait4(pid, &status, 0, &usage);
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    std::perror("peak_rss: wait4");
    return 2;
  }
  clock_gettime(CLOCK_MONOTONIC, &end);
  std::printf("WALL_SECONDS=%.6f\n",
              static_cast<double>(end.tv_sec - start.tv_sec) +
                  static_cast<double>(end.tv_nsec - start.tv_nsec) * 1e-9);
  std::printf("PEAK_RSS_KIB=%ld\n", usage.ru_maxrss);
  std::fflush(stdout);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}
