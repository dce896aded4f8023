#!/bin/bash
# Runs the browser client's unit tests under Node's own test runner (TAP output).
cd "$(dirname "$0")/../.." || exit 1
node --test --test-reporter=tap tests/client/ 2>&1 | sed -n '/^\(not \)\?ok [0-9]/p; /^#/p; /^  /p'
exit "${PIPESTATUS[0]}"
