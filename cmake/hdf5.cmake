# HDF5 (Debian's libhdf5-dev, serial): the HDF5Data and HDF5Output layers (src/data/hdf5.c).
pkg_check_modules(HDF5 REQUIRED IMPORTED_TARGET hdf5)
target_link_libraries(cortado_core PUBLIC PkgConfig::HDF5)
