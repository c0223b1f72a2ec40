/* Shared by the libFuzzer targets: the loaders under test read paths, so each input is written
 * to a file in a private temporary directory (on /dev/shm when there is one, to keep the
 * executions per second high) and the real loading function reads it back. */
#ifndef CT_FUZZ_UTIL_H
#define CT_FUZZ_UTIL_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The directory (created on first use, with a trailing '/'), or aborts: without it the target
 * cannot run at all, which is a setup failure rather than a finding. */
static const char *fuzz_dir(void) {
  static char dir[256];
  if (dir[0]) return dir;
  const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  char tmpl[256];
  snprintf(tmpl, sizeof tmpl, "%s/cortado_fuzz_XXXXXX", base);
  if (!mkdtemp(tmpl)) {
    perror("fuzz: mkdtemp");
    abort();
  }
  snprintf(dir, sizeof dir, "%s/", tmpl);
  return dir;
}

/* dir + name in a static buffer. */
static const char *fuzz_path(const char *name) {
  static char path[512];
  snprintf(path, sizeof path, "%s%s", fuzz_dir(), name);
  return path;
}

/* Writes bytes to dir/name (replacing it) and returns the path (static buffer). */
static const char *fuzz_write(const char *name, const uint8_t *data, size_t size) {
  const char *path = fuzz_path(name);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    perror("fuzz: open");
    abort();
  }
  while (size > 0) {
    ssize_t w = write(fd, data, size);
    if (w <= 0) {
      perror("fuzz: write");
      abort();
    }
    data += w;
    size -= (size_t)w;
  }
  close(fd);
  return path;
}

#endif
