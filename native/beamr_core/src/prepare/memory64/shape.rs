//! The operands and result of an instruction that touches a lowered memory or table.

use wasmparser::ValType;

/// One operand of a rewritten instruction, bottom of the stack first.
#[derive(Clone, Copy)]
pub(super) enum Operand {
    /// An i64 address, index, length or delta of a lowered memory or table: narrowed.
    Address,
    /// Any other operand: kept as is, but may have to be set aside while one below it is
    /// narrowed.
    Value(ValType),
}

/// How a lowered instruction's i32 result becomes the i64 the original produced.
#[derive(Clone, Copy)]
pub(super) enum Widen {
    None,
    Unsigned,
    Signed,
}

/// The operands and result of an instruction that touches a lowered memory or table.
pub(super) struct Shape {
    pub(super) operands: [Operand; 3],
    pub(super) len: usize,
    pub(super) widen: Widen,
    /// An atomic access, which traps when its effective address is not aligned.
    pub(super) atomic: bool,
}

impl Shape {
    pub(super) fn new(operands: &[Operand], widen: Widen) -> Shape {
        let mut shape = Shape {
            operands: [Operand::Address; 3],
            len: operands.len(),
            widen,
            atomic: false,
        };
        shape.operands[..operands.len()].copy_from_slice(operands);
        shape
    }

    /// `memory.copy` / `table.copy`: each address has its own memory's type and the length
    /// the narrower of the two (the memory64 proposal's rule).
    pub(super) fn copy(dst64: bool, src64: bool) -> Option<Shape> {
        let operand = |is64| {
            if is64 {
                Operand::Address
            } else {
                Operand::Value(ValType::I32)
            }
        };
        (dst64 || src64).then(|| {
            Shape::new(
                &[operand(dst64), operand(src64), operand(dst64 && src64)],
                Widen::None,
            )
        })
    }
}
