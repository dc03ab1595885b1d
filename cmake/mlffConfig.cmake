# CMake package of mlff (the C API).
#
#   find_package(mlff CONFIG REQUIRED)          # with CMAKE_PREFIX_PATH=<repo>/cmake or mlff_DIR=<repo>/cmake
#   target_link_libraries(my_target PRIVATE mlff::mlff)
#
# mlff::mlff is an imported shared library: include/ (mlff.h, mlff.hpp) plus the
# cargo-built libmlff.so; consumers get an RPATH to the library's folder.
#
# Where the library comes from, first match wins:
#   1. MLFF_LIBRARY (CMake variable or environment variable): a libmlff.so to use as is;
#   2. <root>/target/release/libmlff.so, where <root> is MLFF_ROOT (CMake or
#      environment variable) or else the repository holding this file, and
#      target/ is $CARGO_TARGET_DIR when that is set;
#   3. if that file is missing and MLFF_AUTO_BUILD is ON (default), this file runs
#      `cargo build --release --lib` in <root> at configure time and uses the result.
# The library is not rebuilt when it exists: after changing the Rust sources run
# `cargo build --release --lib` (or scripts/test-c-abi.sh) yourself.
#
# Variables set: mlff_FOUND, MLFF_VERSION, MLFF_INCLUDE_DIR, MLFF_LIBRARY.

# Needs CMake >= 3.16.

if(TARGET mlff::mlff)
  set(mlff_FOUND TRUE)
  return()
endif()

include("${CMAKE_CURRENT_LIST_DIR}/mlffHelpers.cmake")

_mlff_root("${CMAKE_CURRENT_LIST_DIR}" _mlff_root)
set(MLFF_INCLUDE_DIR "${_mlff_root}/include")
_mlff_version("${_mlff_root}" MLFF_VERSION)

if(NOT EXISTS "${MLFF_INCLUDE_DIR}/mlff.h")
  set(mlff_FOUND FALSE)
  set(mlff_NOT_FOUND_MESSAGE "mlff: no header at ${MLFF_INCLUDE_DIR}/mlff.h (MLFF_ROOT = ${_mlff_root})")
  return()
endif()

option(MLFF_AUTO_BUILD "Build libmlff.so with cargo at configure time when it is missing" ON)

_mlff_library("${_mlff_root}" _mlff_library _mlff_error)
if(NOT _mlff_library)
  set(mlff_FOUND FALSE)
  set(mlff_NOT_FOUND_MESSAGE "${_mlff_error}")
  return()
endif()
set(MLFF_LIBRARY "${_mlff_library}")

add_library(mlff::mlff SHARED IMPORTED)
# cargo's cdylib carries no DT_SONAME, so link it as -lmlff from its folder
# (DT_NEEDED = libmlff.so plus an RPATH to the folder) rather than by full path,
# which would bake the absolute path into every consumer. Equivalent once the
# library gets the soname libmlff.so.
set_target_properties(mlff::mlff PROPERTIES
  IMPORTED_LOCATION "${MLFF_LIBRARY}"
  IMPORTED_NO_SONAME TRUE
  INTERFACE_INCLUDE_DIRECTORIES "${MLFF_INCLUDE_DIR}")

set(mlff_FOUND TRUE)
if(NOT mlff_FIND_QUIETLY)
  message(STATUS "Found mlff ${MLFF_VERSION}: ${MLFF_LIBRARY}")
endif()

unset(_mlff_root)
unset(_mlff_library)
unset(_mlff_error)
