;; Benchmark module: a trivial export, a loop of import round trips, a compute loop, and
;; loops of Emscripten invoke_* calls (with and without a throw that invoke_* catches).
(module
  (import "env" "echo" (func $echo (param i32) (result i32)))
  (import "env" "invoke_vi" (func $invoke_vi (param i32 i32)))
  (import "env" "_emscripten_throw_longjmp" (func $throw_longjmp))
  (memory 1)
  (table 3 funcref)
  (elem (i32.const 1) $nothing $throws)
  (global $sp (mut i32) (i32.const 4096))
  (global $threw (mut i32) (i32.const 0))
  (func $nothing (param i32))
  (func $throws (param i32) (call $throw_longjmp))
  (func (export "stackSave") (result i32) (global.get $sp))
  (func (export "stackRestore") (param i32) (global.set $sp (local.get 0)))
  (func (export "setThrew") (param i32 i32) (global.set $threw (local.get 0)))
  ;; Calls table entry `entry` through invoke_vi n times.
  (func (export "invoke_loop") (param $entry i32) (param $n i32)
    (block $done
      (loop $again
        local.get $n i32.eqz br_if $done
        local.get $entry local.get $n call $invoke_vi
        local.get $n i32.const 1 i32.sub local.set $n
        br $again)))
  (func (export "add") (param i32 i32) (result i32)
    local.get 0 local.get 1 i32.add)
  ;; Calls env.echo n times, feeding each answer into the next call.
  (func (export "echo_loop") (param $n i32) (result i32)
    (local $acc i32)
    (block $done
      (loop $again
        local.get $n i32.eqz br_if $done
        local.get $acc call $echo i32.const 1 i32.add local.set $acc
        local.get $n i32.const 1 i32.sub local.set $n
        br $again))
    local.get $acc)
  ;; Compute-bound: n rounds of an xorshift generator, each scattered into memory.
  (func (export "compute") (param $n i32) (result i32)
    (local $x i32)
    i32.const 2463534242 local.set $x
    (block $done
      (loop $again
        local.get $n i32.eqz br_if $done
        local.get $x local.get $x i32.const 13 i32.shl i32.xor local.set $x
        local.get $x local.get $x i32.const 17 i32.shr_u i32.xor local.set $x
        local.get $x local.get $x i32.const 5 i32.shl i32.xor local.set $x
        local.get $x i32.const 65532 i32.and
        local.get $x
        local.get $x i32.const 65532 i32.and i32.load
        i32.add i32.store
        local.get $n i32.const 1 i32.sub local.set $n
        br $again))
    local.get $x)
)
