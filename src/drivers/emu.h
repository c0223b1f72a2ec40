/* The emu device: a second device for machines without a GPU. It runs the CPU driver's kernels
 * on memory of its own — an arena the host may not touch outside a driver call (the arena is
 * mapped PROT_NONE between calls, so a missed deref faults at once) — at a configurable speed
 * (CT_EMU_SPEED: each call takes 1/speed of its time; the rest is waited out), so that plans
 * across the CPU and "another device" are tested, and timed, without one. */
#ifndef CT_DRIVERS_EMU_H
#define CT_DRIVERS_EMU_H

#include "drivers/driver.h"

/* The driver for emu:index (its arena is the process's, shared by every driver of that index). */
ct_status ct_emu_create(int index, ct_driver **out, ct_error *err);

#endif
