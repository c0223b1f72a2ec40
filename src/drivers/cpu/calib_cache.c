/* The calibration cache (drivers/cpu.h): a host's measured GEMM rate and memory bandwidth, kept
 * in a file so that every process on the host sees the same two numbers.
 *
 * Why: the cost model picks each convolution's lowering from these rates, and measured afresh
 * they move with the host's load (a 2-core Zen 5 VM, ten processes in a row: 172-220 GFLOP/s,
 * 26-42 GB/s). On a deep net some layer always sits near the edge between two types, so the
 * picks, and with them the run's rounding and speed, changed from one run to the next
 * (ResNet-101: 46 of its 1x1 layers between TYPE1 and POINTWISE), and a resumed run did not
 * continue the first bit for bit.
 *
 * The file holds one line per host: "<host>\t<GFLOP/s>\t<GB/s>", the host being the CPU's name,
 * family, model and stepping, the CPUs online and OpenBLAS's kernel core (a home directory
 * shared between machines keeps each one's line). Lines that do not parse are reported on
 * stderr and dropped when the file is next written; the file is replaced whole (a temporary and
 * a rename), never half-written, under a lock (an flock on "<file>.lock") that processes
 * starting together take in turn. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "core/blas.h"
#include "core/files.h"
#include "drivers/cpu.h"

enum { LINE_MAX_BYTES = 512 };

/* whitespace and control characters of s as single spaces, none at either end */
static void tidy(char *s) {
  char *w = s;
  bool space = true;
  for (const char *r = s; *r; r++) {
    const bool sp = (unsigned char)*r <= ' ' || *r == 0x7f;
    if (sp && space) continue;
    *w++ = sp ? ' ' : *r;
    space = sp;
  }
  if (w > s && w[-1] == ' ') w--;
  *w = 0;
}

void ct_cpu_calibration_host(char *buf, size_t n) {
  char name[64] = "";
  unsigned fam = 0, model = 0, step = 0;
#if defined(__x86_64__) || defined(__i386__)
  unsigned r[12] = {0}, a, b, c, d;
  if (__get_cpuid(0x80000000, &a, &b, &c, &d) && a >= 0x80000004) {
    for (unsigned i = 0; i < 3; i++) __get_cpuid(0x80000002 + i, &r[4 * i], &r[4 * i + 1], &r[4 * i + 2], &r[4 * i + 3]);
    memcpy(name, r, 48);
    name[48] = 0;
  }
  if (__get_cpuid(1, &a, &b, &c, &d)) {
    fam = (a >> 8 & 0xf) + (a >> 20 & 0xff);
    model = (a >> 4 & 0xf) | (a >> 12 & 0xf0);
    step = a & 0xf;
  }
#endif
  if (!*name) {
    struct utsname u;
    snprintf(name, sizeof name, "%.48s", uname(&u) == 0 ? u.machine : "unknown");
  }
  tidy(name);
  const char *core = ct_blas_core_name();
  snprintf(buf, n, "%s; family %u model %u stepping %u; %ld CPUs; OpenBLAS %s", name, fam, model, step,
           sysconf(_SC_NPROCESSORS_ONLN), core ? core : "unknown");
  tidy(buf);
}

bool ct_cpu_calibration_path(char *buf, size_t n) {
  const char *e = getenv("CT_CALIBRATION_FILE");
  if (e) return *e && strcmp(e, "0") != 0 && snprintf(buf, n, "%s", e) < (int)n;
  const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  if (xdg && *xdg == '/') return snprintf(buf, n, "%s/cortado/calibration", xdg) < (int)n;
  return home && *home == '/' && snprintf(buf, n, "%s/.cache/cortado/calibration", home) < (int)n;
}

/* One line: host, GFLOP/s, GB/s (both finite and positive). */
static bool parse_line(char *line, char **host, double *gflops, double *gbytes) {
  char *t1 = strchr(line, '\t');
  if (!t1 || t1 == line) return false;
  *t1 = 0;
  char *end;
  errno = 0;
  const double g = strtod(t1 + 1, &end);
  if (errno || end == t1 + 1 || *end != '\t') return false;
  const char *s2 = end + 1;
  const double b = strtod(s2, &end);
  if (errno || end == s2 || *end != 0 || !(g > 0 && g < 1e9) || !(b > 0 && b < 1e9)) return false;
  *host = line;
  *gflops = g;
  *gbytes = b;
  return true;
}

/* Reads path's lines; the host's rates into *gflops, *gbytes (true when found); every other
 * host's valid line appended to keep (keep_n bytes) for a rewrite. A missing file is no file. */
static bool read_cache(const char *path, const char *host, double *gflops, double *gbytes, char *keep, size_t keep_n) {
  keep[0] = 0;
  int fd;
  ct_error err = {0};
  struct stat st;
  if (ct_file_open_input(path, "calibration cache", &fd, NULL, &err) != CT_OK) {
    if (lstat(path, &st) == 0 || errno != ENOENT) fprintf(stderr, "cortado: %s; measuring\n", err.msg);
    return false;
  }
  FILE *f = fdopen(fd, "r");
  if (!f) {
    close(fd);
    return false;
  }
  bool found = false;
  char line[LINE_MAX_BYTES];
  for (int no = 1; fgets(line, sizeof line, f); no++) {
    size_t len = strlen(line);
    const bool whole = len && line[len - 1] == '\n';
    if (whole) line[--len] = 0;
    char *h;
    double g, b;
    const bool too_long = !whole && !feof(f); /* longer than any line this file holds */
    if (too_long) {
      int ch;
      while ((ch = fgetc(f)) != EOF && ch != '\n') {
      }
    }
    if (too_long || !parse_line(line, &h, &g, &b)) {
      fprintf(stderr,
              "cortado: calibration cache %s:%d: expected '<host>\\t<GFLOP/s>\\t<GB/s>' with positive rates; "
              "the line is dropped at the next write\n",
              path, no);
      continue;
    }
    if (!strcmp(h, host)) {
      *gflops = g;
      *gbytes = b;
      found = true;
    } else if (strlen(keep) + len + 2 < keep_n) {
      snprintf(keep + strlen(keep), keep_n - strlen(keep), "%s\t%.17g\t%.17g\n", h, g, b);
    }
  }
  fclose(f);
  return found;
}

/* mkdir -p of path's directory (mode 0700 for what it creates) */
static void make_parents(const char *path) {
  char dir[4096];
  if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir) return;
  for (char *p = dir + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    mkdir(dir, 0700);
    *p = '/';
  }
}

static bool write_cache(const char *path, const char *host, double gflops, double gbytes, const char *keep) {
  ct_error err = {0};
  char *target = NULL;
  if (ct_file_output_target(path, &target, &err) != CT_OK) {
    fprintf(stderr, "cortado: calibration cache: %s (CT_CALIBRATION_FILE=0 measures in every run)\n", err.msg);
    return false;
  }
  char *tmp = ct_file_temp_name(target, (unsigned)getpid());
  FILE *f = tmp ? fopen(tmp, "w") : NULL;
  bool ok = f && fprintf(f, "%s%s\t%.17g\t%.17g\n", keep, host, gflops, gbytes) > 0;
  if (f) ok = fclose(f) == 0 && ok;
  if (ok) ok = rename(tmp, target) == 0;
  if (!ok) {
    fprintf(stderr, "cortado: cannot write calibration cache %s: %s (CT_CALIBRATION_FILE=0 measures in every run)\n",
            target, strerror(errno));
    if (tmp) unlink(tmp);
  }
  free(tmp);
  free(target);
  return ok;
}

ct_calib_source ct_cpu_calibration_cached(const char *path, double *gflops, double *gbytes,
                               bool (*measure)(double *gflops, double *gbytes)) {
  char host[256], keep[16384], lock[4200];
  ct_cpu_calibration_host(host, sizeof host);
  /* processes starting together (an MPI job's ranks on one host) take turns: the first
   * measures and writes, the others wait idle, then read its line, so all of them pick alike
   * (and the measurement is not taken under the others' load). Where the lock file cannot be
   * made, each goes on alone. */
  make_parents(path);
  int lfd = -1;
  if (snprintf(lock, sizeof lock, "%s.lock", path) < (int)sizeof lock) {
    lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    while (lfd >= 0 && flock(lfd, LOCK_EX) != 0 && errno == EINTR) {
    }
  }
  ct_calib_source src = CT_CALIB_MEASURED;
  if (read_cache(path, host, gflops, gbytes, keep, sizeof keep))
    src = CT_CALIB_READ;
  else if (measure(gflops, gbytes) && write_cache(path, host, *gflops, *gbytes, keep))
    src = CT_CALIB_WRITTEN;
  if (lfd >= 0) close(lfd); /* and with it the lock */
  return src;
}
