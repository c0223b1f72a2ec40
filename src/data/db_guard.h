/* SIGBUS from LevelDB's mapped table files, turned into errors (issue 23).
 *
 * libleveldb (1.23, as Debian ships it) maps up to 1000 table files per process read-only and
 * hands out keys and values that point into the mapping; its C API has no way to read with
 * pread instead (the limit is set only through a C++ test helper the shared library does not
 * export). A table file truncated while mapped raises SIGBUS at the next touch of a page past its
 * new end. So every read from a LevelDB runs inside a guarded section on its thread:
 *
 *     sigjmp_buf jb;
 *     if (sigsetjmp(jb, 0)) { ct_db_guard_jumped(); ...the database changed: an error... }
 *     ct_db_guard_arm(&jb);  ...leveldb calls, copy the record out...  ct_db_guard_disarm();
 *
 * sigsetjmp does not save the signal mask (saving it is a system call per record: 5 us each
 * here, a quarter of a LevelDB pass); ct_db_guard_jumped unblocks SIGBUS, which the handler's
 * jump left blocked.
 *
 * A SIGBUS on an armed thread jumps back to the sigsetjmp. What LevelDB was doing is abandoned
 * mid-call (its objects may be half-updated, a lock taken during open may stay held), so the
 * caller must never touch that database handle again: it is leaked, not closed.
 *
 * LevelDB's own background thread (a compaction started by the reader's open or by its reads)
 * reads the same mappings and is never armed. A SIGBUS there at an address inside a mapping of a
 * file in a registered database directory prints an error naming the database and the file and
 * ends the process with exit status 1, as the CLI's errors do (a library handing back an error is
 * impossible from a thread it does not own; a clean exit beats death by signal). Any other SIGBUS
 * goes to the handler that was there before, or kills the process as by default. */
#ifndef CT_DB_GUARD_H
#define CT_DB_GUARD_H

#include <setjmp.h>

/* Installs the process-wide SIGBUS handler (once) and records `dir` (a LevelDB directory being
 * read) for the background-thread case. Returns a slot to pass to ct_db_guard_unregister, or -1
 * when the table of directories is full (reads on armed threads are still guarded). */
int ct_db_guard_register(const char *dir);
void ct_db_guard_unregister(int slot);

void ct_db_guard_arm(sigjmp_buf *jb);
void ct_db_guard_disarm(void);
/* After the jump back: disarms and unblocks SIGBUS on this thread. */
void ct_db_guard_jumped(void);

#endif
