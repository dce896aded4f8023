/* libFuzzer: the WebSocket sidecar's client-message parser (JSON text -> action) and the
 * replies built from it. The fuzz rule links core only, so the parser's one file is
 * included here; it depends on json-c and core/channel.h, nothing else. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../ws-sidecar/message.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ws_action a;
    ws_message_parse((const char *)data, size, 1 << 20, &a);
    if (a.kind == WS_ACT_ERROR && (!a.code || !a.message))
        abort();
    if (a.kind != WS_ACT_ERROR && a.kind != WS_ACT_PING && !a.channel)
        abort();
    if (a.channel && !pgc_channel_valid(a.channel))
        abort();
    char *r = ws_message_reply(&a);
    if ((a.kind == WS_ACT_ERROR || a.kind == WS_ACT_PING) && !r)
        abort();
    free(r);
    ws_action_free(&a);
    return 0;
}
