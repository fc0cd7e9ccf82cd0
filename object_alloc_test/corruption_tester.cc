// Implementation of the corruption tester (see corruption_tester.h).
#include "object_alloc_test/corruption_tester.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "absl/strings/str_format.h"
#include "object_alloc_test/violation.h"

namespace object_alloc_test {
namespace {

constexpr std::uint64_t kPrime1 = 0x9E3779B185EBCA87ULL;
constexpr std::uint64_t kPrime2 = 0xC2B2AE3D27D4EB4FULL;
constexpr std::uint64_t kPrime3 = 0x165667B19E3779F9ULL;
constexpr std::uint64_t kAddressSalt = 0x6a09e667f3bcc909ULL;

inline std::uint64_t Rotl(std::uint64_t x, int r) {
  return (x << r) | (x >> (64 - r));
}

inline std::uint64_t Load64(const unsigned char* p) {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline std::uint64_t Round(std::uint64_t acc, std::uint64_t word) {
  return Rotl(acc + word * kPrime2, 31) * kPrime1;
}

inline std::uint32_t Nonce(TesterState state) {
  switch (state) {
    case TesterState::kNew:
      return kNonceNew;
    case TesterState::kValid:
      return kNonceValid;
    case TesterState::kDropped:
      return kNonceDropped;
    case TesterState::kInvalid:
      break;
  }
  std::fprintf(stderr, "object_alloc_test: no nonce for the Invalid state\n");
  std::abort();
}

inline std::uint32_t HeaderHash(const void* p, std::uint32_t nonce,
                                std::uint64_t payload_hash) {
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  return static_cast<std::uint32_t>(
      Mix64(payload_hash ^ Mix64(addr ^ kAddressSalt) ^ (nonce * kPrime3)));
}

inline std::uint64_t PayloadHash(const unsigned char* p, std::size_t size) {
  return HashBytes(p + kTesterHeaderSize, size - kTesterHeaderSize, 0);
}

// Payload bytes come from a per-thread splitmix64 stream. Their values only
// need to be unlikely to repeat (so that copies and stale objects differ);
// they never influence which operations a test performs, so tests stay
// reproducible from their seed.
std::atomic<std::uint64_t> g_stream_counter{0};
thread_local std::uint64_t t_stream = 0;

inline std::uint64_t NextRandom() {
  if (t_stream == 0) {
    t_stream = Mix64(g_stream_counter.fetch_add(1, std::memory_order_relaxed) +
                     kPrime1) |
               1;
  }
  t_stream += kPrime1;
  return Mix64(t_stream);
}

}  // namespace

std::string_view StateName(TesterState state) {
  switch (state) {
    case TesterState::kNew:
      return "New";
    case TesterState::kValid:
      return "Valid";
    case TesterState::kDropped:
      return "Dropped";
    case TesterState::kInvalid:
      return "Invalid";
  }
  return "?";
}

std::uint64_t HashBytes(const void* data, std::size_t n, std::uint64_t seed) {
  const auto* p = static_cast<const unsigned char*>(data);
  std::size_t i = 0;
  std::uint64_t h;
  if (n >= 32) {
    // Four independent lanes keep the multipliers busy in parallel.
    std::uint64_t v1 = seed + kPrime1 + kPrime2;
    std::uint64_t v2 = seed + kPrime2;
    std::uint64_t v3 = seed;
    std::uint64_t v4 = seed - kPrime1;
    for (; i + 32 <= n; i += 32) {
      v1 = Round(v1, Load64(p + i));
      v2 = Round(v2, Load64(p + i + 8));
      v3 = Round(v3, Load64(p + i + 16));
      v4 = Round(v4, Load64(p + i + 24));
    }
    h = Rotl(v1, 1) + Rotl(v2, 7) + Rotl(v3, 12) + Rotl(v4, 18);
    h = (h ^ Round(0, v1)) * kPrime1 + kPrime3;
    h = (h ^ Round(0, v2)) * kPrime1 + kPrime3;
    h = (h ^ Round(0, v3)) * kPrime1 + kPrime3;
    h = (h ^ Round(0, v4)) * kPrime1 + kPrime3;
  } else {
    h = seed + kPrime3;
  }
  h += n;
  for (; i + 8 <= n; i += 8) {
    h = Rotl(h ^ Round(0, Load64(p + i)), 27) * kPrime1 + kPrime3;
  }
  for (; i < n; ++i) {
    h = Rotl(h ^ (p[i] * kPrime3), 11) * kPrime1;
  }
  return Mix64(h);
}

namespace tester {

void Construct(void* p, std::size_t size, TesterState state) noexcept {
  auto* bytes = static_cast<unsigned char*>(p);
  std::size_t i = kTesterHeaderSize;
  for (; i + 8 <= size; i += 8) {
    const std::uint64_t r = NextRandom();
    std::memcpy(bytes + i, &r, sizeof(r));
  }
  if (i < size) {
    const std::uint64_t r = NextRandom();
    std::memcpy(bytes + i, &r, size - i);
  }
  SetState(p, state, PayloadHash(bytes, size));
}

namespace {

TesterState StateAt(const unsigned char* bytes, std::size_t size,
                    const void* address, std::uint64_t* payload_hash) {
  std::uint32_t nonce, hash;
  std::memcpy(&nonce, bytes, sizeof(nonce));
  std::memcpy(&hash, bytes + sizeof(nonce), sizeof(hash));
  TesterState state;
  if (nonce == kNonceNew) {
    state = TesterState::kNew;
  } else if (nonce == kNonceValid) {
    state = TesterState::kValid;
  } else if (nonce == kNonceDropped) {
    state = TesterState::kDropped;
  } else {
    return TesterState::kInvalid;  // No need to hash garbage.
  }
  const std::uint64_t ph = PayloadHash(bytes, size);
  if (payload_hash != nullptr) *payload_hash = ph;
  return HeaderHash(address, nonce, ph) == hash ? state : TesterState::kInvalid;
}

}  // namespace

TesterState StateOf(const void* p, std::size_t size,
                    std::uint64_t* payload_hash) noexcept {
  return StateAt(static_cast<const unsigned char*>(p), size, p, payload_hash);
}

TesterState StateOfCopy(const void* copy, std::size_t size,
                        const void* address) noexcept {
  return StateAt(static_cast<const unsigned char*>(copy), size, address,
                 nullptr);
}

void SetState(void* p, TesterState state, std::uint64_t payload_hash) noexcept {
  const std::uint32_t nonce = Nonce(state);
  const std::uint32_t hash = HeaderHash(p, nonce, payload_hash);
  auto* bytes = static_cast<unsigned char*>(p);
  std::memcpy(bytes, &nonce, sizeof(nonce));
  std::memcpy(bytes + sizeof(nonce), &hash, sizeof(hash));
}

void Destroy(void* p, std::size_t size) noexcept {
  std::uint64_t ph = 0;
  const TesterState state = StateOf(p, size, &ph);
  if (state != TesterState::kNew && state != TesterState::kValid) {
    ReportViolation(
        ViolationKind::kBadDestroy, p,
        absl::StrFormat("destructor of the %u-byte object at %p ran on an "
                        "object in state %s (expected New or Valid): "
                        "destroyed twice, or never constructed",
                        size, p, std::string(StateName(state))));
    return;
  }
  SetState(p, TesterState::kDropped, ph);
}

}  // namespace tester

namespace {

// A pipe whose write end the kernel reads our memory into. Created once,
// never closed (process lifetime), guarded by its mutex.
struct ProbePipe {
  int read_fd = -1;
  int write_fd = -1;
  std::mutex mu;
};

ProbePipe& GetProbePipe() {
  static ProbePipe* pipe = [] {
    auto* p = new ProbePipe;
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
      std::perror("object_alloc_test: pipe2");
      std::abort();
    }
    p->read_fd = fds[0];
    p->write_fd = fds[1];
    return p;
  }();
  return *pipe;
}

}  // namespace

bool IsMappedRange(const void* p, std::size_t n) {
  if (n == 0) return true;
  const auto begin = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t end = begin + n;
  if (end < begin) return false;  // Wraps around the address space.
  const std::uintptr_t page =
      static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  ProbePipe& probe = GetProbePipe();
  std::lock_guard<std::mutex> lock(probe.mu);
  // Readability is a per-page property: probe one byte in each page. A raw
  // syscall, so that sanitizer interceptors of write() do not inspect the
  // (possibly poisoned) buffer themselves.
  for (std::uintptr_t a = begin; a < end; a = (a & ~(page - 1)) + page) {
    const long written =
        ::syscall(SYS_write, probe.write_fd, reinterpret_cast<void*>(a), 1);
    if (written == 1) {
      char sink;
      if (::read(probe.read_fd, &sink, 1) != 1) {
        std::perror("object_alloc_test: draining the probe pipe");
        std::abort();
      }
      continue;
    }
    if (written < 0 && errno == EFAULT) return false;
    std::perror("object_alloc_test: probing memory through a pipe");
    std::abort();
  }
  return true;
}

namespace internal {

// Copies through the probe pipe, a page-sized chunk at a time (at most
// PIPE_BUF bytes, so each write is atomic and the pipe never fills).
bool CopyThroughPipe(const void* src, std::size_t n, void* dst) {
  const auto* p = static_cast<const unsigned char*>(src);
  auto* out = static_cast<unsigned char*>(dst);
  ProbePipe& probe = GetProbePipe();
  std::lock_guard<std::mutex> lock(probe.mu);
  std::size_t done = 0;
  while (done < n) {
    const std::size_t chunk = std::min<std::size_t>(n - done, 4096);
    const long written = ::syscall(SYS_write, probe.write_fd, p + done, chunk);
    if (written <= 0) {
      if (written < 0 && errno == EFAULT) return false;
      std::perror("object_alloc_test: copying memory through a pipe");
      std::abort();
    }
    std::size_t got = 0;
    while (got < static_cast<std::size_t>(written)) {
      const ssize_t r = ::read(probe.read_fd, out + done + got,
                               static_cast<std::size_t>(written) - got);
      if (r <= 0) {
        std::perror("object_alloc_test: draining the probe pipe");
        std::abort();
      }
      got += static_cast<std::size_t>(r);
    }
    done += got;
  }
  return true;
}

}  // namespace internal

namespace {

// Whether process_vm_readv on ourselves works here (seccomp profiles may
// forbid it); decided by the first call.
std::atomic<int> g_vm_readv_usable{-1};

}  // namespace

bool CopyMemory(const void* p, std::size_t n, void* out) {
  if (n == 0) return true;
  if (g_vm_readv_usable.load(std::memory_order_relaxed) != 0) {
    struct iovec local = {out, n};
    struct iovec remote = {const_cast<void*>(p), n};
    // A raw system call: sanitizer interceptors must not inspect `p`.
    const long r = ::syscall(SYS_process_vm_readv, ::getpid(), &local, 1,
                             &remote, 1, 0);
    if (r >= 0 || errno == EFAULT) {
      g_vm_readv_usable.store(1, std::memory_order_relaxed);
      return r == static_cast<long>(n);
    }
    g_vm_readv_usable.store(0, std::memory_order_relaxed);  // EPERM, ENOSYS.
  }
  return internal::CopyThroughPipe(p, n, out);
}

}  // namespace object_alloc_test
