// pvback-blk's statistics under Linux xen-blkback's names (the statistics file's "kernel" object)
// and for Prometheus (--prometheus-textfile DIR: DIR/pvback-vbd-<domid>-<devid>.prom, which
// node_exporter's textfile collector reads), after known I/O from the guest.
#include "tests/blkback/device/vbd_fixture.hpp"
#include "tests/support/prometheus_text.hpp"

namespace pvback::test {
namespace {

// A counter of the statistics file's "kernel" object, or -1.
long long kernel_stat(const std::string& text, const std::string& key) {
  const auto kernel = text.find("\"kernel\": {");
  if (kernel == std::string::npos) return -1;
  const auto end = text.find('}', kernel);
  const auto at = text.find("\"" + key + "\": ", kernel);
  if (at == std::string::npos || at > end) return -1;
  return std::atoll(text.c_str() + at + key.size() + 4);
}

TEST_F(VbdTest, KnownIoShowsInTheKernelCountersAndThePrometheusTextfile) {
  make_disk(16 << 20);
  const auto textfile_dir = dir_ / "textfile";
  const auto prom = textfile_dir / "pvback-vbd-1-51712.prom";
  ASSERT_NO_FATAL_FAILURE(
      add_vbd_and_start({"--prometheus-textfile", textfile_dir.string(), "--stats-interval-ms", "50"}));
  auto front = attach();
  ASSERT_NE(front, nullptr);
  // One page a request: two writes, three reads, a flush.
  std::vector<std::byte> page(4096);
  fill_pattern(page, 0, 3);
  ASSERT_EQ(front->write(8, page), 0);
  ASSERT_EQ(front->write(16, page), 0);
  for (std::uint64_t sector : {8, 16, 24}) ASSERT_EQ(front->read(sector, page), 0);
  ASSERT_EQ(front->flush(), 0);

  // Counted when answered, and written out every 50 ms: the last answer's counters (the flush's)
  // may reach the file a period after the guest saw it.
  ASSERT_TRUE(eventually([&] {
    const std::string t = stats_text();
    return kernel_stat(t, "rd_req") == 3 && kernel_stat(t, "f_req") == 1;
  })) << stats_text();
  const std::string text = stats_text();
  EXPECT_EQ(kernel_stat(text, "oo_req"), 0) << text;
  EXPECT_EQ(kernel_stat(text, "wr_req"), 2) << text;
  EXPECT_EQ(kernel_stat(text, "f_req"), 1) << text;
  EXPECT_EQ(kernel_stat(text, "ds_req"), 0) << text;
  EXPECT_EQ(kernel_stat(text, "rd_sect"), 24) << text;
  EXPECT_EQ(kernel_stat(text, "wr_sect"), 16) << text;

  PromText p;
  ASSERT_TRUE(eventually([&] {
    p = parse_prometheus_file(prom);
    return p.error.empty() && p.sum("pvback_vbd_kernel_rd_req_total") == 3 &&
           p.sum("pvback_vbd_kernel_f_req_total") == 1 && p.sum("pvback_vbd_requests_total", {{"op", "flush"}}) == 1;
  })) << p.error;
  const std::map<std::string, std::string> vbd = {{"domid", "1"}, {"devid", "51712"}};
  EXPECT_EQ(p.sum("pvback_vbd_state", vbd), XenbusStateConnected);
  EXPECT_GE(p.sum("pvback_vbd_queues", vbd), 1);
  EXPECT_EQ(p.sum("pvback_vbd_requests_total", {{"op", "read"}}), 3);
  EXPECT_EQ(p.sum("pvback_vbd_requests_total", {{"op", "write"}}), 2);
  EXPECT_EQ(p.sum("pvback_vbd_requests_total", {{"op", "flush"}}), 1);
  EXPECT_EQ(p.sum("pvback_vbd_bytes_total", {{"op", "read"}}), 3 * 4096);
  EXPECT_EQ(p.sum("pvback_vbd_bytes_total", {{"op", "write"}}), 2 * 4096);
  EXPECT_EQ(p.sum("pvback_vbd_request_errors_total"), 0);
  EXPECT_EQ(p.sum("pvback_vbd_in_flight_requests"), 0);
  EXPECT_EQ(p.sum("pvback_vbd_kernel_wr_req_total", vbd), 2);
  EXPECT_EQ(p.sum("pvback_vbd_kernel_f_req_total"), 1);
  EXPECT_EQ(p.sum("pvback_vbd_kernel_rd_sect_total"), 24);
  EXPECT_EQ(p.sum("pvback_vbd_kernel_wr_sect_total"), 16);
  EXPECT_EQ(p.sum("pvback_vbd_data_plane_restarts_total"), 0);
  for (const PromSample& s : p.samples) {
    EXPECT_EQ(s.labels.at("domid"), "1") << s.name;
    EXPECT_EQ(s.labels.at("devid"), "51712") << s.name;
  }
  if (const auto checked = promtool_check(prom)) {
    EXPECT_EQ(checked->first, 0) << checked->second;
  }

  // The device goes, and its series with it.
  ASSERT_NO_FATAL_FAILURE(unplug(*front));
  ASSERT_TRUE(backend_->wait_exit().has_value());
  EXPECT_FALSE(std::filesystem::exists(prom));
}

}  // namespace
}  // namespace pvback::test
