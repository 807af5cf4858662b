;; Benchmark module: a trivial export and a loop of import round trips.
(module
  (import "env" "echo" (func $echo (param i32) (result i32)))
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
)
