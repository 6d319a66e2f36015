#!/bin/sh
# runone.sh NAME - runs test_NAME in this process (the runner kills it on
# timeout). CT_DIR and fd 3 (the console) come from the runner.
. /cubetest/lib.sh
for f in /cubetest/tests/*.sh; do . "$f"; done
CT_NAME=$1
cd "$CT_DIR" || exit 1
"test_$CT_NAME"
ct_fail "test_$CT_NAME returned without a result"
