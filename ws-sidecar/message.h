/* Client messages (SPEC §5): JSON text in, a reply out. A pure function (no I/O), so the
 * fuzz target can drive it directly. */
#ifndef PGCAST_WS_MESSAGE_H
#define PGCAST_WS_MESSAGE_H
#include <stddef.h>
/* Returns a malloc'd JSON reply, or NULL when there is none. */
char *ws_message_handle(const char *text, size_t len);
#endif
