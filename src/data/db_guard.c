#include "data/db_guard.h"

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { SLOTS = 16 };

static _Thread_local sigjmp_buf *armed;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static struct sigaction previous;
/* the LevelDB directories being read, as realpath gives them (so they match /proc/self/maps);
 * written under mu, read by the handler without it */
static char dirs[SLOTS][PATH_MAX];
static volatile sig_atomic_t used[SLOTS];

/* ------------------------------------------------------------------ in the handler: async-signal-safe only */

static char *append(char *at, const char *end, const char *s) {
  while (*s && at < end) *at++ = *s++;
  return at;
}

static uintptr_t hex(const char **p) {
  uintptr_t v = 0;
  for (;; (*p)++) {
    char c = **p;
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return v;
    v = v << 4 | (uintptr_t)d;
  }
}

/* If the line of /proc/self/maps maps `addr` from a file inside a registered directory, copies
 * the file's path into file and returns the slot; -1 otherwise. */
static int line_in_db(const char *line, uintptr_t addr, char *file, size_t n) {
  const char *p = line;
  uintptr_t lo = hex(&p);
  if (*p++ != '-') return -1;
  uintptr_t hi = hex(&p);
  if (addr < lo || addr >= hi) return -1;
  for (int field = 0; field < 4; field++) { /* perms, offset, device, inode */
    while (*p == ' ') p++;
    while (*p && *p != ' ') p++;
  }
  while (*p == ' ') p++;
  for (int s = 0; s < SLOTS; s++) {
    if (!used[s]) continue;
    size_t len = strlen(dirs[s]);
    if (strncmp(p, dirs[s], len) || p[len] != '/') continue;
    size_t k = 0;
    while (p[k] && k + 1 < n) file[k] = p[k], k++;
    file[k] = 0;
    return s;
  }
  return -1;
}

static int mapped_file_in_db(uintptr_t addr, char *file, size_t n) {
  static char buf[3 * PATH_MAX];
  int fd = open("/proc/self/maps", O_RDONLY);
  if (fd < 0) return -1;
  size_t have = 0;
  int slot = -1;
  for (;;) {
    ssize_t k = read(fd, buf + have, sizeof buf - 1 - have);
    if (k <= 0) break;
    have += (size_t)k;
    buf[have] = 0;
    char *line = buf, *nl;
    while ((nl = strchr(line, '\n'))) {
      *nl = 0;
      if ((slot = line_in_db(line, addr, file, n)) >= 0) goto done;
      line = nl + 1;
    }
    have = strlen(line); /* a line cut by the read: keep it for the next */
    memmove(buf, line, have);
    if (have == sizeof buf - 1) have = 0; /* longer than any real line: drop it */
  }
done:
  close(fd);
  return slot;
}

static void on_sigbus(int sig, siginfo_t *si, void *uc) {
  sigjmp_buf *jb = armed;
  if (jb) {
    armed = NULL;
    siglongjmp(*jb, 1);
  }
  static char file[PATH_MAX];
  int s = mapped_file_in_db((uintptr_t)si->si_addr, file, sizeof file);
  if (s >= 0) {
    static char msg[3 * PATH_MAX];
    char *at = msg, *end = msg + sizeof msg - 1;
    at = append(at, end, "cortado: LevelDB ");
    at = append(at, end, dirs[s]);
    at = append(at, end, " changed while being read: ");
    at = append(at, end, file);
    at = append(at, end, " was cut short under LevelDB's background compaction\n");
    (void)!write(2, msg, (size_t)(at - msg));
    _exit(1);
  }
  /* not ours: whoever handled it before, or the default */
  if (previous.sa_flags & SA_SIGINFO) {
    if (previous.sa_sigaction) previous.sa_sigaction(sig, si, uc);
    return;
  }
  if (previous.sa_handler == SIG_IGN) return;
  if (previous.sa_handler != SIG_DFL && previous.sa_handler) {
    previous.sa_handler(sig);
    return;
  }
  signal(SIGBUS, SIG_DFL);
  raise(SIGBUS);
}

/* ------------------------------------------------------------------ outside it */

static void install(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGBUS, &sa, &previous);
}

int ct_db_guard_register(const char *dir) {
  pthread_once(&once, install);
  char real[PATH_MAX];
  if (!realpath(dir, real)) return -1;
  pthread_mutex_lock(&mu);
  int slot = -1;
  for (int s = 0; s < SLOTS && slot < 0; s++) {
    if (used[s]) continue;
    memcpy(dirs[s], real, sizeof real);
    used[s] = 1;
    slot = s;
  }
  pthread_mutex_unlock(&mu);
  return slot;
}

void ct_db_guard_unregister(int slot) {
  if (slot < 0 || slot >= SLOTS) return;
  pthread_mutex_lock(&mu);
  used[slot] = 0;
  pthread_mutex_unlock(&mu);
}

void ct_db_guard_arm(sigjmp_buf *jb) { armed = jb; }
void ct_db_guard_disarm(void) { armed = NULL; }

void ct_db_guard_jumped(void) {
  armed = NULL;
  sigset_t bus;
  sigemptyset(&bus);
  sigaddset(&bus, SIGBUS);
  pthread_sigmask(SIG_UNBLOCK, &bus, NULL);
}
