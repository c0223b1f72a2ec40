/* Automatic shares (CcT's scheduler): a layer's batch split across the devices of its plan in
 * proportion to each one's throughput for that kind of work, measured by the drivers'
 * calibration (a single-threaded SGEMM and a large copy on the device, once per process), with
 * the time to fetch inputs that the previous layer left on another device counted against it,
 * and a fixed cost per partition; when the prediction says one device alone finishes sooner,
 * that device takes the whole batch, so a plan is never predicted slower than the best single
 * device. */
#ifndef CT_SCHED_AUTO_H
#define CT_SCHED_AUTO_H

#include "sched/plan.h"

/* Fills share[0..spec->n) (summing to 1; zeros for devices left out). */
void ct_auto_shares(const ct_placement *pl, const ct_plan_request *rq, const ct_plan_spec *spec, double *share);
/* Predicted seconds for rq's layer on `share` of the batch per spec entry (the slowest device). */
double ct_auto_predict(const ct_placement *pl, const ct_plan_request *rq, const ct_plan_spec *spec,
                       const double *share);
/* Bytes per second between the host and d's memory (measured once per device; huge for the
 * host itself). */
double ct_auto_link_rate(const ct_driver *d);

#endif
