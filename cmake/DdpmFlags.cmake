# Reads cmake/compile_flags.txt (shared with setup.py) into DDPM_FLAGS_cxx,
# DDPM_FLAGS_cuda and DDPM_FLAGS_cuda_arch.
file(STRINGS "${CMAKE_CURRENT_LIST_DIR}/compile_flags.txt" _ddpm_flag_lines)
foreach(_line IN LISTS _ddpm_flag_lines)
  string(REGEX REPLACE "#.*" "" _line "${_line}")
  if(_line MATCHES "^[ \t]*([a-z_]+)[ \t]+([^ \t]+)")
    list(APPEND DDPM_FLAGS_${CMAKE_MATCH_1} "${CMAKE_MATCH_2}")
  endif()
endforeach()
