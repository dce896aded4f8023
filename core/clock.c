/* Clocks and the eventfd wake shared by every consumer of the hub. */
#include "clock.h"

#include <time.h>
#include <unistd.h>

static int64_t ms(clockid_t clock)
{
    struct timespec ts;
    if (clock_gettime(clock, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t pgc_mono_ms(void) { return ms(CLOCK_MONOTONIC); }
int64_t pgc_wall_ms(void) { return ms(CLOCK_REALTIME); }

void pgc_wake_eventfd(void *fd_ptr)
{
    uint64_t one = 1;
    ssize_t w = write(*(int *)fd_ptr, &one, sizeof(one));
    (void)w; /* the counter only has to be non-zero; EAGAIN means it already is */
}
