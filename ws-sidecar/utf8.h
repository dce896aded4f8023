/* UTF-8 validation of text messages (RFC 6455 §8.1: invalid text closes with 1007).
 * wslay reassembles messages but does not look at their bytes, so we check them. */
#ifndef PGCAST_WS_UTF8_H
#define PGCAST_WS_UTF8_H
#include <stdbool.h>
#include <stddef.h>
bool ws_utf8_valid(const unsigned char *s, size_t n);
#endif
