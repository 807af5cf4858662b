//! Front end built on wabt's `wast2json`: converts a script to JSON plus one file per
//! module in a scratch directory, then translates the commands into
//! [`script`](super::script) form.
//!
//! Used for the legacy exception-handling scripts: the `wast` crate cannot parse their
//! folded `(try (do ...) (catch ...))` form, and wabt 1.0.32 (Debian's) can.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command as Process;

use serde::Deserialize;
use serde_json::Value as Json;

use super::script::{
    Action, Arg, Directive, Expected, Float, Kind, ModuleBytes, RefKind, V128Expected,
};

const WAST2JSON_FLAGS: &[&str] = &["--enable-exceptions", "--enable-tail-call"];

pub fn load(path: &Path) -> Result<Vec<Directive>, String> {
    let scratch = Scratch::new(path)?;
    let json_path = scratch.0.join("script.json");
    let output = Process::new("wast2json")
        .args(WAST2JSON_FLAGS)
        .arg(path)
        .arg("-o")
        .arg(&json_path)
        .output()
        .map_err(|e| format!("cannot run wast2json (install wabt): {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "wast2json failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let text =
        fs::read_to_string(&json_path).map_err(|e| format!("cannot read wast2json output: {e}"))?;
    let script: Script =
        serde_json::from_str(&text).map_err(|e| format!("unexpected wast2json output: {e}"))?;
    Ok(script
        .commands
        .into_iter()
        .map(|command| translate(command, &scratch.0))
        .collect())
}

/// The scratch directory wast2json writes into, removed when loading is done.
struct Scratch(PathBuf);

impl Scratch {
    fn new(script: &Path) -> Result<Scratch, String> {
        let stem = script.file_stem().unwrap_or_default().to_string_lossy();
        let dir = std::env::temp_dir().join(format!("hb_beamr_spec_{}_{stem}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[derive(Deserialize)]
struct Script {
    commands: Vec<Json>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Command {
    Module {
        filename: String,
        name: Option<String>,
    },
    Action {
        action: JsonAction,
    },
    Register {
        name: Option<String>,
        #[serde(rename = "as")]
        as_name: String,
    },
    AssertReturn {
        action: JsonAction,
        expected: Vec<JsonValue>,
    },
    AssertTrap {
        action: JsonAction,
        text: String,
    },
    AssertExhaustion {
        action: JsonAction,
        text: String,
    },
    AssertException {
        action: JsonAction,
    },
    AssertInvalid {
        filename: String,
        module_type: String,
    },
    AssertMalformed {
        filename: String,
        module_type: String,
    },
    AssertUnlinkable {
        filename: String,
        module_type: String,
        text: String,
    },
    AssertUninstantiable {
        filename: String,
        module_type: String,
        text: String,
    },
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum JsonAction {
    Invoke {
        module: Option<String>,
        field: String,
        args: Vec<JsonValue>,
    },
    Get {
        module: Option<String>,
        field: String,
    },
}

#[derive(Deserialize)]
struct JsonValue {
    #[serde(rename = "type")]
    ty: String,
    /// A number or `nan:...` as a string, an array of lane strings for v128, or absent.
    value: Option<Json>,
    lane_type: Option<String>,
    /// The alternatives of an `either` result.
    values: Option<Vec<JsonValue>>,
}

fn translate(command: Json, dir: &Path) -> Directive {
    let line = command.get("line").and_then(Json::as_u64).unwrap_or(0) as u32;
    let kind = serde_json::from_value::<Command>(command)
        .map_err(|e| format!("wast2json command: {e}"))
        .and_then(|command| kind(command, dir))
        .unwrap_or_else(|what| Kind::Unsupported { what });
    Directive { line, kind }
}

fn kind(command: Command, dir: &Path) -> Result<Kind, String> {
    Ok(match command {
        Command::Module { filename, name } => Kind::Module {
            name: name.map(unsigil),
            bytes: module(dir, &filename, "binary"),
            instantiate: true,
        },
        Command::Action { action: a } => Kind::Action(action(a)?),
        Command::Register { name, as_name } => Kind::Register {
            module: name.map(unsigil),
            as_name,
        },
        Command::AssertReturn {
            action: a,
            expected: e,
        } => Kind::AssertReturn {
            action: action(a)?,
            expected: e.into_iter().map(expected).collect::<Result<_, _>>()?,
        },
        Command::AssertTrap { action: a, text } => Kind::AssertTrap {
            action: action(a)?,
            message: text,
        },
        Command::AssertExhaustion { action: a, text } => Kind::AssertExhaustion {
            action: action(a)?,
            message: text,
        },
        Command::AssertException { action: a } => Kind::AssertException { action: action(a)? },
        Command::AssertInvalid {
            filename,
            module_type,
        } => Kind::AssertInvalid {
            bytes: module(dir, &filename, &module_type),
        },
        Command::AssertMalformed {
            filename,
            module_type,
        } => Kind::AssertMalformed {
            bytes: module(dir, &filename, &module_type),
        },
        Command::AssertUnlinkable {
            filename,
            module_type,
            text,
        } => Kind::AssertUnlinkable {
            bytes: module(dir, &filename, &module_type),
            message: text,
        },
        Command::AssertUninstantiable {
            filename,
            module_type,
            text,
        } => Kind::AssertTrap {
            action: Action::Instantiate(module(dir, &filename, &module_type)),
            message: text,
        },
    })
}

/// wast2json keeps the `$` of script names; the `wast` crate does not.
fn unsigil(name: String) -> String {
    name.strip_prefix('$').map(str::to_string).unwrap_or(name)
}

/// A module file: binary as is, text (only for `assert_malformed`/`assert_invalid` quotes)
/// parsed here so that a parse error is the module's malformation.
fn module(dir: &Path, filename: &str, module_type: &str) -> ModuleBytes {
    let path = dir.join(filename);
    match module_type {
        "binary" => fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display())),
        "text" => {
            let text = fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            wat::parse_str(text).map_err(|e| e.to_string())
        }
        other => Err(format!("unknown module type {other}")),
    }
}

fn action(action: JsonAction) -> Result<Action, String> {
    Ok(match action {
        JsonAction::Invoke {
            module,
            field,
            args,
        } => Action::Invoke {
            module: module.map(unsigil),
            field,
            args: args.into_iter().map(arg).collect::<Result<_, _>>()?,
        },
        JsonAction::Get { module, field } => Action::Get {
            module: module.map(unsigil),
            field,
        },
    })
}

fn arg(value: JsonValue) -> Result<Arg, String> {
    if value.ty == "v128" {
        return Ok(Arg::V128(lane_bits(&value)?));
    }
    let text = scalar(&value)?;
    Ok(match value.ty.as_str() {
        "i32" => Arg::I32(number::<u32>(text)? as i32),
        "i64" => Arg::I64(number::<u64>(text)? as i64),
        "f32" => Arg::F32(number(text)?),
        "f64" => Arg::F64(number(text)?),
        "funcref" | "externref" | "exnref" if text == "null" => Arg::Null(ref_kind(&value.ty)),
        "externref" => Arg::Extern(number(text)?),
        other => return Err(format!("argument of type {other}")),
    })
}

fn expected(value: JsonValue) -> Result<Expected, String> {
    match value.ty.as_str() {
        "either" => {
            let cases = value.values.ok_or("either without values")?;
            return Ok(Expected::Either(
                cases.into_iter().map(expected).collect::<Result<_, _>>()?,
            ));
        }
        "v128" => return Ok(Expected::V128(v128_expected(&value)?)),
        _ => {}
    }
    let text = scalar(&value)?;
    Ok(match value.ty.as_str() {
        "i32" => Expected::I32(number::<u32>(text)? as i32),
        "i64" => Expected::I64(number::<u64>(text)? as i64),
        "f32" => Expected::F32(float(text)?),
        "f64" => Expected::F64(float(text)?),
        "funcref" | "externref" | "exnref" if text == "null" => {
            Expected::Null(Some(ref_kind(&value.ty)))
        }
        "externref" => Expected::Extern(Some(number(text)?)),
        "funcref" => Expected::Func,
        other => return Err(format!("result of type {other}")),
    })
}

fn ref_kind(ty: &str) -> RefKind {
    match ty {
        "funcref" => RefKind::Func,
        "externref" => RefKind::Extern,
        _ => RefKind::Exn,
    }
}

fn scalar(value: &JsonValue) -> Result<&str, String> {
    match &value.value {
        Some(Json::String(s)) => Ok(s),
        _ => Err(format!("{} value without a value", value.ty)),
    }
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("bad number {text:?}"))
}

fn float<Bits: std::str::FromStr>(text: &str) -> Result<Float<Bits>, String> {
    Ok(match text {
        "nan:canonical" => Float::CanonicalNan,
        "nan:arithmetic" => Float::ArithmeticNan,
        bits => Float::Bits(number(bits)?),
    })
}

fn lanes(value: &JsonValue) -> Result<(&str, Vec<&str>), String> {
    let lane_type = value.lane_type.as_deref().ok_or("v128 without lane_type")?;
    let Some(Json::Array(items)) = &value.value else {
        return Err("v128 without lanes".into());
    };
    let lanes = items
        .iter()
        .map(|l| l.as_str().ok_or("v128 lane is not a string"))
        .collect::<Result<_, _>>()?;
    Ok((lane_type, lanes))
}

/// Packs integer-encoded lanes little-endian into the 128-bit value.
fn lane_bits(value: &JsonValue) -> Result<u128, String> {
    let (lane_type, lanes) = lanes(value)?;
    let width = 128 / lanes.len().max(1) as u32;
    if !matches!(
        (lane_type, width),
        ("i8", 8) | ("i16", 16) | ("i32" | "f32", 32) | ("i64" | "f64", 64)
    ) {
        return Err(format!("v128 with {} {lane_type} lanes", lanes.len()));
    }
    let mask = if width == 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    };
    lanes.iter().enumerate().try_fold(0u128, |acc, (i, lane)| {
        Ok(acc | (((number::<u64>(lane)? & mask) as u128) << (i as u32 * width)))
    })
}

fn v128_expected(value: &JsonValue) -> Result<V128Expected, String> {
    let (lane_type, lanes) = lanes(value)?;
    Ok(match lane_type {
        "f32" => V128Expected::F32x4(float_lanes(&lanes)?),
        "f64" => V128Expected::F64x2(float_lanes(&lanes)?),
        _ => V128Expected::Bits(lane_bits(value)?),
    })
}

fn float_lanes<Bits: std::str::FromStr, const N: usize>(
    lanes: &[&str],
) -> Result<[Float<Bits>; N], String> {
    let floats = lanes
        .iter()
        .map(|l| float(l))
        .collect::<Result<Vec<_>, _>>()?;
    floats
        .try_into()
        .map_err(|v: Vec<_>| format!("v128 with {} float lanes", v.len()))
}
