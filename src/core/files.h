/* Files as cortado reads and writes them: inputs that are not regular files are refused rather
 * than blocked on; outputs never replace anything but a regular file; temporary names fit
 * NAME_MAX and are recognised (and removed) when a killed run left them behind.
 *
 * A FIFO given as an input would block open() until a writer appears (a hang, not an error); a
 * device node would be read forever or replaced by a rename; a directory has no bytes. So every
 * input is opened non-blocking and checked before the first read, and every output is resolved
 * first: a symlink is followed to the file it names (written through, never replaced), and the
 * final target must be a regular file or not exist yet. */
#ifndef CT_FILES_H
#define CT_FILES_H

#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "cortado.h"

/* "a directory", "a FIFO (named pipe)", "a socket", "a character device", "a block device", or
 * "not a regular file" for anything else that is not a regular file; NULL for a regular file. */
const char *ct_file_kind(mode_t mode);

/* Opens `path` for reading and checks that it is a regular file, without blocking on a FIFO.
 * `what` names the input in messages ("weights file", "LMDB"; may be NULL). On success *fd is an
 * open blocking descriptor the caller closes and *st (may be NULL) its fstat; on failure *fd is
 * -1 and the message names the path and why (missing, unreadable, or its kind). */
ct_status ct_file_open_input(const char *path, const char *what, int *fd, struct stat *st, ct_error *err);

/* The path a write to `path` must replace: `path` itself when it is a regular file or does not
 * exist, the file a symlink chain ends at when that is a regular file or does not exist yet
 * (written through). Anything else (a directory, FIFO, socket, device, a link loop) is refused
 * with a message naming it. *target is malloc'ed; the caller frees it. */
ct_status ct_file_output_target(const char *path, char **target, ct_error *err);

/* A temporary name beside `path` for an atomic write: ".<base>.tmp-<pid>-<tag>" in path's
 * directory, the base shortened when needed so the name fits NAME_MAX (255 bytes), so any name
 * that fits itself gets a temporary one. Returns malloc'ed, NULL when out of memory. */
char *ct_file_temp_name(const char *path, unsigned tag);
/* Removes the temporaries (as ct_file_temp_name names them, files or whole directories) of
 * every path that starts with `prefix` ("out/lenet_iter_" covers all of a solver's snapshots)
 * whose process no longer runs on this machine: left behind by a killed run. Returns how many
 * were removed. Temporaries of a live process are kept. */
int ct_file_remove_stale_temps(const char *prefix);

/* A message for a failed write of `path`: strerror(errnum), with the cause spelled out where
 * the error code hides it: "No space left on device" when the filesystem is (nearly) full (LMDB
 * reports a short write as EIO), "File too large" with the ulimit -f limit when the file reached
 * RLIMIT_FSIZE. Writes into buf (n bytes) and returns buf. */
const char *ct_file_write_error(char *buf, size_t n, int errnum, const char *path);

#endif
