// The tunables' file format (base/config_file.hpp): sections, selectors, the order in which a
// device takes the entries that match it, and errors that name the line.
#include <gtest/gtest.h>

#include "base/config_file.hpp"

namespace pvback {
namespace {

std::vector<std::string> values_for(const Config& c, const DeviceFacts& d, const Config* after = nullptr) {
  std::vector<std::string> out;
  for (const ConfigEntry* e : c.entries_for(d, after)) out.push_back(e->key + "=" + e->value);
  return out;
}

DeviceFacts vbd(std::uint32_t domid, std::string domain, std::uint32_t devid, std::string vdev) {
  return {"vbd", domid, std::move(domain), devid, std::move(vdev)};
}

TEST(ConfigFile, ADeviceTakesItsSectionsFromTheLeastToTheMostSpecific) {
  // Written most specific first, to show that the file's order does not decide between levels.
  const auto c = parse_config(R"(# a comment
[vbd domain=db1 device=xvdb]
max_queues = 4
[vbd domain=db1]
max_queues = 3
indirect_threshold = 64   # trailing comment
[vbd device=xvdb]
max_queues = 2
[vbd]   # the host's vbds
max_queues = 1
[vif]
max_queues = 9	# a tab before the comment
)", "test.conf");
  ASSERT_TRUE(c.has_value()) << c.error();
  ASSERT_EQ(c->sections.size(), 5u);
  EXPECT_EQ(values_for(*c, vbd(7, "db1", 51728, "xvdb")),
            (std::vector<std::string>{"max_queues=1", "max_queues=2", "max_queues=3", "indirect_threshold=64",
                                      "max_queues=4"}));
  // Another disk of db1: not the device sections.
  EXPECT_EQ(values_for(*c, vbd(7, "db1", 51712, "xvda")),
            (std::vector<std::string>{"max_queues=1", "max_queues=3", "indirect_threshold=64"}));
  // Another guest's xvdb: the device-only section, not db1's.
  EXPECT_EQ(values_for(*c, vbd(8, "web", 51728, "xvdb")), (std::vector<std::string>{"max_queues=1", "max_queues=2"}));
  // A vif takes only vif sections.
  EXPECT_EQ(values_for(*c, {"vif", 7, "db1", 0, ""}), (std::vector<std::string>{"max_queues=9"}));
}

TEST(ConfigFile, DeviceMatchesTheVdevOrTheDevidAndDomidTheGuestsNumber) {
  const auto c = parse_config("[vbd domid=5 device=51712]\nmax_queues = 2\n[vbd device=xvda]\nmax_queues = 3\n", "t");
  ASSERT_TRUE(c.has_value()) << c.error();
  EXPECT_EQ(values_for(*c, vbd(5, "a", 51712, "")), (std::vector<std::string>{"max_queues=2"}));
  EXPECT_EQ(values_for(*c, vbd(5, "a", 51712, "xvda")),
            (std::vector<std::string>{"max_queues=3", "max_queues=2"}));
  EXPECT_TRUE(values_for(*c, vbd(6, "a", 51712, "")).empty());
}

TEST(ConfigFile, TheRuntimeLayerComesAfterTheFileInTheOrderItWasSet) {
  const auto file = parse_config("[vbd domid=5 device=51712]\nmax_persistent_grants = 10\n", "f");
  const auto runtime = parse_config("[vbd domid=5 device=51712]\nmax_persistent_grants = 20\n"
                                    "[vbd]\nmax_persistent_grants = 30\n", "r");
  ASSERT_TRUE(file && runtime);
  // What was set last at run time wins, even over a more specific section of the file.
  EXPECT_EQ(values_for(*file, vbd(5, "", 51712, ""), &*runtime),
            (std::vector<std::string>{"max_persistent_grants=10", "max_persistent_grants=20",
                                      "max_persistent_grants=30"}));
  // Saved and read back, the layer is the same.
  const auto again = parse_config(runtime->text(), "r2");
  ASSERT_TRUE(again.has_value()) << again.error();
  EXPECT_EQ(again->text(), runtime->text());
}

TEST(ConfigFile, MistakesNameTheLine) {
  struct Case {
    const char* text;
    const char* error;
  };
  const Case cases[] = {
      {"max_queues = 1\n", "t:1: max_queues comes before any [vbd] or [vif] section"},
      {"[vbd]\n\nmax_queues\n", "t:3: expected 'name = value'"},
      {"[vbd]\nmax_queues =\n", "t:2: max_queues has no value"},
      {"[disk]\n", "t:1: a section is [vbd] or [vif]"},
      {"[vbd\n", "t:1: a section header ends with ']'"},
      {"[vbd] max_queues = 1\n", "t:1: a section header ends with ']'"},
      {"[vbd guest=x]\n", "t:1: unknown selector 'guest'"},
      {"[vbd domid=0x5]\n", "t:1: domid=0x5 is not a guest's domid"},
      {"[vbd domid=32752]\n", "t:1: domid=32752 is not a guest's domid"},
      {"[vbd domain=a domain=b]\n", "t:1: domain= given twice"},
      {"[vbd domain]\n", "t:1: 'domain' is not a selector"},
      {"[vbd domain=a/b]\n", "t:1: 'domain=a/b' is not a selector"},
      {"[vif]\nmax queues = 1\n", "t:2: 'max queues' is not a name"},
  };
  for (const Case& k : cases) {
    const auto c = parse_config(k.text, "t");
    ASSERT_FALSE(c.has_value()) << k.text;
    EXPECT_TRUE(c.error().starts_with(k.error)) << k.text << " -> " << c.error();
  }
}

TEST(ConfigFile, AMissingFileIsAnEmptyConfiguration) {
  const auto c = load_config("/nonexistent/pvback.conf");
  ASSERT_TRUE(c.has_value()) << c.error();
  EXPECT_TRUE(c->sections.empty());
  // A directory is not a file that is missing: an error.
  EXPECT_FALSE(load_config("/").has_value());
}

}  // namespace
}  // namespace pvback
