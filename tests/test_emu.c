/* The emu device itself (drivers/emu.h): its guard (a host access to emu memory outside a driver
 * call kills the process with a message naming the device, while the same read through download
 * works), its settings (CT_EMU_FAIL_AFTER, CT_EMU_MEMORY_MB, bad values of each) and their
 * effects. Settings are read once per device per process, so each case runs in a child process
 * forked before this process creates any emu device; the parent reads the child's stderr through
 * a pipe and judges how it ended. CT_EMU_SPEED's effect is a timing and is not tested here (no
 * timing assertions in unit tests); only its validation is. The entries' results on emu are
 * test_driver.c's and test_driver_nn.c's. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "drivers/driver.h"

/* How a child ended, and what it wrote to stderr. */
typedef struct child {
  int status;
  char err[4096];
} child;

/* Runs fn(arg) in a child process with its stderr on a pipe; the child exits 0 when fn's CHECKs
 * all passed, 1 otherwise (unless something kills it first). */
static void in_child(void (*fn)(const void *), const void *arg, child *out) {
  int fd[2];
  memset(out, 0, sizeof *out);
  out->status = -1;
  if (pipe(fd) != 0) {
    CHECK(false, "pipe");
    return;
  }
  fflush(stdout);
  fflush(stderr);
  const pid_t pid = fork();
  if (pid < 0) {
    CHECK(false, "fork");
    close(fd[0]), close(fd[1]);
    return;
  }
  if (pid == 0) {
    close(fd[0]);
    dup2(fd[1], 2);
    close(fd[1]);
    const struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none); /* the deliberate faults leave no core files */
    ct_checks_failed = 0;
    fn(arg);
    _exit(ct_checks_failed ? 1 : 0);
  }
  close(fd[1]);
  size_t got = 0; /* read to the end (so the child never blocks), keeping what fits */
  for (;;) {
    char chunk[512];
    const ssize_t r = read(fd[0], chunk, sizeof chunk);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    const size_t keep = (size_t)r < sizeof out->err - 1 - got ? (size_t)r : sizeof out->err - 1 - got;
    memcpy(out->err + got, chunk, keep);
    got += keep;
  }
  out->err[got] = '\0';
  close(fd[0]);
  waitpid(pid, &out->status, 0);
}

static bool exited_ok(const child *c) { return WIFEXITED(c->status) && WEXITSTATUS(c->status) == 0; }

/* ---------------------------------------------------------------- settings, each in a child */

typedef struct setting {
  const char *name, *value;
} setting;

/* A bad value: creation fails with CT_EINVAL, no driver, and a message naming the variable. */
static void refuses(const void *arg) {
  const setting *s = arg;
  setenv(s->name, s->value, 1);
  ct_driver *d = NULL;
  ct_error err = {0};
  const ct_status st = ct_driver_create("emu:0", NULL, &d, &err);
  CHECK(st == CT_EINVAL && !d, "%s=%s: created with %s", s->name, s->value, ct_status_name(st));
  CHECK(strstr(err.msg, s->name) != NULL, "%s=%s: the message names the variable: %s", s->name, s->value, err.msg);
  ct_driver_free(d);
}

/* A good value of the same variable is taken (so the refusals are about the values). */
static void accepts(const void *arg) {
  const setting *s = arg;
  setenv(s->name, s->value, 1);
  ct_driver *d = NULL;
  ct_error err = {0};
  const ct_status st = ct_driver_create("emu:0", NULL, &d, &err);
  CHECK(st == CT_OK && d, "%s=%s refused: %s", s->name, s->value, err.msg);
  ct_driver_free(d);
}

/* CT_EMU_FAIL_AFTER=3: the third call fails with a device error naming its entry; the calls
 * before and after it work. */
static void fails_after(const void *arg) {
  (void)arg;
  setenv("CT_EMU_FAIL_AFTER", "3", 1);
  ct_driver *d = NULL;
  ct_error err = {0};
  CHECK(ct_driver_create("emu:0", NULL, &d, &err) == CT_OK, "create: %s", err.msg);
  if (!d) return;
  const ct_driver_ops *o = d->ops;
  float *a = o->alloc(d, 4 * sizeof(float)), *y = o->alloc(d, 4 * sizeof(float));
  CHECK(a && y, "alloc");
  if (!a || !y) return;
  const float host[4] = {1, 2, 3, 4};
  float back[4] = {0};
  char msg[256] = "";
  CHECK(o->upload(d, a, host, sizeof host) == CT_OK, "call 1 (upload) works");
  CHECK(o->memset(d, y, 0, sizeof back) == CT_OK, "call 2 (memset) works");
  const ct_status st = o->add(d, 4, a, a, y);
  o->error_message(d, msg, sizeof msg);
  CHECK(st == CT_EDEVICE, "call 3 (add) fails with a device error, not %s", ct_status_name(st));
  CHECK(strstr(msg, "injected fault") && strstr(msg, "add"), "the message names the fault and the entry: %s", msg);
  ct_driver_error(d, &err, st, "Eltwise");
  CHECK(strstr(err.msg, "emu:0") && strstr(err.msg, "injected fault in add"), "ct_driver_error: %s", err.msg);
  CHECK(o->add(d, 4, a, a, y) == CT_OK, "call 4 (add) works again");
  CHECK(o->download(d, back, y, sizeof back) == CT_OK && back[0] == 2 && back[3] == 8, "call 5: the sum (%g %g)",
        (double)back[0], (double)back[3]);
  o->free(d, a);
  o->free(d, y);
  ct_driver_free(d);
}

/* CT_EMU_MEMORY_MB=1: allocations beyond the megabyte fail as a full device's would. */
static void small_arena(const void *arg) {
  (void)arg;
  setenv("CT_EMU_MEMORY_MB", "1", 1);
  ct_driver *d = NULL;
  ct_error err = {0};
  CHECK(ct_driver_create("emu:0", NULL, &d, &err) == CT_OK, "create: %s", err.msg);
  if (!d) return;
  const ct_driver_ops *o = d->ops;
  const size_t mb = (size_t)1 << 20;
  CHECK(o->alloc(d, mb + 1) == NULL, "one byte beyond 1 MB is refused");
  CHECK(o->alloc(d, 4 * mb) == NULL, "4 MB is refused");
  void *all = o->alloc(d, mb);
  CHECK(all != NULL, "the whole megabyte");
  CHECK(o->alloc(d, 64) == NULL, "nothing more while it is held");
  o->free(d, all);
  void *a = o->alloc(d, 600 * 1024), *b = o->alloc(d, 600 * 1024);
  CHECK(a && !b, "after the free: 600 KB, but not twice (%p %p)", a, b);
  o->free(d, a);
  o->free(d, b);
  ct_driver_free(d);
}

/* ---------------------------------------------------------------- the guard */

typedef struct probe {
  const ct_driver *d;
  float *p; /* 4 floats of emu memory holding 1.5, 2.5, 3.5, 4.5 */
} probe;

static void read_directly(const void *arg) {
  const probe *pr = arg;
  volatile float v = ((volatile const float *)pr->p)[2];
  fprintf(stderr, "read %g without a fault\n", (double)v);
}

static void write_directly(const void *arg) {
  const probe *pr = arg;
  ((volatile float *)pr->p)[1] = 7.0f;
  fprintf(stderr, "wrote without a fault\n");
}

static void read_by_download(const void *arg) {
  const probe *pr = arg;
  float back[4] = {0};
  CHECK(pr->d->ops->download(pr->d, back, pr->p, sizeof back) == CT_OK, "download");
  CHECK(back[2] == 3.5f, "the value through download: %g", (double)back[2]);
}

/* A fault outside any emu arena is not emu's to report: it goes on to the default action (or to
 * whoever handled SIGSEGV before, e.g. AddressSanitizer). */
static void fault_elsewhere(const void *arg) {
  (void)arg;
  void *page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(page != MAP_FAILED, "mmap");
  if (page == MAP_FAILED) return;
  volatile int v = *(volatile int *)page;
  fprintf(stderr, "read %d without a fault\n", v);
}

static void test_guard(void) {
  ct_driver *d = NULL;
  ct_error err = {0};
  CHECK(ct_driver_create("emu:0", NULL, &d, &err) == CT_OK && d, "create emu:0: %s", err.msg);
  if (!d) return;
  probe pr = {d, d->ops->alloc(d, 4 * sizeof(float))};
  CHECK(pr.p != NULL, "alloc");
  if (!pr.p) return;
  const float host[4] = {1.5f, 2.5f, 3.5f, 4.5f};
  CHECK(d->ops->upload(d, pr.p, host, sizeof host) == CT_OK, "upload");
  child c;

  in_child(read_by_download, &pr, &c);
  CHECK(exited_ok(&c), "a child reading through download exits normally (status %#x): %s", c.status, c.err);

  static const struct {
    const char *what;
    void (*fn)(const void *);
  } touches[] = {{"a direct read", read_directly}, {"a direct write", write_directly}};
  for (size_t i = 0; i < sizeof touches / sizeof touches[0]; i++) {
    in_child(touches[i].fn, &pr, &c);
    CHECK(WIFSIGNALED(c.status) && WTERMSIG(c.status) == SIGABRT, "%s of emu memory: the child %s %d, not SIGABRT: %s",
          touches[i].what, WIFSIGNALED(c.status) ? "died of signal" : "exited with",
          WIFSIGNALED(c.status) ? WTERMSIG(c.status) : WEXITSTATUS(c.status), c.err);
    CHECK(strstr(c.err, "touched emu:0 memory") != NULL, "%s: the message names the device: %s", touches[i].what,
          c.err);
  }

  in_child(fault_elsewhere, NULL, &c);
  CHECK(!exited_ok(&c) && strstr(c.err, "touched emu") == NULL,
        "a fault outside the arena is not reported as emu's (status %#x): %s", c.status, c.err);

  float back[4] = {0};
  CHECK(d->ops->download(d, back, pr.p, sizeof back) == CT_OK && memcmp(back, host, sizeof host) == 0,
        "the same memory through download in this process: %g %g %g %g", (double)back[0], (double)back[1],
        (double)back[2], (double)back[3]);
  d->ops->free(d, pr.p);
  ct_driver_free(d);
}

int main(void) {
  /* the settings below are this test's alone */
  unsetenv("CT_EMU_SPEED");
  unsetenv("CT_EMU_MEMORY_MB");
  unsetenv("CT_EMU_FAIL_AFTER");
  static const setting bad[] = {
      {"CT_EMU_SPEED", "0"},       {"CT_EMU_SPEED", "2"},          {"CT_EMU_SPEED", "abc"},
      {"CT_EMU_SPEED", "-0.5"},    {"CT_EMU_MEMORY_MB", "-1"},     {"CT_EMU_MEMORY_MB", "0"},
      {"CT_EMU_MEMORY_MB", "1x"},  {"CT_EMU_FAIL_AFTER", "-3"},    {"CT_EMU_FAIL_AFTER", "abc"},
  };
  static const setting good[] = {{"CT_EMU_SPEED", "0.25"}, {"CT_EMU_SPEED", "1"}, {"CT_EMU_MEMORY_MB", "64"},
                                 {"CT_EMU_FAIL_AFTER", "10"}};
  child c;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    in_child(refuses, &bad[i], &c);
    CHECK(exited_ok(&c), "%s=%s (status %#x): %s", bad[i].name, bad[i].value, c.status, c.err);
  }
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    in_child(accepts, &good[i], &c);
    CHECK(exited_ok(&c), "%s=%s (status %#x): %s", good[i].name, good[i].value, c.status, c.err);
  }
  in_child(fails_after, NULL, &c);
  CHECK(exited_ok(&c), "CT_EMU_FAIL_AFTER=3 (status %#x): %s", c.status, c.err);
  in_child(small_arena, NULL, &c);
  CHECK(exited_ok(&c), "CT_EMU_MEMORY_MB=1 (status %#x): %s", c.status, c.err);
  /* last: this process's own emu:0, which the children above must not have inherited */
  test_guard();
  return ct_check_report();
}
