//! Second read of a function body that uses legacy exceptions: emits the exnref form
//! described in `exceptions.rs`. Instructions that need no change are copied as runs of
//! raw bytes. The added blocks shift label depths, so every branch is renumbered: each
//! original control frame remembers which output label its branches now go to.

use std::borrow::Cow;

use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasm_encoder::{Catch as OutCatch, Function, Instruction, ValType as OutValType};
use wasmparser::{BlockType, Catch, FunctionBody, Handle, Operator, ResumeTable, TryTable};

use super::error::{encode_error, malformed, parse_error};
use super::plan::{frame_index, FunctionPlan};
use super::types::ModuleTypes;
use crate::prepare::error::PrepareError;

pub(super) fn rewrite_function(
    body: &FunctionBody<'_>,
    plan: &FunctionPlan,
    param_count: u32,
    types: &mut ModuleTypes,
) -> Result<Function, PrepareError> {
    let mut locals = Vec::new();
    let mut first_exn_local = param_count;
    for declared in body.get_locals_reader().map_err(parse_error)? {
        let (count, ty) = declared.map_err(parse_error)?;
        first_exn_local = first_exn_local
            .checked_add(count)
            .ok_or_else(|| malformed("too many locals"))?;
        locals.push((
            count,
            RoundtripReencoder.val_type(ty).map_err(encode_error)?,
        ));
    }
    if plan.exn_locals > 0 {
        locals.push((plan.exn_locals, OutValType::EXNREF));
    }

    let mut reader = body.get_operators_reader().map_err(parse_error)?;
    let mut rewriter = Rewriter {
        out: Function::new(locals),
        bytes: body.as_bytes(),
        base: body.range().start as usize,
        copied_to: reader.original_position() as usize,
        height: 1,
        frames: vec![Frame {
            target: 0,
            landing: None,
            legacy: None,
        }],
        plan,
        types,
        first_exn_local,
        next_handler: 0,
    };
    if plan.caller_landing {
        let block = rewriter.types.exception_block(&[], &[])?;
        let landing = rewriter.open(&Instruction::Block(block));
        rewriter.frames[0].landing = Some(landing);
    }
    while !rewriter.frames.is_empty() {
        let start = reader.original_position() as usize;
        let op = reader.read().map_err(parse_error)?;
        let end = reader.original_position() as usize;
        rewriter.operator(op, start, end)?;
    }
    rewriter.copy_to(reader.original_position() as usize);
    Ok(rewriter.out)
}

/// An original control frame (block, loop, if, try, try_table or the function body).
#[derive(Clone, Copy)]
struct Frame {
    /// The output label that branches to this frame's label now target.
    target: u32,
    /// The output label of the landing block wrapping this frame's body, while open.
    landing: Option<u32>,
    legacy: Option<LegacyTry>,
}

#[derive(Clone, Copy)]
struct LegacyTry {
    handler: usize,
    /// In its catch clauses rather than its body.
    catching: bool,
}

struct Rewriter<'a, 'p> {
    out: Function,
    /// The original body, which starts at offset `base` of the module.
    bytes: &'a [u8],
    base: usize,
    /// Module offset up to which the original instructions are in `out`.
    copied_to: usize,
    /// Output labels open, the function body's included.
    height: u32,
    frames: Vec<Frame>,
    plan: &'p FunctionPlan,
    types: &'p mut ModuleTypes,
    first_exn_local: u32,
    /// The ordinal, among `try`s and `try_table`s, of the next one to open.
    next_handler: usize,
}

impl<'a> Rewriter<'a, '_> {
    /// Handles the operator at module offsets `start..end`. Operators left alone stay
    /// pending and are copied before the next replacement.
    fn operator(&mut self, op: Operator<'a>, start: usize, end: usize) -> Result<(), PrepareError> {
        match op {
            Operator::Block { .. } | Operator::Loop { .. } | Operator::If { .. } => {
                self.height += 1;
                self.frames.push(Frame {
                    target: self.height - 1,
                    landing: None,
                    legacy: None,
                });
            }
            Operator::End => {
                let frame = self
                    .frames
                    .pop()
                    .ok_or_else(|| malformed("unbalanced end"))?;
                if frame.landing.is_some() {
                    // Inserted before the `end`, which stays pending.
                    self.copy_to(start);
                    self.close_landing(frame);
                }
                self.height -= 1;
            }
            Operator::TryTable { try_table } => {
                self.replace(start, end, |r| r.try_table(try_table))?
            }
            Operator::Try { blockty } => self.replace(start, end, |r| r.legacy_try(blockty))?,
            Operator::Catch { .. } | Operator::CatchAll => {
                self.replace(start, end, Self::catch_clause)?
            }
            Operator::Delegate { .. } => self.replace(start, end, |r| {
                let frame = r
                    .frames
                    .pop()
                    .ok_or_else(|| malformed("unbalanced delegate"))?;
                r.close_landing(frame);
                r.close();
                Ok(())
            })?,
            Operator::Rethrow { relative_depth } => {
                let local = match self.frame_at(relative_depth)?.legacy {
                    Some(LegacyTry {
                        handler,
                        catching: true,
                    }) => self.first_exn_local + self.plan.handlers[handler].exn_slot,
                    _ => return Err(malformed("rethrow outside a catch clause")),
                };
                self.replace(start, end, |r| {
                    r.emit(&Instruction::LocalGet(local));
                    r.emit(&Instruction::ThrowRef);
                    Ok(())
                })?
            }
            Operator::BrTable { targets } => {
                let old = targets
                    .targets()
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(parse_error)?;
                let new = old
                    .iter()
                    .map(|&d| self.depth(d))
                    .collect::<Result<Vec<_>, _>>()?;
                let default = self.depth(targets.default())?;
                if new != old || default != targets.default() {
                    let instruction = Instruction::BrTable(Cow::Owned(new), default);
                    self.replace(start, end, |r| {
                        r.emit(&instruction);
                        Ok(())
                    })?
                }
            }
            op => {
                if let Some(relabelled) = self.relabel(&op)? {
                    if relabelled != op {
                        let instruction = RoundtripReencoder
                            .instruction(relabelled)
                            .map_err(encode_error)?;
                        self.replace(start, end, |r| {
                            r.emit(&instruction);
                            Ok(())
                        })?
                    }
                }
            }
        }
        Ok(())
    }

    /// Replaces the original operator at `start..end` with what `emit` emits.
    fn replace(
        &mut self,
        start: usize,
        end: usize,
        emit: impl FnOnce(&mut Self) -> Result<(), PrepareError>,
    ) -> Result<(), PrepareError> {
        self.copy_to(start);
        emit(self)?;
        self.copied_to = end;
        Ok(())
    }

    /// The operator with its label depths renumbered, if it has any (other than the
    /// control instructions handled in [`Self::operator`]).
    fn relabel(&self, op: &Operator<'a>) -> Result<Option<Operator<'a>>, PrepareError> {
        use Operator::*;
        let relabelled = match *op {
            Br { relative_depth } => Br {
                relative_depth: self.depth(relative_depth)?,
            },
            BrIf { relative_depth } => BrIf {
                relative_depth: self.depth(relative_depth)?,
            },
            BrOnNull { relative_depth } => BrOnNull {
                relative_depth: self.depth(relative_depth)?,
            },
            BrOnNonNull { relative_depth } => BrOnNonNull {
                relative_depth: self.depth(relative_depth)?,
            },
            BrOnCast {
                relative_depth,
                from_ref_type,
                to_ref_type,
            } => BrOnCast {
                relative_depth: self.depth(relative_depth)?,
                from_ref_type,
                to_ref_type,
            },
            BrOnCastFail {
                relative_depth,
                from_ref_type,
                to_ref_type,
            } => BrOnCastFail {
                relative_depth: self.depth(relative_depth)?,
                from_ref_type,
                to_ref_type,
            },
            BrOnCastDescEq {
                relative_depth,
                from_ref_type,
                to_ref_type,
            } => BrOnCastDescEq {
                relative_depth: self.depth(relative_depth)?,
                from_ref_type,
                to_ref_type,
            },
            BrOnCastDescEqFail {
                relative_depth,
                from_ref_type,
                to_ref_type,
            } => BrOnCastDescEqFail {
                relative_depth: self.depth(relative_depth)?,
                from_ref_type,
                to_ref_type,
            },
            Resume {
                cont_type_index,
                ref resume_table,
            } => Resume {
                cont_type_index,
                resume_table: self.relabel_handlers(resume_table)?,
            },
            ResumeThrow {
                cont_type_index,
                tag_index,
                ref resume_table,
            } => ResumeThrow {
                cont_type_index,
                tag_index,
                resume_table: self.relabel_handlers(resume_table)?,
            },
            ResumeThrowRef {
                cont_type_index,
                ref resume_table,
            } => ResumeThrowRef {
                cont_type_index,
                resume_table: self.relabel_handlers(resume_table)?,
            },
            _ => return Ok(None),
        };
        Ok(Some(relabelled))
    }

    fn relabel_handlers(&self, table: &ResumeTable) -> Result<ResumeTable, PrepareError> {
        let handlers = table
            .handlers
            .iter()
            .map(|&handle| match handle {
                Handle::OnLabel { tag, label } => Ok(Handle::OnLabel {
                    tag,
                    label: self.depth(label)?,
                }),
                Handle::OnSwitch { .. } => Ok(handle),
            })
            .collect::<Result<_, _>>()?;
        Ok(ResumeTable { handlers })
    }

    fn try_table(&mut self, try_table: TryTable) -> Result<(), PrepareError> {
        // Catch labels are resolved outside the try_table, so before it opens.
        let catches = try_table
            .catches
            .iter()
            .map(|&catch| {
                Ok(match catch {
                    Catch::One { tag, label } => Catch::One {
                        tag,
                        label: self.depth(label)?,
                    },
                    Catch::OneRef { tag, label } => Catch::OneRef {
                        tag,
                        label: self.depth(label)?,
                    },
                    Catch::All { label } => Catch::All {
                        label: self.depth(label)?,
                    },
                    Catch::AllRef { label } => Catch::AllRef {
                        label: self.depth(label)?,
                    },
                })
            })
            .collect::<Result<_, PrepareError>>()?;
        let ty = try_table.ty;
        let instruction = RoundtripReencoder
            .instruction(Operator::TryTable {
                try_table: TryTable { ty, catches },
            })
            .map_err(encode_error)?;
        let target = self.open(&instruction);
        let handler = self.take_handler();
        let landing = self.open_landing(handler, ty)?;
        self.frames.push(Frame {
            target,
            landing,
            legacy: None,
        });
        Ok(())
    }

    fn legacy_try(&mut self, blockty: BlockType) -> Result<(), PrepareError> {
        let handler = self.take_handler();
        let plan = &self.plan.handlers[handler];
        let ty = RoundtripReencoder
            .block_type(blockty)
            .map_err(encode_error)?;
        let target = if let Some(delegate) = plan.delegate {
            let landing = self
                .frames
                .get(delegate)
                .and_then(|frame| frame.landing)
                .ok_or_else(|| malformed("delegate target without a landing block"))?;
            let catches = [OutCatch::AllRef {
                label: self.height - 1 - landing,
            }];
            self.open(&Instruction::TryTable(ty, Cow::Borrowed(&catches)))
        } else {
            let outer = self.open(&Instruction::Block(ty));
            if !plan.clauses.is_empty() {
                let params = self.types.block_params(blockty)?.to_vec();
                // The first clause's block is the innermost, so clauses end in order.
                let mut clause_labels = Vec::with_capacity(plan.clauses.len());
                for clause in plan.clauses.iter().rev() {
                    let payload = match *clause {
                        Some(tag) => self.types.tag_payload(tag)?.to_vec(),
                        None => Vec::new(),
                    };
                    let block = self.types.exception_block(&params, &payload)?;
                    clause_labels.push(self.open(&Instruction::Block(block)));
                }
                let catches = plan
                    .clauses
                    .iter()
                    .zip(clause_labels.iter().rev())
                    .map(|(clause, &label)| {
                        let label = self.height - 1 - label;
                        match *clause {
                            Some(tag) => OutCatch::OneRef { tag, label },
                            None => OutCatch::AllRef { label },
                        }
                    })
                    .collect::<Vec<_>>();
                self.open(&Instruction::TryTable(ty, Cow::Owned(catches)));
            }
            outer
        };
        let landing = self.open_landing(handler, blockty)?;
        self.frames.push(Frame {
            target,
            landing,
            legacy: Some(LegacyTry {
                handler,
                catching: false,
            }),
        });
        Ok(())
    }

    /// `catch` or `catch_all`: ends the try_table (for the first clause) or the previous
    /// clause, then the block the clause's exception arrives in.
    fn catch_clause(&mut self) -> Result<(), PrepareError> {
        let frame = self
            .frames
            .last_mut()
            .ok_or_else(|| malformed("catch outside a try"))?;
        let Some(legacy) = &mut frame.legacy else {
            return Err(malformed("catch outside a try"));
        };
        let entering = !legacy.catching;
        legacy.catching = true;
        let handler = legacy.handler;
        let body = *frame;
        frame.landing = None;
        if entering {
            self.close_landing(body);
            self.close();
        }
        self.br(body.target);
        self.close();
        let plan = &self.plan.handlers[handler];
        if plan.rethrown {
            self.emit(&Instruction::LocalSet(self.first_exn_local + plan.exn_slot));
        } else {
            self.emit(&Instruction::Drop);
        }
        Ok(())
    }

    fn take_handler(&mut self) -> usize {
        self.next_handler += 1;
        self.next_handler - 1
    }

    /// Opens the landing block of handler `handler` (of block type `ty`) if delegates need one.
    fn open_landing(&mut self, handler: usize, ty: BlockType) -> Result<Option<u32>, PrepareError> {
        if !self.plan.handlers[handler].landing {
            return Ok(None);
        }
        let params = self.types.block_params(ty)?.to_vec();
        let block = self.types.exception_block(&params, &[])?;
        Ok(Some(self.open(&Instruction::Block(block))))
    }

    /// A body that completes normally leaves through the frame's label; a delegated
    /// exception ends up after the landing block, where it is thrown again.
    fn close_landing(&mut self, frame: Frame) {
        if frame.landing.is_some() {
            self.br(frame.target);
            self.close();
            self.emit(&Instruction::ThrowRef);
        }
    }

    fn frame_at(&self, relative_depth: u32) -> Result<Frame, PrepareError> {
        Ok(self.frames[frame_index(self.frames.len(), relative_depth)?])
    }

    /// The output depth of original label `relative_depth`, here.
    fn depth(&self, relative_depth: u32) -> Result<u32, PrepareError> {
        Ok(self.height - 1 - self.frame_at(relative_depth)?.target)
    }

    fn copy_to(&mut self, offset: usize) {
        self.out.raw(
            self.bytes[self.copied_to - self.base..offset - self.base]
                .iter()
                .copied(),
        );
        self.copied_to = offset;
    }

    fn emit(&mut self, instruction: &Instruction<'_>) {
        self.out.instruction(instruction);
    }

    fn open(&mut self, instruction: &Instruction<'_>) -> u32 {
        self.emit(instruction);
        self.height += 1;
        self.height - 1
    }

    fn close(&mut self) {
        self.emit(&Instruction::End);
        self.height -= 1;
    }

    fn br(&mut self, label: u32) {
        self.emit(&Instruction::Br(self.height - 1 - label));
    }
}
