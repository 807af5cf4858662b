//! The module's function and tag types as the exception translation sees them, and the
//! function types it adds: the blocks that receive a caught exception take the `try`'s
//! parameters and produce the tag's payload plus an `exnref`, which usually has no type in
//! the module yet. Types are only appended, so existing type indices stay valid.

use std::collections::HashMap;

use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasm_encoder::{BlockType as OutBlockType, TypeSection};
use wasmparser::{BlockType, CompositeInnerType, FuncType, TypeSectionReader, ValType};

use super::error::{encode_error, malformed, parse_error};
use crate::prepare::error::PrepareError;

#[derive(Default)]
pub(super) struct ModuleTypes {
    /// Every type index of the module; `None` for types that are not function types.
    funcs: Vec<Option<FuncType>>,
    /// The function type index of every tag (imported ones first).
    tags: Vec<u32>,
    /// Existing and added function types by signature, so each is used or added once.
    by_signature: HashMap<(Vec<ValType>, Vec<ValType>), u32>,
    added: Vec<FuncType>,
}

impl ModuleTypes {
    pub(super) fn read_types(&mut self, reader: TypeSectionReader<'_>) -> Result<(), PrepareError> {
        for group in reader {
            let group = group.map_err(parse_error)?;
            for sub in group.into_types() {
                let func = match sub.composite_type.inner {
                    CompositeInnerType::Func(f) => Some(f),
                    _ => None,
                };
                if let Some(f) = &func {
                    let key = (f.params().to_vec(), f.results().to_vec());
                    self.by_signature
                        .entry(key)
                        .or_insert(self.funcs.len() as u32);
                }
                self.funcs.push(func);
            }
        }
        Ok(())
    }

    pub(super) fn add_tag(&mut self, func_type_index: u32) {
        self.tags.push(func_type_index);
    }

    fn func(&self, index: u32) -> Result<&FuncType, PrepareError> {
        self.funcs
            .get(index as usize)
            .and_then(Option::as_ref)
            .ok_or_else(|| malformed("unknown function type"))
    }

    pub(super) fn function_param_count(&self, type_index: u32) -> Result<u32, PrepareError> {
        Ok(self.func(type_index)?.params().len() as u32)
    }

    /// The values a block of type `bt` takes from the stack.
    pub(super) fn block_params(&self, bt: BlockType) -> Result<&[ValType], PrepareError> {
        match bt {
            BlockType::Empty | BlockType::Type(_) => Ok(&[]),
            BlockType::FuncType(index) => Ok(self.func(index)?.params()),
        }
    }

    pub(super) fn tag_payload(&self, tag: u32) -> Result<&[ValType], PrepareError> {
        let index = *self
            .tags
            .get(tag as usize)
            .ok_or_else(|| malformed("unknown tag"))?;
        Ok(self.func(index)?.params())
    }

    /// The type of a block that takes `params` and is the target of a `catch_ref` (or, with
    /// an empty payload, `catch_all_ref`): it produces `payload` followed by an `exnref`.
    pub(super) fn exception_block(
        &mut self,
        params: &[ValType],
        payload: &[ValType],
    ) -> Result<OutBlockType, PrepareError> {
        if params.is_empty() && payload.is_empty() {
            return Ok(OutBlockType::Result(wasm_encoder::ValType::EXNREF));
        }
        let mut results = payload.to_vec();
        results.push(ValType::EXNREF);
        let key = (params.to_vec(), results);
        let next = (self.funcs.len() + self.added.len()) as u32;
        let index = *self
            .by_signature
            .entry(key)
            .or_insert_with_key(|(params, results)| {
                self.added.push(FuncType::new(
                    params.iter().copied(),
                    results.iter().copied(),
                ));
                next
            });
        Ok(OutBlockType::FunctionType(index))
    }

    pub(super) fn has_added(&self) -> bool {
        !self.added.is_empty()
    }

    pub(super) fn append_added(&self, section: &mut TypeSection) -> Result<(), PrepareError> {
        for func in &self.added {
            let convert = |types: &[ValType]| {
                types
                    .iter()
                    .map(|&t| RoundtripReencoder.val_type(t))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(encode_error)
            };
            section
                .ty()
                .function(convert(func.params())?, convert(func.results())?);
        }
        Ok(())
    }
}
