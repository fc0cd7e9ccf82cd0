// The options table's parser: every bad form warns exactly once and falls
// back (default or saturated bound), booleans, aliases, unknown names, the
// run-time setters' validation, and the table's own consistency.
#include "elfmalloc/options.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace elfmalloc {
namespace {

// Parses `env` with warnings captured through a pipe.
struct Parsed {
  OptionValues values;
  int warnings = 0;
  std::string text;
};

Parsed Parse(std::vector<const char*> env) {
  env.push_back(nullptr);
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  Parsed p;
  p.warnings = ParseEnvironment(env.data(), fds[1], &p.values);
  close(fds[1]);
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof(buf))) > 0) p.text.append(buf, n);
  close(fds[0]);
  return p;
}

std::uint64_t Value(const Parsed& p, OptionId id) {
  return p.values.value[static_cast<std::size_t>(id)];
}
OptionSource Source(const Parsed& p, OptionId id) {
  return p.values.source[static_cast<std::size_t>(id)];
}
int Lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

TEST(ParseUnsignedTest, DigitsOnly) {
  std::uint64_t v = 7;
  EXPECT_EQ(ParseUnsigned("0", &v), ParseResult::kOk);
  EXPECT_EQ(v, 0u);
  EXPECT_EQ(ParseUnsigned("000123", &v), ParseResult::kOk);
  EXPECT_EQ(v, 123u);
  EXPECT_EQ(ParseUnsigned("18446744073709551615", &v), ParseResult::kOk);
  EXPECT_EQ(v, UINT64_MAX);
  EXPECT_EQ(ParseUnsigned("18446744073709551616", &v), ParseResult::kOverflow);
  EXPECT_EQ(v, UINT64_MAX);
  EXPECT_EQ(ParseUnsigned("99999999999999999999999999", &v),
            ParseResult::kOverflow);
  for (const char* bad : {"-5", "+5", " 5", "5 ", "5ms", "0x10", "1e3", "abc",
                          "1.5", "5\n"}) {
    EXPECT_EQ(ParseUnsigned(bad, &v), ParseResult::kInvalid) << bad;
  }
  EXPECT_EQ(ParseUnsigned("", &v), ParseResult::kEmpty);
}

TEST(ParseBoolTest, Words) {
  bool b = false;
  for (const char* t : {"1", "true", "TRUE", "Yes", "on", "ON"}) {
    b = false;
    EXPECT_EQ(ParseBool(t, &b), ParseResult::kOk) << t;
    EXPECT_TRUE(b) << t;
  }
  for (const char* f : {"0", "false", "False", "no", "NO", "off", "Off"}) {
    b = true;
    EXPECT_EQ(ParseBool(f, &b), ParseResult::kOk) << f;
    EXPECT_FALSE(b) << f;
  }
  for (const char* bad : {"2", "y", "n", "enable", "truee", " on", "10"}) {
    EXPECT_EQ(ParseBool(bad, &b), ParseResult::kInvalid) << bad;
  }
  EXPECT_EQ(ParseBool("", &b), ParseResult::kEmpty);
}

TEST(ParseEnvironmentTest, DefaultsWithoutWarnings) {
  const Parsed p = Parse({"PATH=/bin", "HOME=/", "ELFMALLOC_STRESS_SCALE=3",
                          "ELFC_TEST_PRELOAD=x"});
  EXPECT_EQ(p.warnings, 0);
  EXPECT_EQ(p.text, "");
  for (const OptionSpec& s : kOptionSpecs) {
    EXPECT_EQ(Value(p, s.id), s.default_value) << s.name;
    EXPECT_EQ(Source(p, s.id), OptionSource::kDefault) << s.name;
  }
  EXPECT_EQ(p.values.path[0], '\0');
}

TEST(ParseEnvironmentTest, GoodValues) {
  const Parsed p = Parse({"ELFMALLOC_DECAY_MS=250", "ELFMALLOC_VERBOSE=yes",
                          "ELFMALLOC_PRINT_STATS=off",
                          "ELFMALLOC_STATS_FILE=/tmp/s.%p",
                          "ELFMALLOC_MAX_DIRTY_MEDIUM_MB=3"});
  EXPECT_EQ(p.warnings, 0) << p.text;
  EXPECT_EQ(Value(p, OptionId::kDecayMs), 250u);
  EXPECT_EQ(Source(p, OptionId::kDecayMs), OptionSource::kEnvironment);
  EXPECT_EQ(Value(p, OptionId::kVerbose), 1u);
  EXPECT_EQ(Value(p, OptionId::kPrintStats), 0u);
  EXPECT_STREQ(p.values.path, "/tmp/s.%p");
  EXPECT_EQ(Value(p, OptionId::kMaxDirtyMediumMb), 3u);
  EXPECT_EQ(Value(p, OptionId::kMaxDirtySmallMb), 64u);
}

// The forms the old parser got wrong: a negative number wrapped, junk warned
// three times with an internal prefix, "no" meant yes.
TEST(ParseEnvironmentTest, EveryBadFormWarnsOnceAndFallsBack) {
  struct Case {
    const char* entry;
    OptionId id;
    std::uint64_t expect;
    const char* says;
  };
  const Case cases[] = {
      {"ELFMALLOC_DECAY_MS=-5", OptionId::kDecayMs, 1000,
       "elfc: ELFMALLOC_DECAY_MS=-5: not an unsigned decimal number; using "
       "the default 1000 ms\n"},
      {"ELFMALLOC_DECAY_MS=abc", OptionId::kDecayMs, 1000,
       "not an unsigned decimal number; using the default 1000 ms"},
      {"ELFMALLOC_DECAY_MS=+5", OptionId::kDecayMs, 1000, "not an unsigned"},
      {"ELFMALLOC_DECAY_MS=5 ", OptionId::kDecayMs, 1000, "not an unsigned"},
      {"ELFMALLOC_DECAY_MS=", OptionId::kDecayMs, 1000,
       "elfc: ELFMALLOC_DECAY_MS=: empty value; using the default 1000 ms\n"},
      {"ELFMALLOC_DECAY_MS=99999999999999999999999", OptionId::kDecayMs,
       kMaxDecayMs,
       "elfc: ELFMALLOC_DECAY_MS=99999999999999999999999: above the maximum "
       "86400000 ms; using 86400000 ms\n"},
      {"ELFMALLOC_DECAY_MS=86400001", OptionId::kDecayMs, kMaxDecayMs,
       "above the maximum"},
      {"ELFMALLOC_MAX_DIRTY_SMALL_MB=18446744073709551615",
       OptionId::kMaxDirtySmallMb, kMaxDirtyMiB, "using 1048576 MiB"},
      {"ELFMALLOC_PRINT_STATS=maybe", OptionId::kPrintStats, 0,
       "elfc: ELFMALLOC_PRINT_STATS=maybe: not a boolean (1/0, true/false, "
       "yes/no, on/off); using the default false\n"},
      {"ELFMALLOC_VERBOSE=2", OptionId::kVerbose, 0, "not a boolean"},
  };
  for (const Case& c : cases) {
    const Parsed p = Parse({c.entry});
    EXPECT_EQ(p.warnings, 1) << c.entry;
    EXPECT_EQ(Lines(p.text), 1) << c.entry << ": " << p.text;
    EXPECT_NE(p.text.find(c.says), std::string::npos)
        << c.entry << ": " << p.text;
    EXPECT_EQ(p.text.rfind("elfc: ", 0), 0u) << p.text;
    EXPECT_EQ(p.text.find("RAW"), std::string::npos) << p.text;
    EXPECT_EQ(Value(p, c.id), c.expect) << c.entry;
  }
}

TEST(ParseEnvironmentTest, UnknownNamesWarnOnceEach) {
  const Parsed p = Parse({"ELFMALLOC_DECAY=5", "ELFMALLOC_PRINTSTATS=1",
                          "ELFMALLOC_decay_ms=5", "NOT_OURS=1"});
  EXPECT_EQ(p.warnings, 3);
  EXPECT_EQ(Lines(p.text), 3) << p.text;
  EXPECT_NE(p.text.find("elfc: ELFMALLOC_DECAY=5: unknown option; ignored "
                        "(did you mean ELFMALLOC_DECAY_MS?)\n"),
            std::string::npos)
      << p.text;
  // Case differences are a mistake too, and close to the real name.
  EXPECT_NE(p.text.find("elfc: ELFMALLOC_decay_ms=5: unknown option; ignored "
                        "(did you mean ELFMALLOC_DECAY_MS?)\n"),
            std::string::npos)
      << p.text;
  EXPECT_NE(p.text.find("ELFMALLOC_PRINTSTATS=1"), std::string::npos);
  EXPECT_EQ(p.text.find("NOT_OURS"), std::string::npos);
  EXPECT_EQ(Value(p, OptionId::kDecayMs), 1000u);
}

TEST(ParseEnvironmentTest, FarFromEveryNameGetsNoSuggestion) {
  const Parsed p = Parse({"ELFMALLOC_SOMETHING_ELSE_ENTIRELY=1"});
  EXPECT_EQ(p.warnings, 1);
  EXPECT_NE(p.text.find("unknown option; ignored (ELFMALLOC_VERBOSE=1 lists "
                        "the options)\n"),
            std::string::npos)
      << p.text;
}

TEST(ParseEnvironmentTest, FirstOccurrenceWinsLikeGetenv) {
  const Parsed p = Parse({"ELFMALLOC_DECAY_MS=7", "ELFMALLOC_DECAY_MS=junk"});
  EXPECT_EQ(p.warnings, 0) << p.text;
  EXPECT_EQ(Value(p, OptionId::kDecayMs), 7u);
}

TEST(ParseEnvironmentTest, LongValuesAreCutInTheWarning) {
  const std::string entry = "ELFMALLOC_DECAY_MS=" + std::string(5000, 'x');
  const Parsed p = Parse({entry.c_str()});
  EXPECT_EQ(p.warnings, 1);
  EXPECT_EQ(Lines(p.text), 1);
  EXPECT_LT(p.text.size(), 400u);
  EXPECT_NE(p.text.find("...: not an unsigned"), std::string::npos) << p.text;
}

TEST(ParseEnvironmentTest, StatsFileTooLong) {
  const std::string entry = "ELFMALLOC_STATS_FILE=" + std::string(2000, 'f');
  const Parsed p = Parse({entry.c_str()});
  EXPECT_EQ(p.warnings, 1);
  EXPECT_EQ(p.values.path[0], '\0');
  EXPECT_EQ(Source(p, OptionId::kStatsFile), OptionSource::kDefault);
}

TEST(ParseEnvironmentTest, MaxDirtyAliasSetsTheUnsetTargets) {
  Parsed p = Parse({"ELFMALLOC_MAX_DIRTY_MB=5"});
  EXPECT_EQ(p.warnings, 0);
  EXPECT_EQ(Value(p, OptionId::kMaxDirtySmallMb), 5u);
  EXPECT_EQ(Value(p, OptionId::kMaxDirtyMidMb), 5u);
  EXPECT_EQ(Value(p, OptionId::kMaxDirtyMediumMb), 5u);
  // A specific variable wins whatever the order.
  p = Parse({"ELFMALLOC_MAX_DIRTY_MID_MB=9", "ELFMALLOC_MAX_DIRTY_MB=5"});
  EXPECT_EQ(Value(p, OptionId::kMaxDirtySmallMb), 5u);
  EXPECT_EQ(Value(p, OptionId::kMaxDirtyMidMb), 9u);
  EXPECT_EQ(Value(p, OptionId::kMaxDirtyMediumMb), 5u);
  // A bad alias leaves every default.
  p = Parse({"ELFMALLOC_MAX_DIRTY_MB=-1"});
  EXPECT_EQ(p.warnings, 1);
  EXPECT_NE(p.text.find("; ignored"), std::string::npos) << p.text;
  EXPECT_EQ(Value(p, OptionId::kMaxDirtySmallMb), 64u);
  EXPECT_EQ(Value(p, OptionId::kMaxDirtyMediumMb), 16u);
}

TEST(OptionTableTest, Consistent) {
  for (std::size_t i = 0; i < kNumOptions; ++i) {
    const OptionSpec& s = kOptionSpecs[i];
    EXPECT_EQ(static_cast<std::size_t>(s.id), i) << s.name;
    EXPECT_EQ(std::string(s.env).rfind("ELFMALLOC_", 0), 0u) << s.env;
    EXPECT_LE(s.min_value, s.default_value) << s.name;
    EXPECT_LE(s.default_value, s.max_value) << s.name;
    EXPECT_EQ(FindOption(s.name), &s);
    EXPECT_EQ(FindOption(s.env), &s);
    EXPECT_NE(std::string(s.meaning), "");
  }
  EXPECT_EQ(FindOption("nope"), nullptr);
  EXPECT_EQ(FindOption(nullptr), nullptr);
}

int g_hook_calls = 0;
void CountingHook() { ++g_hook_calls; }

TEST(SetOptionTest, ValidatesAndCallsTheHook) {
  SetOptionsApplyHook(&CountingHook);
  g_hook_calls = 0;
  EXPECT_EQ(SetOptionByName("decay_ms", 123), SetResult::kOk);
  EXPECT_EQ(g_hook_calls, 1);
  std::uint64_t v = 0;
  EXPECT_TRUE(GetOptionByName("decay_ms", &v));
  EXPECT_EQ(v, 123u);
  EXPECT_EQ(GetOptionSource(OptionId::kDecayMs), OptionSource::kRuntime);
  EXPECT_TRUE(GetOptionByName("ELFMALLOC_DECAY_MS", &v));
  EXPECT_EQ(v, 123u);

  EXPECT_EQ(SetOptionByName("decay_ms", kMaxDecayMs + 1),
            SetResult::kOutOfRange);
  EXPECT_EQ(SetOptionByName("decay_ms", UINT64_MAX), SetResult::kOutOfRange);
  EXPECT_TRUE(GetOptionByName("decay_ms", &v));
  EXPECT_EQ(v, 123u);  // unchanged
  EXPECT_EQ(SetOptionByName("verbose", 1), SetResult::kNotRuntime);
  EXPECT_EQ(SetOptionByName("stats_file", 1), SetResult::kUnknown);
  EXPECT_EQ(SetOptionByName("bogus", 1), SetResult::kUnknown);
  EXPECT_FALSE(GetOptionByName("bogus", &v));
  EXPECT_FALSE(GetOptionByName("stats_file", &v));
  EXPECT_EQ(g_hook_calls, 1);

  EXPECT_EQ(SetOptionByName("max_dirty_mb", 7), SetResult::kOk);
  EXPECT_EQ(GetOption(OptionId::kMaxDirtySmallMb), 7u);
  EXPECT_EQ(GetOption(OptionId::kMaxDirtyMidMb), 7u);
  EXPECT_EQ(GetOption(OptionId::kMaxDirtyMediumMb), 7u);
  EXPECT_EQ(SetOptionByName("max_dirty_medium_mb", 9), SetResult::kOk);
  EXPECT_TRUE(GetOptionByName("max_dirty_mb", &v));
  EXPECT_EQ(v, 9u);  // the largest of the three
  EXPECT_EQ(g_hook_calls, 3);
  SetOptionsApplyHook(nullptr);
}

TEST(WriteOptionsTest, OneLinePerOption) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  WriteOptions(fds[1]);
  close(fds[1]);
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof(buf))) > 0) text.append(buf, n);
  close(fds[0]);
  EXPECT_EQ(Lines(text), static_cast<int>(kNumOptions)) << text;
  for (const OptionSpec& s : kOptionSpecs) {
    EXPECT_NE(text.find(std::string("elfc: option ") + s.name),
              std::string::npos)
        << text;
    EXPECT_NE(text.find(s.env), std::string::npos) << text;
  }
}

}  // namespace
}  // namespace elfmalloc
