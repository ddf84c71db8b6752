# Finds librbd and librados (Debian's librbd-dev and librados-dev ship no pkg-config files) and
# defines the imported target RBD::RBD.
find_path(RBD_INCLUDE_DIR rbd/librbd.h)
find_library(RBD_LIBRARY rbd)
find_library(RADOS_LIBRARY rados)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(RBD REQUIRED_VARS RBD_LIBRARY RADOS_LIBRARY RBD_INCLUDE_DIR)
if(RBD_FOUND AND NOT TARGET RBD::RBD)
  add_library(RBD::RBD INTERFACE IMPORTED)
  set_target_properties(RBD::RBD PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${RBD_INCLUDE_DIR}"
                                            INTERFACE_LINK_LIBRARIES "${RBD_LIBRARY};${RADOS_LIBRARY}")
endif()
mark_as_advanced(RBD_INCLUDE_DIR RBD_LIBRARY RADOS_LIBRARY)
