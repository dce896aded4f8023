/* Envelope bytes: exact, payload embedded as JSON, strings escaped. */
#include <stdlib.h>

#include "envelope.h"
#include "t.h"

int main(void)
{
    size_t len = 0;
    const char *payload = "{\"a\": 1, \"b\": [1, 2], \"s\": \"x\\\"y\"}";
    char *e = pgc_envelope_event("project.updated", "project:abc", 42, payload, strlen(payload), 1707580800000, &len);
    T_STR(e, "{\"type\":\"project.updated\",\"channel\":\"project:abc\",\"seq\":42,"
             "\"payload\":{\"a\": 1, \"b\": [1, 2], \"s\": \"x\\\"y\"},\"timestamp\":1707580800000}",
          "event envelope bytes (SPEC §2 key order, payload raw)");
    T_INT(len, strlen(e), "length reported");
    free(e);

    e = pgc_envelope_event("t\"q", "c/1", 1, "null", 4, 0, NULL);
    T_STR(e, "{\"type\":\"t\\\"q\",\"channel\":\"c/1\",\"seq\":1,\"payload\":null,\"timestamp\":0}",
          "quotes escaped, slashes not, null payload");
    free(e);

    /* an event type is any text of 1-200 bytes (realtime.publish): CR, LF and control
     * characters are escaped, so a type can never end an SSE data line or add an id: */
    e = pgc_envelope_event("a\r\nid: x\n\ndata: \x01<img>", "c", 1, "{}", 2, 0, NULL);
    T_STR(e, "{\"type\":\"a\\r\\nid: x\\n\\ndata: \\u0001<img>\",\"channel\":\"c\",\"seq\":1,\"payload\":{},\"timestamp\":0}",
          "CR, LF and control characters in a type are escaped");
    free(e);

    e = pgc_envelope_gap("project:abc", 3, 9, &len);
    T_STR(e, "{\"type\":\"gap\",\"channel\":\"project:abc\",\"from\":3,\"to\":9}", "gap message");
    free(e);

    e = pgc_envelope_heartbeat(1707580800000, &len);
    T_STR(e, "{\"type\":\"heartbeat\",\"timestamp\":1707580800000}", "heartbeat message");
    free(e);

    e = pgc_envelope_http_error("bad_channel", "channel \"x y\" is not valid", &len);
    T_STR(e, "{\"error\":{\"code\":\"bad_channel\",\"message\":\"channel \\\"x y\\\" is not valid\"}}",
          "HTTP error body");
    free(e);
    e = pgc_envelope_error("forbidden", "no", "r1", &len);
    T_STR(e, "{\"type\":\"error\",\"code\":\"forbidden\",\"message\":\"no\",\"requestId\":\"r1\"}",
          "in-stream error with requestId");
    free(e);
    e = pgc_envelope_error("overflow", "say \"x\"", NULL, &len);
    T_STR(e, "{\"type\":\"error\",\"code\":\"overflow\",\"message\":\"say \\\"x\\\"\"}", "in-stream error without requestId");
    free(e);
    return T_DONE();
}
