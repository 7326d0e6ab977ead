# find_package(Torch), with libc10 from the same PyTorch as libtorch.
#
# TorchConfig.cmake looks for libc10 with find_library(... PATHS <torch>/lib),
# and find_library searches the system's directories before PATHS: on a
# machine with a system libtorch (Debian's) beside a pip one, a program built
# against the pip torch linked the system's libc10 and aborted at start-up.
# So libc10 is looked up beside the TorchConfig.cmake that will be used, first.
# (Pass -Dc10_LIBRARY=... to choose it yourself.)
macro(ddpm_find_torch)
  if(NOT Torch_DIR)
    # where find_package(Torch) will look first: the prefix path's entries
    set(_ddpm_prefixes ${CMAKE_PREFIX_PATH} $ENV{CMAKE_PREFIX_PATH})
    string(REPLACE ":" ";" _ddpm_prefixes "${_ddpm_prefixes}")
    find_path(Torch_DIR TorchConfig.cmake PATHS ${_ddpm_prefixes}
              PATH_SUFFIXES Torch share/cmake/Torch lib/cmake/Torch NO_DEFAULT_PATH)
  endif()
  if(Torch_DIR AND NOT c10_LIBRARY)
    get_filename_component(_ddpm_torch_prefix "${Torch_DIR}/../../.." ABSOLUTE)
    find_library(c10_LIBRARY c10 PATHS "${_ddpm_torch_prefix}/lib" NO_DEFAULT_PATH)
    if(NOT c10_LIBRARY)
      unset(c10_LIBRARY CACHE)  # not beside it (a system libtorch): TorchConfig's own search
    endif()
  endif()
  find_package(Torch ${ARGN})
endmacro()
