#!/bin/bash
# Integration: the load test of test_netd_kill_load.sh with `libretto netd upgrade` every 3 s instead of kill -9; zero frames lost.
NETD_EVENT=upgrade exec "$(dirname "$0")/test_netd_kill_load.sh" "$@"
