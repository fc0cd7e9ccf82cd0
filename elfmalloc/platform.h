// elfmalloc's operating-system queries that more than one component needs:
// a coarse monotonic clock (decay periods of the page allocators and of the
// large-block heap), the kernel's random bytes (the hardened build's
// secrets), the number of CPUs the process may run on (sizing
// of bags and pools) and a SIGSEGV hook (reports of faults that a misuse
// of the allocator caused). One definition each, so that every component sees the
// same clock and the same CPU count. Mapping lives in //mmap_alloc, the
// futex lock in spin_lock.h, thread keys and fork hooks in thread_cache.cc
// and general_allocator.cc (their only users). Also the two primitives of
// the background decay thread (general_allocator.h): sleeping, and starting
// a detached thread.
//
// CoarseMonotonicMs, AvailableCpus, RandomBytes and SleepMs neither allocate
// nor take a lock: they are safe inside malloc. StartDetachedThread is not
// (see there).
#ifndef ELFMALLOC_PLATFORM_H_
#define ELFMALLOC_PLATFORM_H_

#include <cstddef>
#include <cstdint>

namespace elfmalloc {

// Milliseconds on CLOCK_MONOTONIC_COARSE: a vDSO read of the last timer tick
// (1-4 ms resolution, no system call), which is all periods of hundreds of
// milliseconds need.
std::uint64_t CoarseMonotonicMs() noexcept;

// Fills buf with n bytes from the kernel's random pool (getrandom(2),
// non-blocking; retried on EINTR and short reads). False if the kernel
// cannot give them (no getrandom, pool not yet initialised at early boot):
// the caller then falls back to its own source. For the hardened build's
// per-process secrets; a system call, so call it once.
bool RandomBytes(void* buf, std::size_t n) noexcept;

// CPUs in the process's affinity mask (the sched_getaffinity system call
// fills a stack mask of 1024 CPUs: one system call, no allocation, unlike
// sysconf(_SC_NPROCESSORS_ONLN), which may read /sys through stdio). At
// least 1. Computed once.
std::size_t AvailableCpus() noexcept;

// Sleeps for ms milliseconds (CLOCK_MONOTONIC; resumed after a signal).
void SleepMs(std::uint64_t ms) noexcept;

// True once the process's main thread (the thread-group leader) has exited,
// i.e. left by pthread_exit while other threads go on: its entry in
// /proc/self/task reads as a zombie. False when that cannot be read (no
// /proc). One open, read and close, no allocation.
bool MainThreadExited() noexcept;

// Starts fn(arg) on a new detached thread with every signal blocked (so
// that no signal meant for the program is delivered to it) and a 256 KiB
// stack (if it is the process's last thread when it returns, glibc runs
// exit(0), atexit handlers included, on it). False if the thread could not
// be created. pthread_create
// allocates (its thread descriptor's TLS) and takes libc's internal locks:
// call this where a program could start a thread itself (a library
// constructor, main), never from inside malloc.
bool StartDetachedThread(void* (*fn)(void*), void* arg) noexcept;

// Called with the faulting address of a SIGSEGV and the address of the
// faulting instruction (nullptr where the architecture's context is not
// decoded: x86-64 and AArch64 are), on the faulting thread in signal
// context (async-signal-safe code only). It either reports the fault as its
// own and aborts, or returns: the fault is none of its business.
using FaultHandler = void (*)(void* addr, const void* pc);

// Installs `handler` for SIGSEGV (on the alternate signal stack if the
// thread has one) unless the program already has a handler of its own or
// ignores the signal (false then, and when sigaction fails). When the
// handler returns, the disposition it replaced (the default) is restored
// and the fault happens again under it (a SIGSEGV sent by kill is raised
// again), so a fault that is not the handler's ends the process exactly as
// it would have without it. A program that installs its own handler later
// replaces this one; if that handler calls this one for faults it does not
// handle, this one leaves the program's handler installed. The general
// allocator's fault reports; two system calls.
bool InstallFaultHandler(FaultHandler handler) noexcept;

}  // namespace elfmalloc

#endif  // ELFMALLOC_PLATFORM_H_
