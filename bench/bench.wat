;; Benchmark module: a trivial export, a loop of import round trips and a compute loop.
(module
  (import "env" "echo" (func $echo (param i32) (result i32)))
  (memory 1)
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
