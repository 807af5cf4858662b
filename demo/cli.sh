#!/bin/sh
# `make demo`, second part: the beamr CLI on the demo module and on AO's Lua process.
set -e
show() { echo "\$ $*"; "$@"; echo; }
show ./beamr inspect demo/greeter.wat
show ./beamr run demo/greeter.wat visits
show ./beamr run --trace-imports demo/greeter.wat visit 0
show ./beamr compile demo/greeter.wat -o _build/demo/greeter.artifact
show ./beamr run _build/demo/greeter.artifact visits
show ./beamr run --timeout 100 demo/greeter.wat peek 2147483647 || true
AOS="$SHARED/fixtures/hyperbeam/aos-2-pure-xs.wasm"
if [ -f "$AOS" ]; then
  show ./beamr aos "$AOS" 'local s = 0 for i = 1, 100 do s = s + i end return s'
else
  echo "(AO's Lua process $AOS is not here: its step is skipped; SHARED=DIR points at HyperBEAM's fixtures)"
fi
