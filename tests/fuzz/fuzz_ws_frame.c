/* libFuzzer: the WebSocket sidecar's RFC 6455 frame parser (ws-sidecar/frame.c) on
 * arbitrary client bytes, fed as a socket would: in pieces, an incomplete frame kept
 * and continued. The fuzz rule links core only, so the parser's files are included. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../ws-sidecar/frame.c"
#include "../../ws-sidecar/utf8.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t piece = (size_t)data[0] % 17 + 1; /* the first byte chooses the read size */
    data++;
    size--;
    ws_parser p = {.max_msg = 4096};
    unsigned char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    size_t have = 0, fed = 0;
    while (fed < size) {
        size_t n = size - fed < piece ? size - fed : piece;
        memcpy(buf + have, data + fed, n);
        have += n;
        fed += n;
        size_t off = 0;
        for (;;) {
            ws_frame_event ev;
            long r = ws_parse(&p, buf + off, have - off, &ev);
            if (r < 0) {
                if (r != -WS_CLOSE_PROTOCOL && r != -WS_CLOSE_INVALID_DATA && r != -WS_CLOSE_TOO_BIG)
                    abort();
                goto done;
            }
            if (r == 0)
                break;
            if ((size_t)r > have - off)
                abort();
            if ((ev.op == WS_OP_TEXT || ev.op == WS_OP_BINARY) && ev.len > p.max_msg)
                abort();
            if (ev.op == WS_OP_TEXT && !ws_utf8_valid(ev.data, ev.len))
                abort();
            if (ev.op >= 8 && ev.len > 125)
                abort();
            if (ev.len && !ev.data)
                abort();
            off += (size_t)r;
        }
        memmove(buf, buf + off, have - off);
        have -= off;
    }
done:
    ws_parser_free(&p);
    free(buf);
    return 0;
}
