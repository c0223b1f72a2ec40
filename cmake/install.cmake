# `make install` (cmake --install build --prefix PREFIX): the tool, the shared library and its
# header, a pkg-config file and a CMake package config for C programs, and the Python module.
#   PREFIX/bin/cortado
#   PREFIX/lib/libcortado.so                      PREFIX/include/cortado.h
#   PREFIX/lib/pkgconfig/cortado.pc               PREFIX/lib/cmake/cortado/cortadoConfig*.cmake
#   PREFIX/lib/python3.X/dist-packages/cortado/   (Debian's python3 looks there for PREFIX=/usr/local)
# The pkg-config and CMake files locate the prefix from where they are installed (pcfiledir,
# CMAKE_CURRENT_LIST_DIR), so the tree works under whatever prefix --prefix names at install
# time. The cortado binary links the core statically and needs no library path.
include(CMakePackageConfigHelpers)
set(CT_VERSION 0.1.0)

install(TARGETS cortado RUNTIME DESTINATION bin)
install(TARGETS cortado_shared LIBRARY DESTINATION lib)
if(TARGET cortado_pylayer)
  install(TARGETS cortado_pylayer LIBRARY DESTINATION lib)
endif()
install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/include/cortado.h DESTINATION include)

configure_file(${CMAKE_CURRENT_SOURCE_DIR}/cmake/install/cortado.pc.in ${CMAKE_CURRENT_BINARY_DIR}/cortado.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/cortado.pc DESTINATION lib/pkgconfig)

write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/cortadoConfigVersion.cmake VERSION ${CT_VERSION}
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/cmake/install/cortadoConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/cortadoConfigVersion.cmake DESTINATION lib/cmake/cortado)

# The Python module goes where the python3 that runs the tests (Debian's) looks for packages.
set(CT_INSTALL_PYTHON /usr/bin/python3 CACHE FILEPATH "python3 whose version names the module's install directory")
execute_process(COMMAND ${CT_INSTALL_PYTHON} -c "import sys; print('%d.%d' % sys.version_info[:2])"
                OUTPUT_VARIABLE CT_PY_VERSION OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT CT_PY_VERSION)
  set(CT_PY_VERSION 3)
endif()
install(DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}/python/cortado DESTINATION lib/python${CT_PY_VERSION}/dist-packages
        PATTERN "__pycache__" EXCLUDE)
