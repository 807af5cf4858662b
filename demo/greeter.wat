;; The demo module: greets through an Erlang import and keeps a visit counter in memory.
(module
  (import "env" "name_length" (func $name_length (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "Hello from wasm, \00")
  (global $heap (mut i32) (i32.const 4096))
  (func (export "malloc") (param i32) (result i32)
    (local $ptr i32)
    global.get $heap local.set $ptr
    global.get $heap local.get 0 i32.add global.set $heap
    local.get $ptr)
  (func (export "free") (param i32))
  (func (export "greeting") (result i32) i32.const 64)
  ;; Bumps the visit counter at address 0 and asks Erlang how long the name at ptr is.
  (func (export "visit") (param $ptr i32) (result i32)
    i32.const 0
    i32.const 0 i32.load i32.const 1 i32.add
    i32.store
    local.get $ptr call $name_length)
  (func (export "visits") (result i32) i32.const 0 i32.load)
  (func (export "peek") (param i32) (result i32) local.get 0 i32.load)
)
