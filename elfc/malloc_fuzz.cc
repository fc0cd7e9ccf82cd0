// elfc/malloc_fuzz.cc: the operation interpreter of malloc_fuzz.h.
//
// Layout of this file: the input reader; size / alignment decoding; block
// records with their fill patterns; the helper thread; one function per
// operation; the dispatcher RunMallocOps. Failures go through Violation(),
// which names the operation and the input offset, so a crash found by
// libFuzzer can be read off the log and replayed with //elfc:malloc_fuzzer
// (MALLOC_FUZZ_TRACE=1 prints every operation).
#include "elfc/malloc_fuzz.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <mutex>
#include <new>
#include <thread>

#include "elfc/preload_test_util.h"

namespace elfc::fuzz {

void Stats::Add(const Stats& o) {
  inputs += o.inputs;
  operations += o.operations;
  allocations += o.allocations;
  frees += o.frees;
  reallocs += o.reallocs;
  remote_ops += o.remote_ops;
  expected_failures += o.expected_failures;
  bytes_checked += o.bytes_checked;
}

void RandomInput(std::uint64_t seed, std::uint8_t* out, std::size_t size) {
  test::Rng rng(seed * 0x2545f4914f6cdd1dULL + 0x1234567);
  for (std::size_t i = 0; i < size; i += 8) {
    const std::uint64_t w = rng.Next();
    std::memcpy(out + i, &w, std::min<std::size_t>(8, size - i));
  }
}

namespace {

constexpr std::size_t kSlots = 32;
constexpr std::size_t kMaxOps = 4096;  // per input
constexpr std::size_t kKiB = 1024;
constexpr std::size_t kMiB = 1024 * kKiB;
constexpr std::size_t kMaxSize = 4 * kMiB;  // largest size that must succeed
constexpr std::size_t kMaxAlignShift = 22;  // 4 MiB: must succeed
constexpr std::size_t kSizeMax = std::numeric_limits<std::size_t>::max();
constexpr std::size_t kPtrdiffMax =
    static_cast<std::size_t>(std::numeric_limits<std::ptrdiff_t>::max());
constexpr int kSentinel = 0x4d46;  // no E* constant has this value
// Blocks up to this size are filled and checked entirely; bigger ones at
// both ends (kEdge bytes) and one word per kStride in between.
constexpr std::size_t kFullFill = 64 * kKiB;
constexpr std::size_t kEdge = 4 * kKiB;
constexpr std::size_t kStride = 64 * kKiB;

// Sizes no allocator can satisfy (more than any 64-bit address space, or
// above PTRDIFF_MAX).
constexpr std::size_t kImpossibleSizes[] = {
    kSizeMax,           kSizeMax - 1,          kSizeMax - 4095,
    kSizeMax - 2 * kMiB, kSizeMax / 2 + 4096,  kPtrdiffMax + 1,
    kPtrdiffMax,        kPtrdiffMax - 4095,    kPtrdiffMax - 2 * kMiB + 1,
    std::size_t{1} << 62, (std::size_t{1} << 62) + 12345,
    kSizeMax - 15,
};

// Size-class boundaries of elfmalloc (and common ones of other allocators):
// sizes at and around them are where off-by-one bugs live.
constexpr std::size_t kBoundaries[] = {
    8,     16,     32,     48,      64,      80,      96,     112,
    128,   144,    160,    176,     192,     256,     512,    1024,
    2048,  4096,   8192,   16384,   32768,   65536,   131072, 262144,
    524288, 1048576, 2097152, 4096 * 3, 4096 - 64, 262144 - 64,
    2097152 - 4096, 1048576 + 4096,
};

// ------------------------------------------------------------- the input

class Reader {
 public:
  Reader(const std::uint8_t* data, std::size_t size)
      : data_(data), size_(size) {}
  bool done() const { return pos_ >= size_; }
  std::size_t pos() const { return pos_; }
  std::uint8_t Byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  std::uint64_t Bytes(int n) {
    std::uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= std::uint64_t{Byte()} << (8 * i);
    return v;
  }
  std::uint16_t U16() { return static_cast<std::uint16_t>(Bytes(2)); }
  std::uint32_t U32() { return static_cast<std::uint32_t>(Bytes(4)); }
  std::uint64_t U64() { return Bytes(8); }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

// A size in [0, kMaxSize], biased towards small sizes and class boundaries.
std::size_t ReadSize(Reader& r) {
  const std::uint8_t b = r.Byte();
  switch (b >> 5) {
    case 0:
      return b & 31;  // 0 .. 31
    case 1:
      return r.U16() % 1025;  // small
    case 2:
      return r.U16();  // up to 64 KiB
    case 3: {
      const std::size_t base = kBoundaries[r.Byte() % std::size(kBoundaries)];
      const int delta = static_cast<int>(b & 7) - 3;  // -3 .. +4
      return static_cast<std::size_t>(
          std::max<long long>(0, static_cast<long long>(base) + delta));
    }
    case 4:
      return kMiB - 2 * kKiB + r.U32() % (kMaxSize - kMiB + 2 * kKiB + 1);
    case 5: {
      const std::size_t pages = 1 + r.Byte() % 64;
      const int delta = static_cast<int>(b & 7) - 3;
      return static_cast<std::size_t>(
          static_cast<long long>(pages * 4096) + delta);
    }
    case 6:
      return std::size_t{1} << (b % 23);  // 1 .. 4 MiB
    default:
      return r.Byte();
  }
}

// A valid alignment: a power of two from 1 to 4 MiB.
std::size_t ReadAlignment(Reader& r) {
  return std::size_t{1} << (r.Byte() % (kMaxAlignShift + 1));
}

std::size_t PageSize() {
  static const std::size_t page =
      static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return page;
}

// The alignment malloc(n) / realloc(p, n) must have: the fundamental
// alignment, or less for blocks too small to hold an object needing it.
std::size_t MallocAlignment(std::size_t n) {
  if (n == 0) return 1;
  return std::min<std::size_t>(alignof(std::max_align_t), std::bit_floor(n));
}

// ------------------------------------------------------------ the blocks

enum class Kind : std::uint8_t {
  kMalloc,  // also calloc, realloc, reallocarray: free / free_sized
  kAlignedAlloc,  // free / free_aligned_sized
  kOtherAligned,  // posix_memalign, memalign, valloc, pvalloc: free
  kNew,           // operator new (nothrow too): (sized) operator delete
  kNewAligned,    // aligned operator new: aligned sized operator delete
};

const char* KindName(Kind k) {
  switch (k) {
    case Kind::kMalloc:
      return "malloc-family";
    case Kind::kAlignedAlloc:
      return "aligned_alloc";
    case Kind::kOtherAligned:
      return "memalign-family";
    case Kind::kNew:
      return "operator new";
    case Kind::kNewAligned:
      return "aligned operator new";
  }
  return "?";
}

struct Block {
  void* p = nullptr;
  std::size_t size = 0;    // as requested (for sized frees)
  std::size_t align = 0;   // as requested (aligned forms)
  std::size_t usable = 0;  // malloc_usable_size when it was filled
  std::uint64_t key = 0;
  Kind kind = Kind::kMalloc;
};

// The regions of a block of `usable` bytes that carry the pattern.
template <class F>
void ForEachRegion(std::size_t usable, F&& f) {
  if (usable <= kFullFill) {
    f(0, usable);
    return;
  }
  f(0, kEdge);
  for (std::size_t off = kStride; off + 8 <= usable - kEdge; off += kStride) {
    f(off, 8);
  }
  f(usable - kEdge, kEdge);
}

std::uint64_t RegionKey(std::uint64_t key, std::size_t off) {
  return key ^ (off * 0x9e3779b97f4a7c15ULL);
}

// ------------------------------------------------------------ the state

class Interpreter;

// Reports a broken promise and aborts.
[[noreturn]] __attribute__((format(printf, 2, 3))) void Violation(
    const Interpreter& in, const char* fmt, ...);

// The helper thread: allocates and frees on request, so that blocks cross
// threads (remote frees, and frees of blocks from a thread that is idle).
// The caller waits for each request, so the order of allocator calls is
// still fixed by the input. Lives for the rest of the process (detached,
// never destroyed: a static std::thread would terminate the process at
// exit).
class Helper {
 public:
  static Helper& Get() {
    static Helper* const helper = new Helper();
    return *helper;
  }

  struct Result {
    void* p;
    int err_after;  // errno in the helper after its call (set to kSentinel
                    // before the call)
  };
  Result Malloc(const MallocApi& api, std::size_t n) {
    return Run(api, nullptr, n);
  }
  Result Free(const MallocApi& api, void* p) { return Run(api, p, 0); }

 private:
  Helper() { std::thread([this] { Loop(); }).detach(); }

  Result Run(const MallocApi& api, void* p, std::size_t n) {
    std::unique_lock<std::mutex> l(mu_);
    api_ = &api;
    p_ = p;
    n_ = n;
    pending_ = true;
    cv_.notify_all();
    cv_.wait(l, [this] { return !pending_; });
    return {result_, err_};
  }

  void Loop() {
    std::unique_lock<std::mutex> l(mu_);
    for (;;) {
      cv_.wait(l, [this] { return pending_; });
      errno = kSentinel;
      if (p_ != nullptr) {
        api_->free(p_);
        result_ = nullptr;
      } else {
        result_ = api_->malloc(n_);
      }
      err_ = errno;
      pending_ = false;
      cv_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  bool pending_ = false;
  const MallocApi* api_ = nullptr;
  void* p_ = nullptr;
  std::size_t n_ = 0;
  void* result_ = nullptr;
  int err_ = 0;
};

bool TraceEnabled() {
  static const bool on = [] {
    const char* v = getenv("MALLOC_FUZZ_TRACE");
    return v != nullptr && v[0] != '\0' && v[0] != '0';
  }();
  return on;
}

class Interpreter {
 public:
  Interpreter(const MallocApi& api, const std::uint8_t* data,
              std::size_t size)
      : api_(api), r_(data, size) {}

  Stats Run() {
    stats_.inputs = 1;
    while (!r_.done() && stats_.operations < kMaxOps) {
      op_start_ = r_.pos();
      ++stats_.operations;
      Step();
    }
    op_ = "final check and free";
    for (std::size_t i = 0; i < kSlots; ++i) FreeSlot(i, /*how=*/0);
    return stats_;
  }

  const char* op() const { return op_; }
  std::size_t op_start() const { return op_start_; }
  std::uint64_t op_number() const { return stats_.operations; }
  const char* api_name() const { return api_.name; }

 private:
  // ----------------------------------------------------------- checks

  void Trace(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
    if (!TraceEnabled()) return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    test::Log("malloc_fuzz: #%llu @%zu %s", static_cast<unsigned long long>(
                                                 stats_.operations),
              op_start_, buf);
  }

  std::size_t Usable(void* p) {
    errno = kSentinel;
    const std::size_t u = api_.malloc_usable_size(p);
    if (errno != kSentinel) {
      Violation(*this, "malloc_usable_size(%p) changed errno to %d", p, errno);
    }
    return u;
  }

  // A successful allocation of `size` bytes with alignment `align`, errno
  // `err` after the call: checks it and records it in slot `s` (which must
  // be empty), filled with a fresh pattern. `zeroed`: bytes that must be 0.
  void Accept(std::size_t s, void* p, std::size_t size, std::size_t align,
              std::size_t min_usable, Kind kind, int err,
              std::size_t zeroed = 0) {
    if (p == nullptr) {
      Violation(*this, "%s of %zu bytes (alignment %zu) failed, errno %d", op_,
                size, align, err);
    }
    if (err != kSentinel) {
      Violation(*this, "%s of %zu bytes succeeded but changed errno to %d",
                op_, size, err);
    }
    if (reinterpret_cast<std::uintptr_t>(p) % align != 0) {
      Violation(*this, "%s of %zu bytes returned %p, not aligned to %zu", op_,
                size, p, align);
    }
    const std::size_t usable = Usable(p);
    if (usable < min_usable) {
      Violation(*this,
                "%s of %zu bytes: malloc_usable_size(%p) = %zu < %zu", op_,
                size, p, usable, min_usable);
    }
    if (zeroed != 0) {
      const unsigned char* c = static_cast<const unsigned char*>(p);
      for (std::size_t i = 0; i < zeroed; ++i) {
        if (c[i] != 0) {
          Violation(*this, "%s: byte %zu of %zu of %p is %#x, not zero", op_,
                    i, zeroed, p, c[i]);
        }
      }
      stats_.bytes_checked += zeroed;
    }
    const auto lo = reinterpret_cast<std::uintptr_t>(p);
    const std::uintptr_t hi = lo + std::max<std::size_t>(usable, 1);
    for (std::size_t i = 0; i < kSlots; ++i) {
      const Block& o = slots_[i];
      if (o.p == nullptr) continue;
      const auto olo = reinterpret_cast<std::uintptr_t>(o.p);
      const std::uintptr_t ohi = olo + std::max<std::size_t>(o.usable, 1);
      if (lo < ohi && olo < hi) {
        Violation(*this,
                  "%s returned %p (+%zu usable), overlapping the live %s "
                  "block %p (+%zu) in slot %zu",
                  op_, p, usable, KindName(o.kind), o.p, o.usable, i);
      }
    }
    if (slots_[s].p != nullptr) {
      Violation(*this, "internal: slot %zu not empty", s);
    }
    Block& b = slots_[s];
    b.p = p;
    b.size = size;
    b.align = align;
    b.kind = kind;
    Fill(b, usable);
    ++stats_.allocations;
    Trace("%s(%zu, align %zu) -> %p usable %zu in slot %zu", op_, size, align,
          p, usable, s);
  }

  void Fill(Block& b, std::size_t usable) {
    b.usable = usable;
    b.key = test::PatternKey(b.p, ++seed_);
    char* c = static_cast<char*>(b.p);
    ForEachRegion(usable, [&](std::size_t off, std::size_t len) {
      test::FillPattern(c + off, len, RegionKey(b.key, off));
    });
  }

  // Checks the first `keep` bytes of the pattern of a block of `usable`
  // bytes filled with `key`, now at `p`.
  void CheckContents(const void* p, std::size_t usable, std::uint64_t key,
                     std::size_t keep, const char* what) {
    const char* c = static_cast<const char*>(p);
    ForEachRegion(usable, [&](std::size_t off, std::size_t len) {
      if (off >= keep) return;
      const std::size_t n = std::min(len, keep - off);
      const std::size_t bad = test::CheckPattern(c + off, n, RegionKey(key, off));
      if (bad != SIZE_MAX) {
        Violation(*this,
                  "%s: %p (usable %zu, checking %zu bytes) corrupted at "
                  "offset %zu",
                  what, p, usable, keep, off + bad);
      }
      stats_.bytes_checked += n;
    });
  }

  void CheckBlock(const Block& b, const char* what) {
    CheckContents(b.p, b.usable, b.key, b.usable, what);
    const std::size_t u = Usable(b.p);
    if (u != b.usable) {
      Violation(*this, "%s: malloc_usable_size(%p) changed from %zu to %zu",
                what, b.p, b.usable, u);
    }
  }

  // --------------------------------------------------------- operations

  std::size_t Slot() { return r_.Byte() % kSlots; }

  // An empty slot (freeing what is in the chosen one first).
  std::size_t EmptySlot() {
    const std::size_t s = Slot();
    FreeSlot(s, r_.Byte());
    return s;
  }

  void DoMalloc() {
    op_ = "malloc";
    const std::size_t s = EmptySlot();
    const std::size_t n = ReadSize(r_);
    errno = kSentinel;
    void* p = api_.malloc(n);
    Accept(s, p, n, MallocAlignment(n), n, Kind::kMalloc, errno);
  }

  void DoCalloc() {
    op_ = "calloc";
    const std::size_t s = EmptySlot();
    const std::size_t total = ReadSize(r_);
    const std::size_t m = 1 + r_.Byte() % 24;
    const std::size_t n = total / m;
    const bool swap = (r_.Byte() & 1) != 0;
    errno = kSentinel;
    void* p = swap ? api_.calloc(m, n) : api_.calloc(n, m);
    Accept(s, p, n * m, MallocAlignment(n * m), n * m, Kind::kMalloc, errno,
           n * m);
  }

  void DoReallocNull() {
    const std::size_t s = EmptySlot();
    const std::size_t n = ReadSize(r_);
    errno = kSentinel;
    void* p;
    if ((r_.Byte() & 1) != 0 && api_.reallocarray != nullptr) {
      op_ = "reallocarray(NULL)";
      p = api_.reallocarray(nullptr, n, 1);
    } else {
      op_ = "realloc(NULL)";
      p = api_.realloc(nullptr, n);
    }
    Accept(s, p, n, MallocAlignment(n), n, Kind::kMalloc, errno);
  }

  void DoPosixMemalign() {
    op_ = "posix_memalign";
    const std::size_t s = EmptySlot();
    const std::size_t n = ReadSize(r_);
    const std::size_t a = ReadAlignment(r_);
    void* p = kUntouched;
    errno = kSentinel;
    const int rc = api_.posix_memalign(&p, a, n);
    const int err = errno;
    if (a < sizeof(void*)) {
      if (rc != EINVAL || p != kUntouched || err != kSentinel) {
        Violation(*this,
                  "posix_memalign(alignment %zu, %zu) = %d, *memptr %p, "
                  "errno %d; want EINVAL, untouched, errno unchanged",
                  a, n, rc, p, err);
      }
      ++stats_.expected_failures;
      return;
    }
    if (rc != 0) {
      Violation(*this, "posix_memalign(alignment %zu, %zu) = %d", a, n, rc);
    }
    Accept(s, p, n, a, n, Kind::kOtherAligned, err);
  }

  void DoAlignedAlloc() {
    const std::size_t s = EmptySlot();
    const std::size_t n = ReadSize(r_);
    std::size_t a = ReadAlignment(r_);
    const std::uint8_t how = r_.Byte();
    // Sometimes a non-power-of-two alignment: memalign rounds it up to the
    // next power of two (every glibc, malloc_bind); aligned_alloc fails with
    // EINVAL (glibc >= 2.38, malloc_bind) or rounds up (glibc <= 2.37).
    if ((how & 6) == 6 && a > 2) a = a - 1 - (how >> 4) % (a / 2);
    const std::size_t want = std::bit_ceil(a);
    errno = kSentinel;
    void* p;
    Kind kind;
    if ((how & 1) != 0) {
      op_ = "aligned_alloc";
      p = api_.aligned_alloc(a, n);
      kind = std::has_single_bit(a) ? Kind::kAlignedAlloc : Kind::kOtherAligned;
    } else {
      op_ = "memalign";
      p = api_.memalign(a, n);
      kind = Kind::kOtherAligned;
    }
    if (p == nullptr && errno == EINVAL && !std::has_single_bit(a) &&
        (!api_.nonpow2_alignment_rounds_up || (how & 1) != 0)) {
      ++stats_.expected_failures;
      return;
    }
    Accept(s, p, n, want, n, kind, errno);
  }

  void DoValloc() {
    const std::size_t s = EmptySlot();
    const std::size_t n = ReadSize(r_);
    const std::size_t page = PageSize();
    errno = kSentinel;
    if ((r_.Byte() & 1) != 0) {
      op_ = "valloc";
      void* p = api_.valloc(n);
      Accept(s, p, n, page, n, Kind::kOtherAligned, errno);
    } else {
      op_ = "pvalloc";
      void* p = api_.pvalloc(n);
      std::size_t want = (n + page - 1) / page * page;
      if (n == 0 && api_.pvalloc_zero_is_page) want = page;
      Accept(s, p, n, page, want, Kind::kOtherAligned, errno);
    }
  }

  void DoNew() {
    if (api_.op_new == nullptr) return;
    const std::size_t s = EmptySlot();
    const std::size_t n = ReadSize(r_);
    const std::uint8_t how = r_.Byte();
    const bool aligned = (how & 1) != 0;
    const bool nothrow = (how & 2) != 0;
    const std::size_t a = std::max<std::size_t>(ReadAlignment(r_), 1);
    errno = kSentinel;
    void* p = nullptr;
    try {
      if (aligned) {
        op_ = nothrow ? "operator new(align, nothrow)" : "operator new(align)";
        p = nothrow ? api_.op_new_aligned_nothrow(n, a)
                    : api_.op_new_aligned(n, a);
      } else {
        op_ = nothrow ? "operator new(nothrow)" : "operator new";
        p = nothrow ? api_.op_new_nothrow(n) : api_.op_new(n);
      }
    } catch (const std::bad_alloc&) {
      Violation(*this, "%s(%zu) threw std::bad_alloc", op_, n);
    }
    Accept(s, p, n, aligned ? a : MallocAlignment(n), n,
           aligned ? Kind::kNewAligned : Kind::kNew, errno);
  }

  // Frees slot s (if it holds a block) with a deallocator valid for it,
  // chosen by `how`; checks its pattern first.
  void FreeSlot(std::size_t s, std::uint8_t how) {
    Block& b = slots_[s];
    if (b.p == nullptr) return;
    CheckBlock(b, "before free");
    errno = kSentinel;
    const char* name = "free";
    switch (b.kind) {
      case Kind::kMalloc:
        if ((how & 3) == 1 && api_.free_sized != nullptr) {
          name = "free_sized";
          api_.free_sized(b.p, b.size);
        } else {
          api_.free(b.p);
        }
        break;
      case Kind::kAlignedAlloc:
        if ((how & 3) == 1 && api_.free_aligned_sized != nullptr) {
          name = "free_aligned_sized";
          api_.free_aligned_sized(b.p, b.align, b.size);
        } else {
          api_.free(b.p);
        }
        break;
      case Kind::kOtherAligned:
        api_.free(b.p);
        break;
      case Kind::kNew:
        if ((how & 1) != 0) {
          name = "operator delete(sized)";
          api_.op_delete_sized(b.p, b.size);
        } else {
          name = "operator delete";
          api_.op_delete(b.p);
        }
        break;
      case Kind::kNewAligned:
        name = "operator delete(sized, align)";
        api_.op_delete_aligned_sized(b.p, b.size, b.align);
        break;
    }
    if (errno != kSentinel) {
      Violation(*this, "%s(%p) changed errno to %d", name, b.p, errno);
    }
    Trace("%s(%p) slot %zu", name, b.p, s);
    b = Block();
    ++stats_.frees;
  }

  void DoFree() {
    op_ = "free";
    const std::size_t s = Slot();
    FreeSlot(s, r_.Byte());
  }

  void DoCheck() {
    op_ = "check";
    const Block& b = slots_[Slot()];
    if (b.p != nullptr) CheckBlock(b, "check");
  }

  // realloc or reallocarray of a malloc-family or aligned block to a new
  // size (0 included); the kept prefix is checked before the new block is
  // refilled.
  void DoReallocChecked() {
    const std::size_t s = Slot();
    Block& b = slots_[s];
    if (b.p == nullptr || b.kind == Kind::kNew || b.kind == Kind::kNewAligned) {
      return;
    }
    std::size_t n = ReadSize(r_);
    const std::uint8_t how = r_.Byte();
    if ((how & 7) == 0) n = 0;
    CheckBlock(b, "before realloc");
    const Block old = b;
    errno = kSentinel;
    void* q;
    if ((how & 8) != 0 && api_.reallocarray != nullptr) {
      op_ = "reallocarray";
      const std::size_t m = 1 + (how >> 4);
      const std::size_t k = n / m;
      n = k * m;
      q = (how & 16) != 0 ? api_.reallocarray(old.p, m, k)
                          : api_.reallocarray(old.p, k, m);
    } else {
      op_ = "realloc";
      q = api_.realloc(old.p, n);
    }
    const int err = errno;
    ++stats_.reallocs;
    if (n == 0) {
      // glibc: realloc(p, 0) frees p and returns NULL (errno untouched).
      if (q != nullptr) {
        Violation(*this, "%s(%p, 0) returned %p, not NULL", op_, old.p, q);
      }
      if (err != kSentinel) {
        Violation(*this, "%s(%p, 0) changed errno to %d", op_, old.p, err);
      }
      Trace("%s(%p, 0) freed slot %zu", op_, old.p, s);
      b = Block();
      ++stats_.frees;
      return;
    }
    if (q == nullptr) {
      Violation(*this, "%s(%p, %zu) failed, errno %d", op_, old.p, n, err);
    }
    // The contents must have moved with the block: min(old usable, n).
    CheckContents(q, old.usable, old.key, std::min(old.usable, n),
                  "contents kept by realloc");
    b = Block();
    Accept(s, q, n, MallocAlignment(n), n, Kind::kMalloc, err);
  }

  // The helper thread allocates a block for us, or frees one of ours.
  void DoRemote() {
    const std::size_t s = Slot();
    if (slots_[s].p != nullptr) {
      op_ = "remote free";
      Block& b = slots_[s];
      if (b.kind == Kind::kNew || b.kind == Kind::kNewAligned) {
        FreeSlot(s, r_.Byte());
        return;
      }
      CheckBlock(b, "before remote free");
      const Helper::Result res = Helper::Get().Free(api_, b.p);
      if (res.err_after != kSentinel) {
        Violation(*this, "free(%p) in the helper thread changed errno to %d",
                  b.p, res.err_after);
      }
      Trace("remote free(%p) slot %zu", b.p, s);
      b = Block();
      ++stats_.frees;
    } else {
      op_ = "remote malloc";
      const std::size_t n = ReadSize(r_);
      const Helper::Result res = Helper::Get().Malloc(api_, n);
      Accept(s, res.p, n, MallocAlignment(n), n, Kind::kMalloc, res.err_after);
    }
    ++stats_.remote_ops;
  }

  // Up to 64 blocks of one size, filled, checked and freed in a shuffled
  // order: whole slabs fill up and turn over.
  void DoBurst() {
    op_ = "burst";
    std::size_t n = ReadSize(r_);
    if (n > 64 * kKiB) n = n % (64 * kKiB);
    const std::size_t count = 1 + r_.Byte() % 64;
    test::Rng rng(r_.Byte() + 1);
    void* ps[64];
    std::uint64_t keys[64];
    for (std::size_t i = 0; i < count; ++i) {
      errno = kSentinel;
      ps[i] = api_.malloc(n);
      if (ps[i] == nullptr || errno != kSentinel) {
        Violation(*this, "burst malloc(%zu) #%zu = %p, errno %d", n, i, ps[i],
                  errno);
      }
      if (reinterpret_cast<std::uintptr_t>(ps[i]) % MallocAlignment(n) != 0) {
        Violation(*this, "burst malloc(%zu) = %p misaligned", n, ps[i]);
      }
      keys[i] = test::PatternKey(ps[i], ++seed_);
      test::FillPattern(ps[i], n, keys[i]);
    }
    for (std::size_t i = count; i > 1; --i) {
      const std::size_t j = rng.Below(i);
      std::swap(ps[i - 1], ps[j]);
      std::swap(keys[i - 1], keys[j]);
    }
    for (std::size_t i = 0; i < count; ++i) {
      const std::size_t bad = test::CheckPattern(ps[i], n, keys[i]);
      if (bad != SIZE_MAX) {
        Violation(*this, "burst block %p of %zu bytes corrupted at %zu", ps[i],
                  n, bad);
      }
      api_.free(ps[i]);
    }
    stats_.allocations += count;
    stats_.frees += count;
    Trace("burst of %zu x %zu", count, n);
  }

  void DoTrim() {
    if (api_.malloc_trim == nullptr) return;
    op_ = "malloc_trim";
    errno = kSentinel;
    const int rc = api_.malloc_trim(0);
    if ((rc != 0 && rc != 1) || errno != kSentinel) {
      Violation(*this, "malloc_trim(0) = %d, errno %d", rc, errno);
    }
    for (const Block& b : slots_) {
      if (b.p != nullptr) CheckBlock(b, "after malloc_trim");
    }
  }

  // Requests that must fail (or, for a few huge alignments, may fail).
  void DoImpossible() {
    const std::uint8_t which = r_.Byte();
    const std::size_t huge =
        kImpossibleSizes[r_.Byte() % std::size(kImpossibleSizes)];
    // An alignment from 1 to 2^63 (every power of two).
    const std::size_t align = std::size_t{1} << (r_.Byte() % 64);
    // A product of two factors that overflows or exceeds PTRDIFF_MAX: one
    // factor at least 2^62 / the other.
    const std::size_t f1 = 2 + r_.Byte() % 255;
    const std::size_t f2 = std::max(huge / 2 + 1, (std::size_t{1} << 62) / f1 + 1);
    const bool swap = (r_.Byte() & 1) != 0;
    const std::size_t a1 = swap ? f2 : f1;
    const std::size_t a2 = swap ? f1 : f2;
    errno = kSentinel;
    void* p = nullptr;
    int rc = 0;
    switch (which % 11) {
      case 0:
        op_ = "malloc(impossible)";
        p = api_.malloc(huge);
        break;
      case 1:
        op_ = "calloc(overflowing)";
        p = api_.calloc(a1, a2);
        break;
      case 2:
        op_ = "calloc(impossible, 1)";
        p = swap ? api_.calloc(1, huge) : api_.calloc(huge, 1);
        break;
      case 3:
        op_ = "valloc(impossible)";
        p = api_.valloc(huge);
        break;
      case 4:
        op_ = "pvalloc(impossible)";
        p = api_.pvalloc(huge);
        break;
      case 5:
        op_ = "memalign(impossible)";
        p = api_.memalign(align, huge);
        break;
      case 6:
        op_ = "aligned_alloc(impossible)";
        p = api_.aligned_alloc(align, huge);
        break;
      case 7: {
        op_ = "posix_memalign(impossible)";
        void* out = kUntouched;
        rc = api_.posix_memalign(&out, align, huge);
        const int err = errno;
        const int want = align < sizeof(void*) ? EINVAL : ENOMEM;
        if (rc != want || out != kUntouched ||
            err != (want == EINVAL ? kSentinel : ENOMEM)) {
          Violation(*this,
                    "posix_memalign(alignment %zu, %zu) = %d, *memptr %p, "
                    "errno %d; want %d, untouched",
                    align, huge, rc, out, err, want);
        }
        ++stats_.expected_failures;
        return;
      }
      case 8:
        DoImpossibleRealloc(huge, a1, a2, which);
        return;
      case 9:
        DoImpossibleAlignment(align);
        return;
      case 10:
        DoImpossibleNew(huge, align, which);
        return;
    }
    const int err = errno;
    if (p != nullptr || err != ENOMEM) {
      Violation(*this,
                "%s (size %zu, alignment %zu, factors %zu x %zu) = %p, errno "
                "%d; want NULL, ENOMEM",
                op_, huge, align, a1, a2, p, err);
    }
    ++stats_.expected_failures;
  }

  // A failed realloc / reallocarray leaves the block exactly as it was.
  void DoImpossibleRealloc(std::size_t huge, std::size_t a1, std::size_t a2,
                           std::uint8_t which) {
    const std::size_t s = Slot();
    Block& b = slots_[s];
    if (b.p == nullptr || b.kind == Kind::kNew || b.kind == Kind::kNewAligned) {
      return;
    }
    errno = kSentinel;
    void* q;
    if ((which & 16) != 0 && api_.reallocarray != nullptr) {
      op_ = "reallocarray(overflowing)";
      q = api_.reallocarray(b.p, a1, a2);
    } else {
      op_ = "realloc(impossible)";
      q = api_.realloc(b.p, huge);
    }
    const int err = errno;
    if (q != nullptr || err != ENOMEM) {
      Violation(*this, "%s(%p) = %p, errno %d; want NULL, ENOMEM", op_, b.p, q,
                err);
    }
    CheckBlock(b, "block after a failed realloc");
    ++stats_.expected_failures;
  }

  // A small size at an alignment from 2^23 to 2^63: 2^58 and above cannot
  // exist in any address space (must fail); below that the request may
  // succeed (then it is checked and freed) or fail with ENOMEM.
  void DoImpossibleAlignment(std::size_t align) {
    if (align <= (std::size_t{1} << kMaxAlignShift)) {
      align <<= 23;
      if (align == 0) align = std::size_t{1} << 63;
    }
    // Keep possible-but-huge alignments cheap: at most 1 GiB of address
    // space (a sanitizer maps shadow for whatever the allocator reserves).
    if (align > (std::size_t{1} << 30) && align < (std::size_t{1} << 58)) {
      align = std::size_t{1} << 58;
    }
    const bool must_fail = align >= (std::size_t{1} << 58);
    const std::size_t n = 1 + (align & 0xff);
    void* out = kUntouched;
    errno = kSentinel;
    op_ = "posix_memalign(huge alignment)";
    const int rc = api_.posix_memalign(&out, align, n);
    const int err = errno;
    if (rc == 0 && !must_fail) {
      if (reinterpret_cast<std::uintptr_t>(out) % align != 0 ||
          err != kSentinel || Usable(out) < n) {
        Violation(*this, "posix_memalign(%zu, %zu) = %p (errno %d) is wrong",
                  align, n, out, err);
      }
      api_.free(out);
      return;
    }
    if (rc != ENOMEM || out != kUntouched || err != ENOMEM) {
      Violation(*this,
                "posix_memalign(alignment %zu, %zu) = %d, *memptr %p, errno "
                "%d; want ENOMEM, untouched",
                align, n, rc, out, err);
    }
    ++stats_.expected_failures;
  }

  void DoImpossibleNew(std::size_t huge, std::size_t align,
                       std::uint8_t which) {
    if (api_.op_new == nullptr) return;
    const bool aligned = (which & 32) != 0;
    if (aligned && !api_.aligned_new_checks_overflow) return;
    const bool nothrow = (which & 64) != 0;
    void* p = nullptr;
    bool threw = false;
    op_ = "operator new(impossible)";
    try {
      if (aligned) {
        p = nothrow ? api_.op_new_aligned_nothrow(huge, align)
                    : api_.op_new_aligned(huge, align);
      } else {
        p = nothrow ? api_.op_new_nothrow(huge) : api_.op_new(huge);
      }
    } catch (const std::bad_alloc&) {
      threw = true;
    }
    if (p != nullptr || threw == nothrow) {
      Violation(*this,
                "operator new(%zu%s%s) = %p, %s; want %s", huge,
                aligned ? ", align" : "", nothrow ? ", nothrow" : "", p,
                threw ? "threw bad_alloc" : "did not throw",
                nothrow ? "nullptr" : "std::bad_alloc");
    }
    ++stats_.expected_failures;
  }

  void Step() {
    const std::uint8_t op = r_.Byte();
    switch (op % 16) {
      case 0:
      case 1:
        DoMalloc();
        break;
      case 2:
        DoCalloc();
        break;
      case 3:
        DoReallocNull();
        break;
      case 4:
        DoPosixMemalign();
        break;
      case 5:
        DoAlignedAlloc();
        break;
      case 6:
        DoValloc();
        break;
      case 7:
        DoNew();
        break;
      case 8:
      case 9:
        DoFree();
        break;
      case 10:
      case 11:
        DoReallocChecked();
        break;
      case 12:
        DoCheck();
        break;
      case 13:
        DoRemote();
        break;
      case 14:
        if ((op & 0x30) == 0) {
          DoTrim();
        } else {
          DoBurst();
        }
        break;
      case 15:
        DoImpossible();
        break;
    }
  }

  static inline void* const kUntouched =
      reinterpret_cast<void*>(std::uintptr_t{0x5a5a5a50});

  const MallocApi& api_;
  Reader r_;
  Block slots_[kSlots];
  Stats stats_;
  std::uint64_t seed_ = 0;
  const char* op_ = "start";
  std::size_t op_start_ = 0;
};

void Violation(const Interpreter& in, const char* fmt, ...) {
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  test::Log("malloc_fuzz: FAILED (%s) at operation #%llu (%s, input offset "
            "%zu): %s",
            in.api_name(), static_cast<unsigned long long>(in.op_number()),
            in.op(), in.op_start(), msg);
  abort();
}

}  // namespace

Stats RunMallocOps(const MallocApi& api, const std::uint8_t* data,
                   std::size_t size) {
  Interpreter in(api, data, size);
  return in.Run();
}

}  // namespace elfc::fuzz
