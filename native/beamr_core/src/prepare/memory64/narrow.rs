//! The instruction sequences that narrow 64-bit addresses, and segment offsets folded to
//! 32 bits.

use wasm_encoder::reencode::Error as ReencodeError;
use wasm_encoder::{ConstExpr, InstructionSink};
use wasmparser::Operator;

use crate::prepare::error::PrepareError;

/// What every address, index, length or delta ≥ 2^32 becomes (see the `memory64` module docs).
pub(super) const SENTINEL: u32 = 0xFFFF_FFF0;

/// Folds an i64 constant expression. Without the GC proposal a `global.get` in one can
/// only read an imported global, whose value is unknown here.
pub(super) fn fold(expr: &wasmparser::ConstExpr) -> Result<u64, PrepareError> {
    let unsupported = || {
        PrepareError(
            "memory64 lowering: a data or element segment offset of a 64-bit memory or table \
         reads an imported global, which preparation cannot evaluate"
                .into(),
        )
    };
    let mut stack: Vec<u64> = Vec::new();
    for op in expr.get_operators_reader() {
        let op = op.map_err(|e| PrepareError(e.to_string()))?;
        let value = match op {
            Operator::I64Const { value } => value as u64,
            Operator::I64Add | Operator::I64Sub | Operator::I64Mul => {
                let (Some(b), Some(a)) = (stack.pop(), stack.pop()) else {
                    return Err(unsupported());
                };
                match op {
                    Operator::I64Add => a.wrapping_add(b),
                    Operator::I64Sub => a.wrapping_sub(b),
                    _ => a.wrapping_mul(b),
                }
            }
            Operator::End => break,
            _ => return Err(unsupported()),
        };
        stack.push(value);
    }
    stack.pop().ok_or_else(unsupported)
}

/// The i32 offset expression replacing a 64-bit segment offset.
pub(super) fn lowered_offset(
    expr: &wasmparser::ConstExpr,
) -> Result<ConstExpr, ReencodeError<PrepareError>> {
    let offset = fold(expr).map_err(ReencodeError::UserError)?;
    Ok(ConstExpr::i32_const(
        u32::try_from(offset).unwrap_or(SENTINEL) as i32,
    ))
}

/// Narrows the i64 on top of the stack to an i32, mapping everything ≥ 2^32 to [`SENTINEL`].
pub(super) fn narrow(scratch: &mut ScratchLocals, code: &mut Vec<u8>) {
    let local = scratch.local(wasm_encoder::ValType::I64, usize::MAX);
    InstructionSink::new(code)
        .local_tee(local)
        .i32_wrap_i64()
        .i32_const(SENTINEL as i32)
        .local_get(local)
        .i64_const(32)
        .i64_shr_u()
        .i64_eqz()
        .select();
}

/// Narrows the i64 address of an atomic access on top of the stack to an i32: an address
/// ≥ 2^32 becomes `SENTINEL | (address & 15)`, out of bounds but aligned as the original.
pub(super) fn narrow_keeping_alignment(scratch: &mut ScratchLocals, code: &mut Vec<u8>) {
    let local = scratch.local(wasm_encoder::ValType::I64, usize::MAX);
    InstructionSink::new(code)
        .local_tee(local)
        .i32_wrap_i64()
        .local_get(local)
        .i64_const(32)
        .i64_shr_u()
        .i64_eqz()
        .i32_const(1)
        .i32_sub()
        .i32_const(SENTINEL as i32)
        .i32_and()
        .i32_or();
}

/// The extra locals of one function. Each is keyed by type and operand position so that
/// the values set aside for one instruction never share a local; [`narrow`] uses its own
/// key. Values never live across instructions, so every instruction reuses the same set.
pub(super) struct ScratchLocals {
    pub(super) first: u32,
    pub(super) locals: Vec<(wasm_encoder::ValType, usize)>,
}

impl ScratchLocals {
    pub(super) fn local(&mut self, ty: wasm_encoder::ValType, key: usize) -> u32 {
        let index = match self.locals.iter().position(|&local| local == (ty, key)) {
            Some(index) => index,
            None => {
                self.locals.push((ty, key));
                self.locals.len() - 1
            }
        };
        self.first + index as u32
    }
}
