/* Safe inputs and outputs (files.h). */
#include "core/files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "core/status.h"

#ifndef NAME_MAX
#define NAME_MAX 255
#endif

/* ".tmp-" + a pid of up to 10 digits + "-" + 8 hex digits, and the leading dot */
enum { TEMP_SUFFIX_MAX = 24, TEMP_BASE_MAX = NAME_MAX - 1 - TEMP_SUFFIX_MAX };

const char *ct_file_kind(mode_t mode) {
  if (S_ISREG(mode)) return NULL;
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a regular file";
}

ct_status ct_file_open_input(const char *path, const char *what, int *fd, struct stat *st, ct_error *err) {
  *fd = -1;
  const char *w = what ? what : "file";
  /* O_NONBLOCK: opening a FIFO without a writer returns at once instead of waiting for one */
  int f = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (f < 0) return ct_fail(err, CT_EIO, "cannot open %s %s: %s", w, path, strerror(errno));
  struct stat sb;
  if (fstat(f, &sb) != 0) {
    ct_status s = ct_fail(err, CT_EIO, "cannot open %s %s: %s", w, path, strerror(errno));
    close(f);
    return s;
  }
  const char *kind = ct_file_kind(sb.st_mode);
  if (kind) {
    close(f);
    if (S_ISDIR(sb.st_mode)) return ct_fail(err, CT_EIO, "cannot read %s %s: it is a directory, not a file", w, path);
    return ct_fail(err, CT_EIO, "cannot read %s %s: it is %s, not a regular file", w, path, kind);
  }
  int fl = fcntl(f, F_GETFL);
  if (fl >= 0) fcntl(f, F_SETFL, fl & ~O_NONBLOCK);
  *fd = f;
  if (st) *st = sb;
  return CT_OK;
}

static char *join_dir(const char *of, const char *rel) {
  const char *slash = strrchr(of, '/');
  size_t dl = slash ? (size_t)(slash - of) + 1 : 0, n = dl + strlen(rel) + 1;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%.*s%s", (int)dl, of, rel);
  return p;
}

ct_status ct_file_output_target(const char *path, char **target, ct_error *err) {
  *target = NULL;
  char *cur = strdup(path);
  if (!cur) return ct_fail(err, CT_ENOMEM, "out of memory");
  for (int hops = 0; hops < 40; hops++) {
    struct stat sb;
    if (lstat(cur, &sb) != 0) {
      if (errno == ENOENT) { /* a new file (through a dangling link: the file it names) */
        *target = cur;
        return CT_OK;
      }
      ct_status s = ct_fail(err, CT_EIO, "cannot write %s: %s: %s", path, cur, strerror(errno));
      free(cur);
      return s;
    }
    if (S_ISLNK(sb.st_mode)) {
      char buf[PATH_MAX];
      ssize_t n = readlink(cur, buf, sizeof buf - 1);
      if (n < 0) {
        ct_status s = ct_fail(err, CT_EIO, "cannot write %s: reading the link %s: %s", path, cur, strerror(errno));
        free(cur);
        return s;
      }
      buf[n] = 0;
      char *next = buf[0] == '/' ? strdup(buf) : join_dir(cur, buf);
      free(cur);
      if (!next) return ct_fail(err, CT_ENOMEM, "out of memory");
      cur = next;
      continue;
    }
    const char *kind = ct_file_kind(sb.st_mode);
    if (kind) {
      ct_status s = strcmp(cur, path) == 0
                        ? ct_fail(err, CT_EIO, "refusing to write %s: it is %s; cortado writes only regular files",
                                  path, kind)
                        : ct_fail(err, CT_EIO,
                                  "refusing to write %s: it links to %s, which is %s; cortado writes only regular "
                                  "files", path, cur, kind);
      free(cur);
      return s;
    }
    *target = cur;
    return CT_OK;
  }
  free(cur);
  return ct_fail(err, CT_EIO, "cannot write %s: too many levels of symbolic links", path);
}

char *ct_file_temp_name(const char *path, unsigned tag) {
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  size_t dl = slash ? (size_t)(slash - path) + 1 : 0, bl = strlen(base);
  if (bl > TEMP_BASE_MAX) bl = TEMP_BASE_MAX;
  size_t n = dl + 1 + bl + TEMP_SUFFIX_MAX + 1;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%.*s.%.*s.tmp-%ld-%08x", (int)dl, path, (int)bl, base, (long)getpid(), tag);
  return p;
}

/* The pid of a temporary's name ("....tmp-<pid>-<hex>"), or -1 when it is not one. */
static long temp_pid(const char *name) {
  const char *t = NULL;
  for (const char *p = strstr(name, ".tmp-"); p; p = strstr(p + 1, ".tmp-")) t = p;
  if (!t || name[0] != '.') return -1;
  char *end;
  errno = 0;
  long pid = strtol(t + 5, &end, 10);
  if (errno || end == t + 5 || *end != '-' || pid <= 0) return -1;
  const char *h = end + 1;
  size_t hl = strspn(h, "0123456789abcdef");
  return hl >= 1 && hl <= 8 && h[hl] == 0 ? pid : -1;
}

static void remove_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d))) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      char p[PATH_MAX];
      if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) < (int)sizeof p) unlink(p);
    }
    closedir(d);
  }
  rmdir(dir);
}

int ct_file_remove_stale_temps(const char *prefix) {
  const char *slash = strrchr(prefix, '/');
  const char *base = slash ? slash + 1 : prefix;
  char dir[PATH_MAX];
  if (slash)
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - prefix + 1), prefix);
  else
    snprintf(dir, sizeof dir, ".");
  size_t bl = strlen(base);
  if (bl > TEMP_BASE_MAX) bl = TEMP_BASE_MAX; /* temporaries of long names hold a shortened base */
  DIR *d = opendir(dir);
  if (!d) return 0;
  int removed = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] != '.' || strncmp(e->d_name + 1, base, bl) != 0) continue;
    long pid = temp_pid(e->d_name);
    if (pid < 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s%s%s", dir, slash ? "" : "/", e->d_name) >= (int)sizeof p) continue;
    struct stat sb;
    if (lstat(p, &sb) != 0) continue;
    if (S_ISDIR(sb.st_mode))
      remove_tree(p);
    else if (S_ISREG(sb.st_mode))
      unlink(p);
    else
      continue;
    removed++;
  }
  closedir(d);
  return removed;
}

const char *ct_file_write_error(char *buf, size_t n, int errnum, const char *path) {
  char dir[PATH_MAX];
  const char *slash = strrchr(path, '/');
  if (slash)
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - path + 1), path);
  else
    snprintf(dir, sizeof dir, ".");
  struct statvfs vf;
  struct stat sb;
  struct rlimit rl;
  if (errnum == EFBIG || (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
                          stat(path, &sb) == 0 && (rlim_t)sb.st_size + 65536 >= rl.rlim_cur)) {
    if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
      snprintf(buf, n, "%s (the file size limit, ulimit -f, is %llu bytes)", strerror(EFBIG),
               (unsigned long long)rl.rlim_cur);
    else
      snprintf(buf, n, "%s", strerror(EFBIG));
    return buf;
  }
  /* A short write that filled the disk comes back as EIO from LMDB; a nearly full filesystem
   * after a failed write is the cause. */
  if (errnum == ENOSPC || errnum == EDQUOT ||
      (errnum == EIO && statvfs(dir, &vf) == 0 && (unsigned long long)vf.f_bavail * vf.f_frsize < (1ull << 20))) {
    snprintf(buf, n, "%s", strerror(errnum == EDQUOT ? EDQUOT : ENOSPC));
    return buf;
  }
  snprintf(buf, n, "%s", strerror(errnum));
  return buf;
}
