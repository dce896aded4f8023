/* UTF-8 validation of text messages (RFC 6455 §8.1: invalid text closes with 1007).
 * frame.c checks every text message and close reason with it. */
#ifndef PGCAST_WS_UTF8_H
#define PGCAST_WS_UTF8_H
#include <stdbool.h>
#include <stddef.h>
bool ws_utf8_valid(const unsigned char *s, size_t n);
#endif
