;; `make bench': a module whose memory grows to 1 GiB, every page touched, to measure
;; full snapshot and restore at scale.
(module
  (memory 1 16385)
  (global $sp (mut i32) (i32.const 0))
  (func (export "fill") (result i32)
    (local $at i32)
    (if (i32.eq (memory.grow (i32.const 16383)) (i32.const -1)) (then (return (i32.const -1))))
    (loop $l
      (i32.store (local.get $at) (i32.xor (local.get $at) (i32.const 0x5a5a5a5a)))
      (local.set $at (i32.add (local.get $at) (i32.const 4096)))
      (br_if $l (i32.lt_u (local.get $at) (i32.const 0x40000000))))
    (global.set $sp (local.get $at))
    (memory.size)))
