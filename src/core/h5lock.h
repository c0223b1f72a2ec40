/* One process-wide lock around Debian's serial libhdf5, which is not thread-safe: the HDF5 data
 * layers (data/hdf5.c) and HDF5 snapshots and weights (proto/h5io.c) take it around every call
 * into the library, so a snapshot written while an HDF5Data layer reads, or two nets of the
 * Python module in two threads, never meet inside it. Recursive: a holder may take it again.
 * The first lock also turns off libhdf5's own printing of error stacks: callers report errors. */
#ifndef CT_CORE_H5LOCK_H
#define CT_CORE_H5LOCK_H

void ct_h5_lock(void);
void ct_h5_unlock(void);

#endif
