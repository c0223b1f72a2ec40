# find_package(cortado) gives the imported target cortado::cortado (libcortado.so and
# cortado.h), from wherever `make install` put them: this file sits in PREFIX/lib/cmake/cortado.
get_filename_component(_cortado_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
if(NOT TARGET cortado::cortado)
  add_library(cortado::cortado SHARED IMPORTED)
  set_target_properties(cortado::cortado PROPERTIES
    IMPORTED_LOCATION "${_cortado_prefix}/lib/libcortado.so"
    INTERFACE_INCLUDE_DIRECTORIES "${_cortado_prefix}/include")
endif()
set(cortado_FOUND TRUE)
unset(_cortado_prefix)
