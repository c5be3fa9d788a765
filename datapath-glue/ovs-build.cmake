# Makes the cached OVS 3.1 build (see build-ovs.sh) available to CMake.
#
# Runs build-ovs.sh at configure time, which returns at once when this machine already
# built OVS, and defines:
#   OVS_BUILD_DIR        the cached build directory (source and build tree in one)
#   OVS_SOURCE_DIR       the OVS source root (the same directory, under src/)
#   OVS_INCLUDE_DIRS     config.h's directory, include/ and lib/
#   OVS_LIBRARIES        the static libraries, in link order
#   OVS_LINK_LIBRARIES   the system libraries they need, as configure found them
#   ovs::openvswitch, ovs::sflow, ovs::ofproto, ovs::ovsdb  imported static libraries
#                        carrying the include directories and system libraries
#   ovs::vswitchd        imported object library: bridge.o, system-stats.o and
#                        ovs-vswitchd.o with main() renamed to ovs_vswitchd_main()
#   ovs-build            target that redoes build-ovs.sh at build time, so that a build
#                        tree survives the cache being wiped

# Both default to the environment variables build-ovs.sh reads, as they were when the
# tree was first configured; from then on the CMake cache holds them, so that the
# build-time check below looks where configure looked, whatever the shell says.
if(DEFINED ENV{VHU_OVS_TARBALL})
  set(_ovs_default_tarball $ENV{VHU_OVS_TARBALL})
else()
  set(_ovs_default_tarball /usr/src/openvswitch/openvswitch.tar.gz)
endif()
set(VHU_OVS_TARBALL ${_ovs_default_tarball} CACHE FILEPATH
    "Open vSwitch 3.1 source tarball (Debian's openvswitch-source)")
set(VHU_OVS_CACHE_DIR "$ENV{VHU_OVS_CACHE_DIR}" CACHE PATH
    "Where OVS builds are cached, once per machine (empty: /var/cache/ovs-vhostuser)")

# The compiler flags OVS's configure takes from the environment, which build-ovs.sh
# keys its cache on (a package build exports the distribution's hardening flags).
# Like CMAKE_C_FLAGS, they are taken from the environment at the first configure and
# then passed explicitly (or explicitly unset), at configure and at build time alike:
# the build-time check must look for the very build that configure found, whatever
# the environment of the build step (debhelper, for one, adds CPPFLAGS to CFLAGS for
# CMake's configure only).
foreach(_ovs_var CFLAGS CPPFLAGS LDFLAGS)
  set(VHU_OVS_${_ovs_var} "$ENV{${_ovs_var}}" CACHE STRING
      "${_ovs_var} for the OVS build (default: the environment's at first configure)")
endforeach()

set(_ovs_script ${CMAKE_CURRENT_LIST_DIR}/build-ovs.sh)
set(_ovs_env VHU_OVS_TARBALL=${VHU_OVS_TARBALL})
if(VHU_OVS_CACHE_DIR)
  list(APPEND _ovs_env VHU_OVS_CACHE_DIR=${VHU_OVS_CACHE_DIR})
endif()
foreach(_ovs_var CFLAGS CPPFLAGS LDFLAGS)
  if(VHU_OVS_${_ovs_var} STREQUAL "")
    list(PREPEND _ovs_env --unset=${_ovs_var})
  else()
    list(APPEND _ovs_env "${_ovs_var}=${VHU_OVS_${_ovs_var}}")
  endif()
endforeach()

# The build's progress goes to stderr (shown); its directory comes back on stdout.
message(STATUS "OVS: checking the cached build (builds it the first time, ~2 minutes)")
execute_process(
  COMMAND ${CMAKE_COMMAND} -E env ${_ovs_env} ${_ovs_script}
  OUTPUT_VARIABLE _ovs_output
  RESULT_VARIABLE _ovs_result
  OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT _ovs_result EQUAL 0)
  message(FATAL_ERROR "OVS: ${_ovs_script} failed (${_ovs_result})")
endif()
string(REGEX REPLACE ".*\n" "" OVS_BUILD_DIR "${_ovs_output}")
message(STATUS "OVS: ${OVS_BUILD_DIR}")

# Configure again when the recipe or the tarball changes.
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
             ${_ovs_script} ${VHU_OVS_TARBALL})

set(OVS_SOURCE_DIR ${OVS_BUILD_DIR}/src)
# OVS builds in its source tree: config.h and the generated headers sit next to the
# sources, so the build tree's directories are the source tree's.
set(OVS_INCLUDE_DIRS ${OVS_SOURCE_DIR} ${OVS_SOURCE_DIR}/include ${OVS_SOURCE_DIR}/lib)
file(READ ${OVS_BUILD_DIR}/link-libraries.txt _ovs_link)
string(STRIP "${_ovs_link}" _ovs_link)
separate_arguments(OVS_LINK_LIBRARIES UNIX_COMMAND "${_ovs_link}")

function(_ovs_import_static name path)
  add_library(ovs::${name} STATIC IMPORTED GLOBAL)
  set_target_properties(ovs::${name} PROPERTIES
    IMPORTED_LOCATION ${path}
    INTERFACE_INCLUDE_DIRECTORIES "${OVS_INCLUDE_DIRS}")
endfunction()

set(_ovs_openvswitch ${OVS_SOURCE_DIR}/lib/.libs/libopenvswitch.a)
set(_ovs_avx512 ${OVS_SOURCE_DIR}/lib/.libs/libopenvswitchavx512.a)
set(_ovs_sflow ${OVS_SOURCE_DIR}/lib/.libs/libsflow.a)
set(_ovs_ofproto ${OVS_SOURCE_DIR}/ofproto/.libs/libofproto.a)
set(_ovs_ovsdb ${OVS_SOURCE_DIR}/ovsdb/.libs/libovsdb.a)
set(_ovs_objects ${OVS_SOURCE_DIR}/vswitchd/bridge.o
                 ${OVS_SOURCE_DIR}/vswitchd/system-stats.o
                 ${OVS_SOURCE_DIR}/vswitchd/ovs-vswitchd.o)

_ovs_import_static(openvswitch ${_ovs_openvswitch})
_ovs_import_static(sflow ${_ovs_sflow})
_ovs_import_static(ofproto ${_ovs_ofproto})
_ovs_import_static(ovsdb ${_ovs_ovsdb})

set(_ovs_core_deps ${OVS_LINK_LIBRARIES} Threads::Threads)
if(EXISTS ${_ovs_avx512})
  # The AVX512 lookup functions and libopenvswitch call each other: a cycle, which
  # CMake resolves for static libraries by repeating them on the link line.
  _ovs_import_static(openvswitchavx512 ${_ovs_avx512})
  set_target_properties(ovs::openvswitchavx512 PROPERTIES
    INTERFACE_LINK_LIBRARIES "ovs::openvswitch;${_ovs_core_deps}")
  set_target_properties(ovs::openvswitch PROPERTIES
    INTERFACE_LINK_LIBRARIES "ovs::openvswitchavx512;${_ovs_core_deps}")
else()
  set_target_properties(ovs::openvswitch PROPERTIES
    INTERFACE_LINK_LIBRARIES "${_ovs_core_deps}")
endif()
set_target_properties(ovs::sflow PROPERTIES INTERFACE_LINK_LIBRARIES ovs::openvswitch)
set_target_properties(ovs::ofproto PROPERTIES
  INTERFACE_LINK_LIBRARIES "ovs::sflow;ovs::openvswitch")
set_target_properties(ovs::ovsdb PROPERTIES INTERFACE_LINK_LIBRARIES ovs::openvswitch)

add_library(ovs::vswitchd OBJECT IMPORTED GLOBAL)
set_target_properties(ovs::vswitchd PROPERTIES
  IMPORTED_OBJECTS "${_ovs_objects}"
  INTERFACE_INCLUDE_DIRECTORIES "${OVS_INCLUDE_DIRS}"
  INTERFACE_LINK_LIBRARIES "ovs::ofproto;ovs::sflow;ovs::openvswitch")

set(OVS_LIBRARIES ${_ovs_ofproto} ${_ovs_sflow} ${_ovs_openvswitch})
if(EXISTS ${_ovs_avx512})
  list(APPEND OVS_LIBRARIES ${_ovs_avx512})
endif()
list(APPEND OVS_LIBRARIES ${_ovs_ovsdb})

# Cheap when the cache is there (a hash of the tarball and a stamp check); rebuilds
# OVS when someone wiped the cache under an existing build tree.  The byproducts tell
# Ninja that this step may produce the files the link depends on.
add_custom_target(ovs-build
  COMMAND ${CMAKE_COMMAND} -E env ${_ovs_env} ${_ovs_script}
  BYPRODUCTS ${OVS_LIBRARIES} ${_ovs_objects}
  COMMENT "Checking the cached OVS build"
  VERBATIM)
