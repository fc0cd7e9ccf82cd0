// elfmalloc's options: the one table of every tunable (name, environment
// variable, type, default, valid range, meaning), the parser that reads them
// from the environment once at start-up, and the values in effect.
//
// Why one table: a tunable defined next to the code it tunes gets its own
// ad-hoc parsing, its own idea of a bad value and no place in a listing.
// Here every option is parsed, range-checked, reported and documented the
// same way (ELFMALLOC_VERBOSE=1 prints the table's effective values;
// elfc/OPTIONS.md is checked against it by //elfc:options_doc_test).
//
// Parsing rules, for every variable whose name starts with ELFMALLOC_:
//   * numbers are plain decimal digits: a sign, a space, a suffix or any
//     other character makes the value invalid (the default is used); a value
//     outside the option's range, including one past 2^64 - 1, saturates to
//     the nearest bound (never wraps);
//   * booleans are 1/0, true/false, yes/no, on/off, any case;
//   * an empty value is invalid (the default is used);
//   * an unknown ELFMALLOC_ name is ignored (the warning names the nearest
//     option if it is at most three edits away: a misspelling).
// Each of these produces exactly one warning line on stderr, naming the
// variable, its value and what is used instead:
//   elfc: ELFMALLOC_DECAY_MS=-5: not an unsigned decimal number; using the default 1000
// written with write(2) from a stack buffer (the parser runs inside the
// first malloc, before stdio may be used).
//
// Reading the environment allocates nothing: glibc's environ is scanned
// directly, and numbers are parsed by hand (strtoull accepts signs and
// leading spaces, and wraps negative numbers).
//
// Threads: LoadOptions() runs once (under a lock, idempotent); values are
// atomics afterwards, so run-time changes (SetOption) are visible to every
// reader without a lock.
#ifndef ELFMALLOC_OPTIONS_H_
#define ELFMALLOC_OPTIONS_H_

#include <cstddef>
#include <cstdint>

namespace elfmalloc {

enum class OptionType : std::uint8_t {
  kUnsigned,      // a count
  kMilliseconds,  // a duration in ms
  kMebibytes,     // a size in MiB
  kBool,          // 0 or 1
  kPath,          // a file name (no number)
};

// Indices into kOptionSpecs.
enum class OptionId : std::uint8_t {
  kDecayMs,
  kMaxDirtySmallMb,
  kMaxDirtyMidMb,
  kMaxDirtyMediumMb,
  kMaxDirtyMb,
  kLargeCacheMb,
  kQuarantineBytes,
  kQuarantineBlocks,
  kBackgroundDecay,
  kVerbose,
  kPrintStats,
  kStatsJson,
  kStatsFile,
  kCount,
};
inline constexpr std::size_t kNumOptions =
    static_cast<std::size_t>(OptionId::kCount);

struct OptionSpec {
  OptionId id;
  const char* name;  // elfc_set_option / elfc_get_option name
  const char* env;   // environment variable
  OptionType type;
  std::uint64_t default_value;
  std::uint64_t min_value;
  std::uint64_t max_value;
  bool runtime;  // settable while the program runs (SetOption)
  // An alias sets other options and has no value of its own (max_dirty_mb:
  // all three max_dirty_*_mb at once; reading it gives their maximum).
  bool alias;
  const char* meaning;
};

// The decay rule's period is capped at a day: longer periods mean "never"
// in practice, and the cap keeps now + period far from wrapping.
inline constexpr std::uint64_t kMaxDecayMs = 86'400'000;
// 1 TiB of dirty pages per page size: beyond any machine this runs on, and
// far from overflowing size_t when converted to bytes.
inline constexpr std::uint64_t kMaxDirtyMiB = std::uint64_t{1} << 20;

// The table. Order matches OptionId.
inline constexpr OptionSpec kOptionSpecs[kNumOptions] = {
    {OptionId::kDecayMs, "decay_ms", "ELFMALLOC_DECAY_MS",
     OptionType::kMilliseconds, 1000, 0, kMaxDecayMs, true, false,
     "Decay period: dirty slab pages cached unused for a whole period are "
     "returned to the OS at its end; 0 disables the rule."},
    // 64 MiB of small and mid pages: a program that frees and reallocates
    // tens of MiB of small blocks in batches keeps them committed (Hoard's
    // threadtest with 2 KiB objects ran 10x slower at 16 MiB). 16 MiB of
    // 2 MiB pages: threads touch more and more of each cached medium page,
    // and 64 MiB let RSS creep by ~40 MiB over 2000 churning threads.
    {OptionId::kMaxDirtySmallMb, "max_dirty_small_mb",
     "ELFMALLOC_MAX_DIRTY_SMALL_MB", OptionType::kMebibytes, 64, 0,
     kMaxDirtyMiB, true, false,
     "Dirty 64 KiB slab pages kept committed beyond 1/8 of the pages in "
     "use; above it freed pages are returned to the OS at once."},
    {OptionId::kMaxDirtyMidMb, "max_dirty_mid_mb", "ELFMALLOC_MAX_DIRTY_MID_MB",
     OptionType::kMebibytes, 64, 0, kMaxDirtyMiB, true, false,
     "The same for 256 KiB slab pages (the 640 B..14 KiB classes)."},
    {OptionId::kMaxDirtyMediumMb, "max_dirty_medium_mb",
     "ELFMALLOC_MAX_DIRTY_MEDIUM_MB", OptionType::kMebibytes, 16, 0,
     kMaxDirtyMiB, true, false,
     "The same for 2 MiB slab pages (the 16..256 KiB classes)."},
    {OptionId::kMaxDirtyMb, "max_dirty_mb", "ELFMALLOC_MAX_DIRTY_MB",
     OptionType::kMebibytes, 0, 0, kMaxDirtyMiB, true, true,
     "Sets the three max_dirty_*_mb options at once (a specific one set in "
     "the environment wins)."},
    // 128 MiB: a program churning blocks of a few MiB to tens of MiB
    // reuses their pages without a system call or a page fault
    // (large_alloc.h, "Reuse"): four live blocks of 1-32 MiB, 2000
    // replacements, take 2.4M page faults with 32 MiB, 1.3M with 64 and
    // 75k with 128 (tcmalloc 42k): the free units of a working set spread
    // over more address space than the live bytes. glibc's heap keeps up to
    // 64 MiB free at its top for the same reason.
    {OptionId::kLargeCacheMb, "large_cache_mb", "ELFMALLOC_LARGE_CACHE_MB",
     OptionType::kMebibytes, 128, 0, kMaxDirtyMiB, true, false,
     "Resident memory of freed large blocks (above 256 KiB) kept for reuse, "
     "in all (or twice the bytes of live large blocks, if more); unused "
     "pages are purged after decay_ms and wholly free arenas unmapped; 0 "
     "purges freed blocks at once."},
    // The hardened build's per-thread quarantine of freed small blocks
    // (general_allocator.cc, "Quarantine"). 256 KiB and 1024 blocks: a
    // block written after its free is caught once 1024 later frees of the
    // thread (or 256 KiB of them) pushed it out, and a thread holds at most
    // that much freed memory out of reuse (100 threads: 25 MiB). Bigger
    // quarantines delay reuse longer and cost memory and cache misses.
    {OptionId::kQuarantineBytes, "quarantine_bytes",
     "ELFMALLOC_QUARANTINE_BYTES", OptionType::kUnsigned, 256 << 10, 0,
     std::uint64_t{1} << 30, false, false,
     "Hardened build only: bytes of freed blocks (up to 256 KiB) each "
     "thread keeps out of reuse (filled with a pattern, checked when they "
     "leave); 0 disables the quarantine."},
    {OptionId::kQuarantineBlocks, "quarantine_blocks",
     "ELFMALLOC_QUARANTINE_BLOCKS", OptionType::kUnsigned, 1024, 0,
     std::uint64_t{1} << 20, false, false,
     "Hardened build only: the most freed blocks each thread's quarantine "
     "holds; 0 disables the quarantine."},
    // Off by default: a thread of the allocator's own in every program is
    // a visible change (ps, /proc, programs that count their threads or
    // expect to be single-threaded), and a fork child runs without it.
    // What it gives: dirty pages and cached large blocks go back within
    // two decay periods even when the program makes no allocator call, or
    // only calls that its threads' caches serve (general_allocator.h,
    // "Background decay").
    {OptionId::kBackgroundDecay, "background_decay",
     "ELFMALLOC_BACKGROUND_DECAY", OptionType::kBool, 0, 0, 1, false, false,
     "Start a background thread (at load time) that applies the decay rule "
     "every quarter period (at least every 10 ms, at most every second), so "
     "that memory returns even when the program stops allocating."},
    {OptionId::kVerbose, "verbose", "ELFMALLOC_VERBOSE", OptionType::kBool, 0,
     0, 1, false, false,
     "Print the version, the build kind and every option in effect to "
     "stderr at start-up."},
    {OptionId::kPrintStats, "print_stats", "ELFMALLOC_PRINT_STATS",
     OptionType::kBool, 0, 0, 1, false, false,
     "Print statistics at exit, to stats_file if set, else to the standard "
     "error the program started with."},
    {OptionId::kStatsJson, "stats_json", "ELFMALLOC_STATS_JSON",
     OptionType::kBool, 0, 0, 1, false, false,
     "Statistics at exit as JSON instead of text."},
    {OptionId::kStatsFile, "stats_file", "ELFMALLOC_STATS_FILE",
     OptionType::kPath, 0, 0, 0, false, false,
     "Write statistics at exit to this file (created or truncated; %p is "
     "replaced by the process id); implies print_stats."},
};

inline constexpr const OptionSpec& Spec(OptionId id) {
  return kOptionSpecs[static_cast<std::size_t>(id)];
}

// The table entry named `name`: the option name ("decay_ms") or the
// environment variable ("ELFMALLOC_DECAY_MS"); nullptr if none.
const OptionSpec* FindOption(const char* name) noexcept;

// Longest stats_file accepted (longer values are ignored with a warning).
inline constexpr std::size_t kMaxPathLength = 1023;

// ---- Parsing (exposed for tests) ----

enum class ParseResult : std::uint8_t {
  kOk,
  kEmpty,      // ""
  kInvalid,    // not digits only / not a boolean word
  kOverflow,   // digits only, but past 2^64 - 1 (*out = UINT64_MAX)
};
// Plain decimal digits only.
ParseResult ParseUnsigned(const char* s, std::uint64_t* out) noexcept;
// 1/0, true/false, yes/no, on/off, case-insensitive.
ParseResult ParseBool(const char* s, bool* out) noexcept;

// A set of option values and where each came from.
enum class OptionSource : std::uint8_t { kDefault, kEnvironment, kRuntime };
struct OptionValues {
  std::uint64_t value[kNumOptions] = {};
  OptionSource source[kNumOptions] = {};
  char path[kMaxPathLength + 1] = {};  // stats_file ("" if unset)
};
// Fills *out from an environment block (envp, as environ: "NAME=value"
// strings, null-terminated), writing one warning line per bad or unknown
// ELFMALLOC_ variable to warn_fd (-1: none). Returns the number of
// warnings. Only the first occurrence of a name counts, as for getenv.
int ParseEnvironment(const char* const* envp, int warn_fd,
                     OptionValues* out) noexcept;

// ---- The process's options ----

// Reads the environment once (the first call; later calls return at once).
// Every accessor below calls it, so explicit calls are only needed to get
// the warnings out early.
void LoadOptions() noexcept;
std::uint64_t GetOption(OptionId id) noexcept;
OptionSource GetOptionSource(OptionId id) noexcept;
// stats_file, or "" when unset.
const char* StatsFile() noexcept;

enum class SetResult : std::uint8_t {
  kOk,
  kUnknown,     // no such option (or a path: not a number)
  kNotRuntime,  // fixed at start-up
  kOutOfRange,  // nothing changed
};
// Sets a runtime option (an alias sets its targets), then calls the apply
// hook so the allocator picks it up.
SetResult SetOption(OptionId id, std::uint64_t value) noexcept;
// Reads an option by name (an alias reads as the maximum of its targets).
// False for unknown names and paths.
bool GetOptionByName(const char* name, std::uint64_t* value) noexcept;
SetResult SetOptionByName(const char* name, std::uint64_t value) noexcept;

// The allocator's hook, called after every successful SetOption (the
// general allocator pushes decay and dirty caps into its page allocators).
void SetOptionsApplyHook(void (*hook)()) noexcept;

// Writes one line per option in effect to fd ("elfc: option NAME = VALUE
// UNIT (source; ENV)"); no allocation.
void WriteOptions(int fd) noexcept;

// write(2) all of buf to fd, retrying short writes and EINTR; no
// allocation. For every "elfc: ..." message.
void WriteAll(int fd, const char* buf, std::size_t len) noexcept;

}  // namespace elfmalloc

#endif  // ELFMALLOC_OPTIONS_H_
