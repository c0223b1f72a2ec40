/* Storage: the memory behind tensors, with a copy per place that holds it (CcT's pointer,
 * Caffe's SyncedMemory head state generalised to N places and to ranges).
 *
 * A place (ct_mem) is the host or one device's own memory; a driver provides the ct_mem of the
 * device it runs on. A storage keeps, for every place that has a copy, that copy's buffer and
 * the ranges of elements valid there. ct_storage_deref makes [begin, end) valid in one place,
 * copying only the parts that are stale there (from a place that holds them; between two
 * devices straight when the target reaches the source, else through the host), and returns that
 * place's buffer. Every copy is counted by direction in
 * the ct_copy_stats the caller passes and in the process-wide totals. Elements that no place
 * holds read as zero, so a fresh or grown storage is all zeros, as Caffe's blobs are.
 *
 * Writing: CT_WRITE makes [begin, end) valid in the place without copying (the caller writes
 * every element of it) and stale everywhere else; CT_READWRITE first brings it up to date.
 * Several threads may deref disjoint ranges of one storage at once (a layer's partitions).
 *
 * Ownership: storages are reference counted (tensors that share one, the memory planner);
 * ct_storage_release frees the last reference and every copy, each with its place's free.
 * Places must outlive the storages that have copies in them (drivers keep theirs for the
 * process). */
#ifndef CT_STORAGE_H
#define CT_STORAGE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "cortado.h"

/* Places a process can know: the host and up to CT_MAX_MEMS - 1 devices. */
#define CT_MAX_MEMS 16
#define CT_MEM_HOST 0

typedef struct ct_mem ct_mem;
struct ct_mem {
  int id;           /* CT_MEM_HOST, or the id ct_mem_register gave this device */
  const char *name; /* "cpu", "emu:0", "cuda:1": for messages */
  /* alloc: bytes of this place's memory, 64-byte aligned, NULL when it has none left (the
   * contents are undefined). upload copies host memory into this place, download the other
   * way, zero clears; on failure they fill err with the device's reason. */
  void *(*alloc)(const ct_mem *m, size_t bytes);
  void (*free)(const ct_mem *m, void *p);
  ct_status (*upload)(const ct_mem *m, void *dst, const void *host_src, size_t bytes, ct_error *err);
  ct_status (*download)(const ct_mem *m, void *host_dst, const void *src, size_t bytes, ct_error *err);
  ct_status (*zero)(const ct_mem *m, void *dst, size_t bytes, ct_error *err);
  void *ctx;
  /* Optional (NULL: never): whether this place copies straight from device place `from` (two
   * GPUs with peer access), and that copy. Without it a copy between two devices goes through
   * the host's copy of the storage (a download and an upload); with it, one device-to-device
   * copy, counted [from][to]. */
  bool (*reaches)(const ct_mem *m, const ct_mem *from);
  ct_status (*copy_from)(const ct_mem *m, void *dst, const ct_mem *from, const void *src, size_t bytes,
                         ct_error *err);
};

/* The host: aligned_alloc'ed, zeroed on allocation. */
extern const ct_mem ct_mem_host;
/* Gives a device place its id (once per process and device); false when all ids are taken. */
bool ct_mem_register(ct_mem *m);
/* The name of place `id` ("?" when none has it). */
const char *ct_mem_name(int id);

/* Copies made, by direction: [from][to] places, in copies and bytes. */
typedef struct ct_copy_stats {
  atomic_ullong copies[CT_MAX_MEMS][CT_MAX_MEMS];
  atomic_ullong bytes[CT_MAX_MEMS][CT_MAX_MEMS];
} ct_copy_stats;

void ct_copy_stats_reset(ct_copy_stats *s);
/* Bytes moved between places (host to device, device to host, device to device), all directions. */
unsigned long long ct_copy_stats_bytes(const ct_copy_stats *s);
unsigned long long ct_copy_stats_copies(const ct_copy_stats *s);
/* dst += src */
void ct_copy_stats_add(ct_copy_stats *dst, const ct_copy_stats *src);
/* The process-wide totals (every copy is counted here as well). */
ct_copy_stats *ct_copy_stats_global(void);

typedef enum ct_access { CT_READ = 1, CT_WRITE = 2, CT_READWRITE = 3 } ct_access;

typedef struct ct_storage ct_storage;

/* An empty storage (size 0) with one reference; NULL when out of memory. */
ct_storage *ct_storage_create(void);
void ct_storage_retain(ct_storage *s);
/* Drops one reference; the last frees everything. NULL is a no-op. */
void ct_storage_release(ct_storage *s);
int ct_storage_refs(const ct_storage *s);
/* Elements (floats) the storage holds. */
size_t ct_storage_size(const ct_storage *s);
/* Makes the storage hold at least n floats. Growing drops every copy: the contents become
 * zero (the buffers are reallocated in each place at its next deref). */
ct_status ct_storage_reserve(ct_storage *s, size_t n, ct_error *err);

/* Makes elements [begin, end) valid in place m for `mode` (see the top of this file) and sets
 * *out to m's buffer for the whole storage (element 0). stats may be NULL (only the global
 * totals count then). Fails with the device's message when a copy or an allocation fails. */
ct_status ct_storage_deref(ct_storage *s, const ct_mem *m, ct_access mode, size_t begin, size_t end,
                           ct_copy_stats *stats, float **out, ct_error *err);
/* Whether [begin, end) is valid in place m right now (no copy). */
bool ct_storage_valid_in(ct_storage *s, const ct_mem *m, size_t begin, size_t end);
/* Whether place m has a buffer for this storage. */
bool ct_storage_has_copy(ct_storage *s, const ct_mem *m);

#endif
