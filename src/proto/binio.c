/* Binary protobuf files and whole-file io: bounded reads, crash-safe writes. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/files.h"
#include "core/status.h"
#include "proto/prototxt.h"

/* protobuf's own limit on one message: sizes are int32 on the wire-handling side of most
 * implementations, so Caffe cannot have written anything larger. */
#define MAX_BINARY_BYTES ((size_t)INT_MAX)
#define MAX_WIRE_DEPTH 100

ct_status ct_read_file(const char *path, size_t max_bytes, char **out, size_t *len, ct_error *err) {
  if (out) *out = NULL;
  if (len) *len = 0;
  if (!path || !out) return ct_fail(err, CT_EINVAL, "ct_read_file: missing path or output");
  if (max_bytes > SIZE_MAX - 1) max_bytes = SIZE_MAX - 1; /* room for the NUL */
  /* issue 23: a FIFO or device is refused rather than blocked on or read without end */
  int fd = -1;
  struct stat sb;
  CT_TRY(ct_file_open_input(path, NULL, &fd, &sb, err));
  char *buf = NULL;
  ct_status st = CT_OK;
  size_t cap; /* buffer size including the terminating NUL; the file may still grow */
  if (sb.st_size < 0 || (uintmax_t)sb.st_size > max_bytes) {
    st = ct_fail(err, CT_ENOMEM, "%s: file is %jd bytes, larger than the limit of %zu bytes", path,
                 (intmax_t)sb.st_size, max_bytes);
    goto done;
  }
  cap = (size_t)sb.st_size + 1;
  buf = malloc(cap);
  if (!buf) {
    st = ct_fail(err, CT_ENOMEM, "%s: out of memory reading %zu bytes", path, cap - 1);
    goto done;
  }
  size_t n = 0;
  for (;;) {
    if (n + 1 == cap) { /* full: the file grew, or is not a regular file */
      if (n >= max_bytes) {
        char probe;
        ssize_t r;
        do r = read(fd, &probe, 1);
        while (r < 0 && errno == EINTR);
        if (r == 0) break;
        if (r < 0) {
          st = ct_fail(err, CT_EIO, "%s: read failed: %s", path, strerror(errno));
        } else {
          st = ct_fail(err, CT_ENOMEM, "%s: file is larger than the limit of %zu bytes", path, max_bytes);
        }
        goto done;
      }
      size_t grow = cap - 1 < 4096 ? 8192 : 2 * (cap - 1);
      if (cap - 1 > max_bytes / 2 || grow > max_bytes) grow = max_bytes;
      char *nb = realloc(buf, grow + 1);
      if (!nb) {
        st = ct_fail(err, CT_ENOMEM, "%s: out of memory reading %zu bytes", path, grow);
        goto done;
      }
      buf = nb;
      cap = grow + 1;
    }
    ssize_t r = read(fd, buf + n, cap - 1 - n);
    if (r < 0) {
      if (errno == EINTR) continue;
      st = ct_fail(err, CT_EIO, "%s: read failed: %s", path, strerror(errno));
      goto done;
    }
    if (r == 0) break;
    n += (size_t)r;
  }
  buf[n] = '\0';
  *out = buf;
  buf = NULL;
  if (len) *len = n;
done:
  free(buf);
  close(fd);
  return st;
}

static ct_status write_all(int fd, const void *data, size_t len) {
  const char *p = data;
  while (len > 0) {
    size_t chunk = len > ((size_t)1 << 30) ? ((size_t)1 << 30) : len;
    ssize_t w = write(fd, p, chunk);
    if (w < 0) {
      if (errno == EINTR) continue;
      return CT_EIO;
    }
    p += w;
    len -= (size_t)w;
  }
  return CT_OK;
}

ct_status ct_write_file_atomic(const char *path, const void *data, size_t len, ct_error *err) {
  static atomic_uint counter;
  if (!path || (!data && len)) return ct_fail(err, CT_EINVAL, "ct_write_file_atomic: missing path or data");
  const char *user_path = path;
  {
    const char *b = strrchr(path, '/');
    if (!*(b ? b + 1 : path)) return ct_fail(err, CT_EINVAL, "%s: not a file name", path);
  }
  /* issue 23: only a regular file is ever replaced; a symlink is written through to its file */
  char *target = NULL;
  CT_TRY(ct_file_output_target(user_path, &target, err));
  path = target;
  const char *slash = strrchr(path, '/');
  size_t dirlen = slash ? (size_t)(slash - path) + 1 : 0; /* including the slash */
  char *tmp = NULL, *dir = malloc(dirlen + 2);
  if (!dir) {
    free(target);
    return ct_fail(err, CT_ENOMEM, "%s: out of memory", user_path);
  }
  if (dirlen) {
    memcpy(dir, path, dirlen);
    dir[dirlen] = '\0';
  } else {
    strcpy(dir, ".");
  }
  /* The temporary file sits in the target's directory so the rename cannot cross filesystems.
   * open(O_EXCL, 0666) rather than mkstemp, so the umask gives the file its usual mode. */
  int fd = -1;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  /* The temporary's name fits NAME_MAX whenever the target's does (ct_file_temp_name), and
   * names its process, so that a later run can remove it if this one is killed. */
  for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
    unsigned k = atomic_fetch_add(&counter, 1) * 2654435761u ^ (unsigned)ts.tv_nsec;
    free(tmp);
    if (!(tmp = ct_file_temp_name(path, k))) break;
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) break;
  }
  ct_status st = CT_OK;
  if (!tmp) {
    st = ct_fail(err, CT_ENOMEM, "%s: out of memory", user_path);
    goto out;
  }
  if (fd < 0) {
    st = ct_fail(err, CT_EIO, "%s: cannot create a temporary file in %s: %s", user_path, dir, strerror(errno));
    goto out;
  }
  if (write_all(fd, data, len) != CT_OK) {
    char why[256];
    st = ct_fail(err, CT_EIO, "%s: write failed: %s", user_path, ct_file_write_error(why, sizeof why, errno, tmp));
    goto fail;
  }
  if (fsync(fd) != 0) {
    char why[256];
    st = ct_fail(err, CT_EIO, "%s: fsync failed: %s", user_path, ct_file_write_error(why, sizeof why, errno, tmp));
    goto fail;
  }
  int rc = close(fd);
  fd = -1;
  if (rc != 0) {
    char why[256];
    st = ct_fail(err, CT_EIO, "%s: close failed: %s", user_path, ct_file_write_error(why, sizeof why, errno, tmp));
    goto fail;
  }
  if (rename(tmp, path) != 0) {
    st = ct_fail(err, CT_EIO, "%s: cannot rename the temporary file over it: %s", user_path, strerror(errno));
    goto fail;
  }
  /* Make the rename itself durable. Some filesystems cannot fsync a directory (EINVAL); the
   * data is written then, and there is nothing more to do. */
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    if (fsync(dfd) != 0 && errno != EINVAL && errno != ENOTSUP && errno != EROFS)
      st = ct_fail(err, CT_EIO, "%s: written, but syncing directory %s failed: %s", path, dir, strerror(errno));
    close(dfd);
  }
  goto out;
fail:
  if (fd >= 0) close(fd);
  unlink(tmp);
out:
  free(tmp);
  free(dir);
  free(target);
  return st;
}

/* ------------------------------------------------------------------ binary protobuf */

static int read_varint(const uint8_t *p, size_t n, size_t *i, uint64_t *v) {
  uint64_t x = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    if (*i >= n) return 0;
    uint8_t b = p[(*i)++];
    if (shift == 63 && b > 1) return 0;
    x |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = x;
      return 1;
    }
  }
  return 0;
}

/* Walks the wire format before protobuf-c sees it, so a damaged file gets a message that says
 * where, and no length claims more bytes than remain. Returns 0 and fills why on failure. */
static int wire_check(const uint8_t *p, size_t n, size_t origin, const ProtobufCMessageDescriptor *desc, int depth,
                      char *why, size_t cap) {
  size_t i = 0;
  while (i < n) {
    size_t at = i;
    uint64_t key, v;
    if (!read_varint(p, n, &i, &key)) {
      snprintf(why, cap, "truncated field key at byte %zu", origin + at);
      return 0;
    }
    uint64_t id = key >> 3;
    unsigned wt = (unsigned)(key & 7);
    if (id == 0 || id > 0x1fffffff) {
      snprintf(why, cap, "invalid field number %llu at byte %zu", (unsigned long long)id, origin + at);
      return 0;
    }
    switch (wt) {
      case 0:
        if (!read_varint(p, n, &i, &v)) {
          snprintf(why, cap, "truncated varint of field %llu at byte %zu", (unsigned long long)id, origin + at);
          return 0;
        }
        break;
      case 1:
      case 5: {
        size_t w = wt == 1 ? 8 : 4;
        if (n - i < w) {
          snprintf(why, cap, "field %llu at byte %zu needs %zu bytes, only %zu remain", (unsigned long long)id,
                   origin + at, w, n - i);
          return 0;
        }
        i += w;
        break;
      }
      case 2: {
        if (!read_varint(p, n, &i, &v)) {
          snprintf(why, cap, "truncated length of field %llu at byte %zu", (unsigned long long)id, origin + at);
          return 0;
        }
        if (v > n - i) {
          snprintf(why, cap, "field %llu at byte %zu claims %llu bytes, only %zu remain", (unsigned long long)id,
                   origin + at, (unsigned long long)v, n - i);
          return 0;
        }
        const ProtobufCFieldDescriptor *f = desc ? protobuf_c_message_descriptor_get_field(desc, (unsigned)id) : NULL;
        if (f && f->type == PROTOBUF_C_TYPE_MESSAGE && depth < MAX_WIRE_DEPTH &&
            !wire_check(p + i, (size_t)v, origin + i, f->descriptor, depth + 1, why, cap))
          return 0;
        i += (size_t)v;
        break;
      }
      default:
        snprintf(why, cap, "unsupported wire type %u of field %llu at byte %zu", wt, (unsigned long long)id,
                 origin + at);
        return 0;
    }
  }
  return 1;
}

ct_status ct_proto_read_binary(const char *path, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out,
                               ct_error *err) {
  if (out) *out = NULL;
  if (!path || !desc || !out)
    return ct_fail(err, CT_EINVAL, "ct_proto_read_binary: missing path, descriptor or output");
  struct stat sb;
  if (stat(path, &sb) != 0) return ct_fail(err, CT_EIO, "%s: cannot open: %s", path, strerror(errno));
  if (S_ISREG(sb.st_mode) && (uintmax_t)sb.st_size > MAX_BINARY_BYTES)
    return ct_fail(err, CT_ENOMEM, "%s: %jd bytes is more than the 2 GiB a protobuf message may hold", path,
                   (intmax_t)sb.st_size);
  char *buf;
  size_t len;
  CT_TRY(ct_read_file(path, MAX_BINARY_BYTES, &buf, &len, err));
  const char *short_name = desc->short_name ? desc->short_name : desc->name;
  char why[256];
  if (!wire_check((const uint8_t *)buf, len, 0, desc, 0, why, sizeof why)) {
    free(buf);
    return ct_fail(err, CT_EPARSE, "%s: not a valid %s (binary protobuf): %s", path, short_name, why);
  }
  ProtobufCMessage *msg = protobuf_c_message_unpack(desc, NULL, len, (const uint8_t *)buf);
  free(buf);
  if (!msg) return ct_fail(err, CT_EPARSE, "%s: not a valid %s (binary protobuf)", path, short_name);
  *out = msg;
  return CT_OK;
}

ct_status ct_proto_write_binary(const char *path, const ProtobufCMessage *msg, ct_error *err) {
  if (!path || !msg) return ct_fail(err, CT_EINVAL, "ct_proto_write_binary: missing path or message");
  size_t n = protobuf_c_message_get_packed_size(msg);
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) return ct_fail(err, CT_ENOMEM, "%s: out of memory packing %zu bytes", path, n);
  size_t w = protobuf_c_message_pack(msg, buf);
  ct_status st = w == n ? ct_write_file_atomic(path, buf, n, err)
                        : ct_fail(err, CT_EINTERNAL, "%s: packed %zu bytes, expected %zu", path, w, n);
  free(buf);
  return st;
}
