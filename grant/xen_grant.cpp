// GrantMapper and GrantSharer on libxengnttab (/dev/xen/gntdev and /dev/xen/gntalloc).
#include <cerrno>
#include <system_error>
#include <vector>

#include <sys/mman.h>

#include "base/log.hpp"
#include "grant/implementations.hpp"

namespace pvback::grant {
namespace {

struct GnttabCloser {
  void operator()(xengnttab_handle* h) const noexcept { xengnttab_close(h); }
};
struct GntshrCloser {
  void operator()(xengntshr_handle* h) const noexcept { xengntshr_close(h); }
};

class XenGrantMapper final : public GrantMapper {
 public:
  XenGrantMapper() : handle_(xengnttab_open(nullptr, 0)) {
    if (!handle_)
      throw std::system_error(errno, std::generic_category(),
                              "cannot open the Xen grant-table device /dev/xen/gntdev (xengnttab_open); "
                              "is this Xen dom0 with the xen-gntdev module loaded?");
  }

  std::expected<Mapping, int> map(DomId domid, std::span<const GrantRef> refs, Access access) override {
    if (refs.empty()) return std::unexpected(EINVAL);
    std::vector<std::uint32_t> ref_copy(refs.begin(), refs.end());
    const int prot = access == Access::ReadWrite ? PROT_READ | PROT_WRITE : PROT_READ;
    // gntdev maps the whole batch or fails it as a whole (since the XSA-362/367 fixes).
    void* addr = xengnttab_map_domain_grant_refs(handle_.get(), static_cast<std::uint32_t>(ref_copy.size()), domid,
                                                 ref_copy.data(), prot);
    if (addr == nullptr) return std::unexpected(errno != 0 ? errno : EINVAL);
    return make_mapping(addr, static_cast<std::uint32_t>(ref_copy.size()));
  }

  int copy(std::span<CopySegment> segments) override {
    if (segments.empty()) return 0;
    if (xengnttab_grant_copy(handle_.get(), static_cast<std::uint32_t>(segments.size()), segments.data()) != 0)
      return errno != 0 ? errno : EIO;
    return 0;
  }

 protected:
  void unmap(void* addr, std::uint32_t count) noexcept override {
    if (xengnttab_unmap(handle_.get(), addr, count) != 0)
      PVBACK_LOG_RATELIMITED(Error, "xengnttab_unmap of %u pages failed: errno %d", count, errno);
  }

 private:
  std::unique_ptr<xengnttab_handle, GnttabCloser> handle_;
};

class XenGrantSharer final : public GrantSharer {
 public:
  XenGrantSharer() : handle_(xengntshr_open(nullptr, 0)) {
    if (!handle_)
      throw std::system_error(errno, std::generic_category(),
                              "cannot open the Xen grant-sharing device /dev/xen/gntalloc (xengntshr_open); "
                              "is this a Xen domain with the xen-gntalloc module loaded?");
  }

  std::expected<SharedPages, int> share(DomId peer, std::uint32_t count, Access access) override {
    if (count == 0) return std::unexpected(EINVAL);
    std::vector<GrantRef> refs(count);
    void* addr = xengntshr_share_pages(handle_.get(), peer, static_cast<int>(count), refs.data(),
                                       access == Access::ReadWrite ? 1 : 0);
    if (addr == nullptr) return std::unexpected(errno != 0 ? errno : ENOMEM);
    return make_shared_pages(addr, std::move(refs));
  }

 protected:
  void unshare(void* addr, std::span<const GrantRef> refs) noexcept override {
    if (xengntshr_unshare(handle_.get(), addr, static_cast<std::uint32_t>(refs.size())) != 0)
      PVBACK_LOG_RATELIMITED(Error, "xengntshr_unshare of %zu pages failed: errno %d", refs.size(), errno);
  }

 private:
  std::unique_ptr<xengntshr_handle, GntshrCloser> handle_;
};

}  // namespace

std::unique_ptr<GrantMapper> open_xen_mapper() { return std::make_unique<XenGrantMapper>(); }
std::unique_ptr<GrantSharer> open_xen_sharer() { return std::make_unique<XenGrantSharer>(); }

}  // namespace pvback::grant
