/* Milliseconds: monotonic for deadlines and intervals, wall clock for timestamps. */
#ifndef PGCAST_CLOCK_H
#define PGCAST_CLOCK_H

#include <stdint.h>

int64_t pgc_mono_ms(void);
int64_t pgc_wall_ms(void);

/* A pgc_wake_fn (hub.h) whose argument points to an eventfd: makes it readable. */
void pgc_wake_eventfd(void *fd_ptr);

#endif
