#!/bin/bash
# The shared-hosting drop-in folder on a host that has only mod_fcgid, at its defaults
# (issue 13 item 6): tests/hosting/htaccess.sh with the variants fcgid (the 64 KiB output
# buffer holds SSE back: pgcast.js in Chromium long-polls instead) and fcgid-pad
# (sse_padding_bytes: SSE delivers; heartbeats under FcgidIOTimeout).
HOSTING_VARIANTS="fcgid fcgid-pad" exec bash "$PGCAST_ROOT/tests/hosting/htaccess.sh"
