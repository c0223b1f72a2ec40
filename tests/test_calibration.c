/* The CPU calibration cache (drivers/cpu/calib_cache.c): where it lives, what a first run writes,
 * that later runs read their host's line and measure nothing, that other hosts' lines survive a
 * rewrite and malformed ones do not, that a file that cannot be one (a directory) costs a
 * measurement and nothing else, and that a whole process (ct_cpu_calibration) takes its rates
 * from the file the environment names (ct_cpu_calibration_taken reports them once taken, and
 * nothing before), or measures and keeps nothing with CT_CALIBRATION_FILE=0,
 * and that processes starting together on a fresh cache measure once and agree. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "drivers/cpu.h"

static int measured;
static double fake_g = 123.25, fake_b = 7.5;

static bool fake_measure(double *g, double *b) {
  measured++;
  *g = fake_g;
  *b = fake_b;
  return true;
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  static char buf[8192];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  fclose(f);
  return buf;
}

static void spit(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  CHECK(f != NULL, "write %s", path);
  if (f) fputs(text, f), fclose(f);
}

static void test_path(void) {
  char p[4096];
  setenv("CT_CALIBRATION_FILE", "0", 1);
  CHECK(!ct_cpu_calibration_path(p, sizeof p), "CT_CALIBRATION_FILE=0: no file");
  setenv("CT_CALIBRATION_FILE", "", 1);
  CHECK(!ct_cpu_calibration_path(p, sizeof p), "CT_CALIBRATION_FILE empty: no file");
  setenv("CT_CALIBRATION_FILE", "/some/where/cal", 1);
  CHECK(ct_cpu_calibration_path(p, sizeof p) && !strcmp(p, "/some/where/cal"), "the named file: %s", p);
  unsetenv("CT_CALIBRATION_FILE");
  setenv("XDG_CACHE_HOME", "/xdg", 1);
  setenv("HOME", "/home/u", 1);
  CHECK(ct_cpu_calibration_path(p, sizeof p) && !strcmp(p, "/xdg/cortado/calibration"), "XDG_CACHE_HOME: %s", p);
  setenv("XDG_CACHE_HOME", "relative", 1); /* the XDG spec: relative paths are invalid, ignored */
  CHECK(ct_cpu_calibration_path(p, sizeof p) && !strcmp(p, "/home/u/.cache/cortado/calibration"), "HOME: %s", p);
  unsetenv("XDG_CACHE_HOME");
  unsetenv("HOME");
  CHECK(!ct_cpu_calibration_path(p, sizeof p), "no HOME, no XDG_CACHE_HOME: no file");
}

static void test_cache(const char *dir) {
  char host[256], path[4096], line[512];
  ct_cpu_calibration_host(host, sizeof host);
  CHECK(*host && !strchr(host, '\t') && !strchr(host, '\n') && host[strlen(host) - 1] != ' ', "host name '%s'", host);
  snprintf(path, sizeof path, "%s/a/b/calibration", dir);
  snprintf(line, sizeof line, "%s\t123.25\t7.5\n", host);

  /* first run: measured, written (its directories made) */
  double g = 0, b = 0;
  measured = 0;
  CHECK(ct_cpu_calibration_cached(path, &g, &b, fake_measure) == CT_CALIB_WRITTEN, "first run: measured, written");
  CHECK(measured == 1 && g == 123.25 && b == 7.5, "first run measures once (%d): %g %g", measured, g, b);
  const char *text = slurp(path);
  CHECK(text && !strcmp(text, line), "the file holds the host's line: '%s'", text ? text : "(none)");

  /* later runs: read, not measured */
  fake_g = 999, fake_b = 99;
  g = b = 0;
  CHECK(ct_cpu_calibration_cached(path, &g, &b, fake_measure) == CT_CALIB_READ, "second run: read");
  CHECK(measured == 1 && g == 123.25 && b == 7.5, "second run reads the file (%d measured): %g %g", measured, g, b);

  /* other hosts' lines are read past and kept; malformed ones are dropped at the rewrite */
  char long_line[700];
  memset(long_line, 'x', sizeof long_line - 2);
  long_line[sizeof long_line - 2] = '\n';
  long_line[sizeof long_line - 1] = 0;
  char text2[2048];
  snprintf(text2, sizeof text2,
           "other host; 4 CPUs\t50\t10\n"
           "no tabs at all\n"
           "%s\t-3\t2\n"
           "%s\tnan\t2\n"
           "%s\t12x\t2\n"
           "%s"
           "third host\t1e3\t2.5e1\n",
           host, host, host, long_line);
  spit(path, text2);
  g = b = 0;
  CHECK(ct_cpu_calibration_cached(path, &g, &b, fake_measure) == CT_CALIB_WRITTEN, "no valid line for this host: measured, written");
  CHECK(measured == 2 && g == 999 && b == 99, "measured again (%d): %g %g", measured, g, b);
  char want[2048];
  snprintf(want, sizeof want, "other host; 4 CPUs\t50\t10\nthird host\t1000\t25\n%s\t999\t99\n", host);
  text = slurp(path);
  CHECK(text && !strcmp(text, want), "rewritten: '%s', expected '%s'", text ? text : "(none)", want);

  /* a line longer than the reader takes, last in the file and without a newline, whose first
   * 511 bytes would parse: dropped, not read as its truncated start */
  char tail[1024];
  int at = snprintf(tail, sizeof tail, "%s\t5\t6.", host);
  while (at < 700) tail[at++] = '0';
  tail[at] = 0;
  spit(path, tail);
  g = b = 0;
  CHECK(ct_cpu_calibration_cached(path, &g, &b, fake_measure) == CT_CALIB_WRITTEN && measured == 3,
        "an over-long last line is not read (%d measured): %g %g", measured, g, b);

  /* the host's line among others: taken */
  snprintf(text2, sizeof text2, "other host\t50\t10\n%s\t321.5\t12.25\nthird host\t1\t1\n", host);
  spit(path, text2);
  g = b = 0;
  CHECK(ct_cpu_calibration_cached(path, &g, &b, fake_measure) == CT_CALIB_READ && g == 321.5 && b == 12.25 && measured == 3,
        "the host's line among others: %g %g (%d measured)", g, b, measured);
  text = slurp(path);
  CHECK(text && !strcmp(text, text2), "a read leaves the file as it was");

  /* a directory where the file should be: measured, nothing written, no crash */
  char dpath[4096];
  snprintf(dpath, sizeof dpath, "%s/adir", dir);
  mkdir(dpath, 0700);
  g = b = 0;
  CHECK(ct_cpu_calibration_cached(dpath, &g, &b, fake_measure) == CT_CALIB_MEASURED && measured == 4 && g == 999,
        "a directory: measured (%d)", measured);
  struct stat st;
  CHECK(stat(dpath, &st) == 0 && S_ISDIR(st.st_mode), "the directory is left alone");
}

/* a child process's ct_cpu_calibration under CT_CALIBRATION_FILE=value: 0 when it got want_g,
 * want_b (<= 0: anything positive) and its file is want_file (NULL: none) */
static int child(const char *value, double want_g, double want_b, const char *want_file) {
  pid_t pid = fork();
  if (pid == 0) {
    setenv("CT_CALIBRATION_FILE", value, 1);
    double g = 0, b = 0;
    const char *f = "(none)";
    bool ok = !ct_cpu_calibration_taken(&g, &b, &f) && g == 0; /* nothing asked for them yet */
    ct_cpu_calibration(&g, &b);
    ok = ok && ct_cpu_calibration_taken(&g, &b, &f);
    ok = ok && (want_g > 0 ? g == want_g && b == want_b : g > 0 && b > 0);
    ok = ok && (want_file ? f && !strcmp(f, want_file) : f == NULL);
    if (!ok) fprintf(stderr, "child: %g %g from %s\n", g, b, f ? f : "(measured)");
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 2;
}

static void test_process(const char *dir) {
  char host[256], path[4096], text[512];
  ct_cpu_calibration_host(host, sizeof host);
  snprintf(path, sizeof path, "%s/process", dir);
  snprintf(text, sizeof text, "%s\t77.5\t3.25\n", host);
  spit(path, text);
  CHECK(child(path, 77.5, 3.25, path) == 0, "a process takes its rates from the file");
  char fresh[4096];
  snprintf(fresh, sizeof fresh, "%s/fresh", dir);
  CHECK(child("0", 0, 0, NULL) == 0, "CT_CALIBRATION_FILE=0: measured, no file");
  CHECK(access(fresh, F_OK) != 0, "... and nothing written");
  CHECK(child(fresh, 0, 0, fresh) == 0, "a first process measures and writes");
  const char *t = slurp(fresh);
  CHECK(t && !strncmp(t, host, strlen(host)) && t[strlen(host)] == '\t', "... its host's line: '%s'", t ? t : "");
}

/* Processes starting together on a fresh cache (an MPI job's ranks): one measures, the others
 * wait for its line and read it, so all of them get the same rates. */
static char count_path[4096];
static bool slow_measure(double *g, double *b) {
  FILE *f = fopen(count_path, "a");
  if (f) fputs("measured\n", f), fclose(f);
  nanosleep(&(struct timespec){0, 300 * 1000 * 1000}, NULL);
  *g = 50 + (double)(getpid() % 1000); /* whose measurement it was */
  *b = 4.5;
  return true;
}

static void test_together(const char *dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/together/calibration", dir);
  snprintf(count_path, sizeof count_path, "%s/measured", dir);
  enum { KIDS = 3 };
  pid_t kid[KIDS];
  for (int i = 0; i < KIDS; i++) {
    kid[i] = fork();
    if (kid[i] == 0) {
      double g = 0, b = 0;
      ct_cpu_calibration_cached(path, &g, &b, slow_measure);
      char out[4200];
      snprintf(out, sizeof out, "%s/got%d", dir, i);
      FILE *f = fopen(out, "w");
      if (f) fprintf(f, "%.17g %.17g\n", g, b), fclose(f);
      _exit(0);
    }
  }
  for (int i = 0; i < KIDS; i++) waitpid(kid[i], NULL, 0);
  const char *count = slurp(count_path);
  CHECK(count && !strcmp(count, "measured\n"), "one measurement among %d processes: '%s'", KIDS, count ? count : "");
  char first[128] = "";
  for (int i = 0; i < KIDS; i++) {
    char out[4200];
    snprintf(out, sizeof out, "%s/got%d", dir, i);
    const char *got = slurp(out);
    if (i == 0 && got) snprintf(first, sizeof first, "%.100s", got);
    CHECK(got && *first && !strcmp(got, first), "process %d got '%s', process 0 '%s'", i, got ? got : "", first);
  }
}

int main(void) {
  char dir[] = "/tmp/ct_calibration_XXXXXX";
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  test_cache(dir);
  test_process(dir);
  test_together(dir);
  test_path();
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return ct_check_report();
}
