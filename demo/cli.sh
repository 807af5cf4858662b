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
  echo "Skipped: beamr aos on AO's Lua process, for want of $AOS (get test/aos-2-pure-xs.wasm from github.com/permaweb/HyperBEAM at commit b2743e4ab019b3a830a937dd2cc0af3278cae828, SHA-256 e4b9b1cd0e6d6699ec7730a9cd68f15c6075edfd1a08768c7f0f5388acd9005d, and put it there, or point SHARED=DIR at a directory holding fixtures/hyperbeam/aos-2-pure-xs.wasm)"
fi
