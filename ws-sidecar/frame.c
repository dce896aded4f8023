#include "frame.h"

#include <stdlib.h>
#include <string.h>

#include "utf8.h"

/* Header length and payload length of the frame at buf; false while incomplete. */
static bool header(const unsigned char *buf, size_t len, size_t *hlen, uint64_t *plen)
{
    if (len < 2)
        return false;
    uint64_t n = buf[1] & 0x7f;
    size_t h = 2;
    if (n == 126) {
        if (len < 4)
            return false;
        n = ((uint64_t)buf[2] << 8) | buf[3];
        h = 4;
    } else if (n == 127) {
        if (len < 10)
            return false;
        n = 0;
        for (int i = 0; i < 8; i++)
            n = (n << 8) | buf[2 + i];
        h = 10;
    }
    if (buf[1] & 0x80)
        h += 4;
    *hlen = h;
    *plen = n;
    return len >= h;
}

size_t ws_frame_need(const unsigned char *buf, size_t len)
{
    size_t h;
    uint64_t n;
    if (!header(buf, len, &h, &n) || n > SIZE_MAX - h)
        return 0;
    return h + (size_t)n;
}

/* Registered codes a peer may send (RFC 6455 §7.4, IANA registry) and private ones. */
static bool close_code_ok(unsigned c)
{
    return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

static void unmask(unsigned char *d, size_t n, const unsigned char key[4])
{
    size_t i = 0;
    if (n >= 8) { /* eight bytes at a time: the key repeats every four */
        uint64_t k;
        unsigned char k8[8] = {key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]};
        memcpy(&k, k8, 8);
        for (; i + 8 <= n; i += 8) {
            uint64_t v;
            memcpy(&v, d + i, 8);
            v ^= k;
            memcpy(d + i, &v, 8);
        }
    }
    for (; i < n; i++)
        d[i] ^= key[i % 4];
}

long ws_parse(ws_parser *p, unsigned char *buf, size_t len, ws_frame_event *ev)
{
    if (p->msg_taken) {
        free(p->msg);
        p->msg = NULL;
        p->msg_len = p->msg_cap = 0;
        p->msg_taken = false;
    }
    memset(ev, 0, sizeof(*ev));
    size_t h;
    uint64_t n;
    if (len < 2)
        return 0;
    bool fin = buf[0] & 0x80;
    int op = buf[0] & 0x0f;
    if ((buf[0] & 0x70) || !(buf[1] & 0x80)) /* no extension negotiated; clients must mask */
        return -WS_CLOSE_PROTOCOL;
    if (op >= 8) {
        if ((op != WS_OP_CLOSE && op != WS_OP_PING && op != WS_OP_PONG) || !fin || (buf[1] & 0x7f) > 125)
            return -WS_CLOSE_PROTOCOL;
    } else if (op > WS_OP_BINARY || (op == WS_OP_CONT) != (p->msg_op != 0)) {
        return -WS_CLOSE_PROTOCOL; /* unknown opcode, continuation of nothing, or a new message inside one */
    }
    if (!header(buf, len, &h, &n))
        return 0;
    /* refused from the header alone: no need to receive a too-big message first */
    if (op < 8 && (n > p->max_msg || p->msg_len + n > p->max_msg))
        return -WS_CLOSE_TOO_BIG;
    if (len - h < n)
        return 0;
    unsigned char *d = buf + h;
    unmask(d, (size_t)n, buf + h - 4);
    long used = (long)(h + n);
    if (op == WS_OP_CLOSE) {
        ev->code = WS_CLOSE_NO_STATUS;
        if (n == 1)
            return -WS_CLOSE_PROTOCOL;
        if (n >= 2) {
            ev->code = (uint16_t)((d[0] << 8) | d[1]);
            if (!close_code_ok(ev->code))
                return -WS_CLOSE_PROTOCOL;
            if (!ws_utf8_valid(d + 2, (size_t)n - 2))
                return -WS_CLOSE_INVALID_DATA;
        }
    }
    if (op >= 8 || (fin && op != WS_OP_CONT)) { /* a control frame, or a whole message in one frame */
        if (op == WS_OP_TEXT && !ws_utf8_valid(d, (size_t)n))
            return -WS_CLOSE_INVALID_DATA;
        ev->op = op;
        ev->data = d;
        ev->len = (size_t)n;
        return used;
    }
    if (op != WS_OP_CONT)
        p->msg_op = op;
    if (p->msg_len + n > p->msg_cap) {
        /* doubling while small; then what is needed rounded up to 64 KiB (large blocks
         * grow in place), so an unfinished message holds little more than it has */
        size_t need = p->msg_len + (size_t)n, cap = p->msg_cap ? p->msg_cap : 256;
        while (cap < need && cap < 65536)
            cap *= 2;
        if (cap < need)
            cap = (need + 65535) & ~(size_t)65535;
        if (cap > p->max_msg)
            cap = p->max_msg;
        unsigned char *m = realloc(p->msg, cap ? cap : 1);
        if (!m)
            return -WS_CLOSE_TOO_BIG; /* no memory for it: as good as too big */
        p->msg = m;
        p->msg_cap = cap;
    }
    if (n)
        memcpy(p->msg + p->msg_len, d, (size_t)n);
    p->msg_len += (size_t)n;
    if (!fin)
        return used; /* ev->op == 0: a fragment, nothing to hand out yet */
    if (p->msg_op == WS_OP_TEXT && !ws_utf8_valid(p->msg, p->msg_len))
        return -WS_CLOSE_INVALID_DATA;
    ev->op = p->msg_op;
    ev->data = p->msg;
    ev->len = p->msg_len;
    p->msg_op = 0;
    p->msg_taken = true;
    return used;
}

void ws_parser_free(ws_parser *p)
{
    free(p->msg);
    p->msg = NULL;
    p->msg_len = p->msg_cap = 0;
    p->msg_op = 0;
    p->msg_taken = false;
}

size_t ws_frame_header(unsigned char *out, int op, size_t len)
{
    out[0] = (unsigned char)(0x80 | op);
    if (len < 126) {
        out[1] = (unsigned char)len;
        return 2;
    }
    if (len <= 0xffff) {
        out[1] = 126;
        out[2] = (unsigned char)(len >> 8);
        out[3] = (unsigned char)len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    return 10;
}
