//! Front end built on the `wast` crate: parses a script in-process and translates each
//! directive into [`script`](super::script) form.
//!
//! It reads every file except the legacy exception-handling ones, whose folded
//! `(try (do ...) (catch ...))` form the crate does not parse (see `json_front`).

use std::path::Path;

use wast::core::{
    AbstractHeapType, HeapType, NanPattern, V128Const, V128Pattern, WastArgCore, WastRetCore,
};
use wast::parser::{self, ParseBuffer};
use wast::token::{Id, Span};
use wast::{QuoteWat, Wast, WastArg, WastDirective, WastExecute, WastInvoke, WastRet, Wat};

use super::script::{
    Action, Arg, Directive, Expected, Float, Kind, ModuleBytes, RefKind, V128Expected,
};

pub fn load(path: &Path) -> Result<Vec<Directive>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let located = |mut err: wast::Error| {
        err.set_path(path);
        err.set_text(&text);
        err.to_string()
    };
    let buf = ParseBuffer::new(&text).map_err(located)?;
    let wast = parser::parse::<Wast>(&buf).map_err(located)?;
    let line = |span: Span| span.linecol_in(&text).0 as u32 + 1;
    Ok(wast
        .directives
        .into_iter()
        .map(|directive| {
            let line = line(directive.span());
            let kind = translate(directive).unwrap_or_else(|what| Kind::Unsupported { what });
            Directive { line, kind }
        })
        .collect())
}

fn translate(directive: WastDirective) -> Result<Kind, String> {
    Ok(match directive {
        WastDirective::Module(module) => module_kind(module, true),
        WastDirective::ModuleDefinition(module) => module_kind(module, false),
        WastDirective::ModuleInstance {
            instance, module, ..
        } => Kind::ModuleInstance {
            instance: name(instance),
            module: name(module),
        },
        WastDirective::Register {
            name: as_name,
            module,
            ..
        } => Kind::Register {
            module: name(module),
            as_name: as_name.to_string(),
        },
        WastDirective::Invoke(invoke) => Kind::Action(invoke_action(invoke)?),
        WastDirective::AssertReturn { exec, results, .. } => Kind::AssertReturn {
            action: execute_action(exec)?,
            expected: results
                .into_iter()
                .map(expected)
                .collect::<Result<_, _>>()?,
        },
        WastDirective::AssertTrap { exec, message, .. } => Kind::AssertTrap {
            action: execute_action(exec)?,
            message: message.to_string(),
        },
        WastDirective::AssertExhaustion { call, message, .. } => Kind::AssertExhaustion {
            action: invoke_action(call)?,
            message: message.to_string(),
        },
        WastDirective::AssertException { exec, .. } => Kind::AssertException {
            action: execute_action(exec)?,
        },
        WastDirective::AssertInvalid { module, .. } => Kind::AssertInvalid {
            bytes: encode(module),
        },
        WastDirective::AssertMalformed { module, .. } => Kind::AssertMalformed {
            bytes: encode(module),
        },
        WastDirective::AssertUnlinkable {
            module, message, ..
        } => Kind::AssertUnlinkable {
            bytes: encode(QuoteWat::Wat(module)),
            message: message.to_string(),
        },
        WastDirective::AssertInvalidCustom { .. } => return Err("assert_invalid_custom".into()),
        WastDirective::AssertMalformedCustom { .. } => return Err("assert_malformed_custom".into()),
        WastDirective::AssertSuspension { .. } => {
            return Err("assert_suspension (stack switching)".into())
        }
        WastDirective::Thread(_) | WastDirective::Wait { .. } => return Err("threads".into()),
    })
}

fn module_kind(module: QuoteWat, instantiate: bool) -> Kind {
    let name = name(module.name());
    Kind::Module {
        name,
        bytes: encode(module),
        instantiate,
    }
}

fn name(id: Option<Id>) -> Option<String> {
    id.map(|id| id.name().to_string())
}

/// Encodes a text module (quoted text is parsed here too), keeping the error for
/// `assert_malformed`. Components are not core wasm, so they are malformed for us.
fn encode(mut module: QuoteWat) -> ModuleBytes {
    if matches!(
        module,
        QuoteWat::Wat(Wat::Component(_)) | QuoteWat::QuoteComponent(..)
    ) {
        return Err("components are not supported".into());
    }
    module.encode().map_err(|e| e.to_string())
}

fn execute_action(exec: WastExecute) -> Result<Action, String> {
    match exec {
        WastExecute::Invoke(invoke) => invoke_action(invoke),
        WastExecute::Get { module, global, .. } => Ok(Action::Get {
            module: name(module),
            field: global.to_string(),
        }),
        WastExecute::Wat(module) => Ok(Action::Instantiate(encode(QuoteWat::Wat(module)))),
    }
}

fn invoke_action(invoke: WastInvoke) -> Result<Action, String> {
    Ok(Action::Invoke {
        module: name(invoke.module),
        field: invoke.name.to_string(),
        args: invoke.args.into_iter().map(arg).collect::<Result<_, _>>()?,
    })
}

fn arg(arg: WastArg) -> Result<Arg, String> {
    let WastArg::Core(core) = arg else {
        return Err("component-model argument".into());
    };
    Ok(match core {
        WastArgCore::I32(v) => Arg::I32(v),
        WastArgCore::I64(v) => Arg::I64(v),
        WastArgCore::F32(v) => Arg::F32(v.bits),
        WastArgCore::F64(v) => Arg::F64(v.bits),
        WastArgCore::V128(v) => Arg::V128(v128_bits(&v)),
        WastArgCore::RefNull(heap) => Arg::Null(ref_kind(&heap)?),
        WastArgCore::RefExtern(n) => Arg::Extern(n),
        WastArgCore::RefHost(_) => return Err("ref.host argument (GC host references)".into()),
    })
}

fn expected(ret: WastRet) -> Result<Expected, String> {
    let WastRet::Core(core) = ret else {
        return Err("component-model result".into());
    };
    expected_core(core)
}

fn expected_core(ret: WastRetCore) -> Result<Expected, String> {
    Ok(match ret {
        WastRetCore::I32(v) => Expected::I32(v),
        WastRetCore::I64(v) => Expected::I64(v),
        WastRetCore::F32(p) => Expected::F32(float(p, |f| f.bits)),
        WastRetCore::F64(p) => Expected::F64(float(p, |f| f.bits)),
        WastRetCore::V128(p) => Expected::V128(match p {
            V128Pattern::F32x4(lanes) => V128Expected::F32x4(lanes.map(|l| float(l, |f| f.bits))),
            V128Pattern::F64x2(lanes) => V128Expected::F64x2(lanes.map(|l| float(l, |f| f.bits))),
            V128Pattern::I8x16(l) => V128Expected::Bits(v128_bits(&V128Const::I8x16(l))),
            V128Pattern::I16x8(l) => V128Expected::Bits(v128_bits(&V128Const::I16x8(l))),
            V128Pattern::I32x4(l) => V128Expected::Bits(v128_bits(&V128Const::I32x4(l))),
            V128Pattern::I64x2(l) => V128Expected::Bits(v128_bits(&V128Const::I64x2(l))),
        }),
        WastRetCore::RefNull(heap) => Expected::Null(heap.as_ref().map(ref_kind).transpose()?),
        WastRetCore::RefExtern(n) => Expected::Extern(n),
        WastRetCore::RefFunc(_) => Expected::Func,
        WastRetCore::Either(cases) => Expected::Either(
            cases
                .into_iter()
                .map(expected_core)
                .collect::<Result<_, _>>()?,
        ),
        WastRetCore::RefHost(_)
        | WastRetCore::RefAny
        | WastRetCore::RefEq
        | WastRetCore::RefArray
        | WastRetCore::RefStruct
        | WastRetCore::RefI31
        | WastRetCore::RefI31Shared => return Err("GC reference result".into()),
    })
}

fn float<T, Bits>(pattern: NanPattern<T>, bits: impl Fn(T) -> Bits) -> Float<Bits> {
    match pattern {
        NanPattern::CanonicalNan => Float::CanonicalNan,
        NanPattern::ArithmeticNan => Float::ArithmeticNan,
        NanPattern::Value(v) => Float::Bits(bits(v)),
    }
}

fn v128_bits(v: &V128Const) -> u128 {
    u128::from_le_bytes(v.to_le_bytes())
}

fn ref_kind(heap: &HeapType) -> Result<RefKind, String> {
    match heap {
        HeapType::Abstract {
            shared: false,
            ty: AbstractHeapType::Func | AbstractHeapType::NoFunc,
        } => Ok(RefKind::Func),
        HeapType::Abstract {
            shared: false,
            ty: AbstractHeapType::Extern | AbstractHeapType::NoExtern,
        } => Ok(RefKind::Extern),
        HeapType::Abstract {
            shared: false,
            ty: AbstractHeapType::Exn | AbstractHeapType::NoExn,
        } => Ok(RefKind::Exn),
        other => Err(format!("reference to heap type {other:?}")),
    }
}
