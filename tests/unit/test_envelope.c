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
    return T_DONE();
}
