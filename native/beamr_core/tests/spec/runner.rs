//! Executes one script's directives in order, through hb_beamr's pipeline: every module is
//! prepared (`beamr_core::prepare`), compiled with hb_beamr's engine and instantiated in a
//! store shared by the whole script, so registered modules can be imported.
//!
//! Each directive yields one [`Record`]. A module that fails or is excluded leaves a marker
//! in its slot (current module, `$name`, registration), so the directives that use it are
//! failed or excluded *as its dependents* rather than run against a stale instance.

use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use beamr_core::engine::{engine, panic_message};
use beamr_core::prepare::{interrupt, prepare, PrepareOptions};
use wasmer::{Extern, InstantiationError, LinkError, Module, Store, Value};

use super::exclusions::{self, Exclusion};
use super::host;
use super::linking::{self, Exported, Interface};
use super::report::{Record, Status};
use super::script::{Action, Directive, Kind, ModuleBytes};
use super::traps::{self, Raised};
use super::values;

/// Runs a script; `file` is its path relative to the spec-tests directory (as exclusions
/// name it).
pub fn run(file: &str, directives: &[Directive], mut sink: impl FnMut(Record)) {
    let mut runner = Runner::new(file);
    for directive in directives {
        runner.line = directive.line;
        let step = catch_unwind(AssertUnwindSafe(|| runner.directive(&directive.kind)))
            .unwrap_or_else(|panic| {
                Err(Stop::Fail(format!("panicked: {}", panic_message(&panic))))
            });
        let (status, detail, note) = match step {
            Ok(note) => (Status::Pass, String::new(), note),
            Err(Stop::Fail(why)) => (Status::Fail, why, None),
            Err(Stop::Excluded(why)) => (Status::Excluded, why, None),
        };
        sink(Record {
            line: directive.line,
            kind: directive.kind.name().into(),
            status,
            detail,
            note,
        });
    }
    for stale in exclusions::EXCLUSIONS
        .iter()
        .filter(|e| e.file == file && !runner.checked_exclusions.contains(&e.line))
    {
        sink(Record {
            line: stale.line,
            kind: "exclusion".into(),
            status: Status::Fail,
            detail: format!(
                "listed exclusion ({}) names no directive with a module of its own",
                stale.proposal.name()
            ),
            note: None,
        });
    }
}

/// Why a directive did not pass.
enum Stop {
    Fail(String),
    Excluded(String),
}

impl From<String> for Stop {
    fn from(why: String) -> Stop {
        Stop::Fail(why)
    }
}

impl From<&str> for Stop {
    fn from(why: &str) -> Stop {
        Stop::Fail(why.into())
    }
}

/// A stage of a directive; a directive's own `Ok` is an optional note about a tolerated
/// difference.
type Step<T> = Result<T, Stop>;

/// A named thing a later directive may use: live, or the reason it is missing.
enum Slot<T> {
    Live(Rc<T>),
    Excluded(Rc<str>),
    Failed(Rc<str>),
}

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        match self {
            Slot::Live(v) => Slot::Live(v.clone()),
            Slot::Excluded(why) => Slot::Excluded(why.clone()),
            Slot::Failed(why) => Slot::Failed(why.clone()),
        }
    }
}

impl<T> Slot<T> {
    fn live(&self) -> Step<Rc<T>> {
        match self {
            Slot::Live(v) => Ok(v.clone()),
            Slot::Excluded(why) => Err(Stop::Excluded(why.to_string())),
            Slot::Failed(why) => Err(Stop::Fail(why.to_string())),
        }
    }

    /// The slot a module directive leaves, and that directive's own result.
    fn settle(line: u32, result: Step<Rc<T>>) -> (Slot<T>, Step<Option<String>>) {
        match result {
            Ok(v) => (Slot::Live(v), Ok(None)),
            Err(Stop::Fail(why)) => (
                Slot::Failed(format!("uses the module of line {line}, which failed").into()),
                Err(Stop::Fail(why)),
            ),
            Err(Stop::Excluded(why)) => (
                Slot::Excluded(format!("uses the module of line {line}, which is excluded").into()),
                Err(Stop::Excluded(why)),
            ),
        }
    }
}

struct Compiled {
    module: Module,
    interface: Interface,
}

enum Instantiated {
    Live(Rc<Exported>),
    Unlinkable(String),
    Raised(Raised),
}

struct Runner<'a> {
    file: &'a str,
    /// The line of the directive being run, which is how exclusions are named.
    line: u32,
    store: Store,
    registered: HashMap<String, Slot<Exported>>,
    named: HashMap<String, Slot<Exported>>,
    current: Option<Slot<Exported>>,
    definitions: HashMap<String, Slot<Compiled>>,
    last_definition: Option<Slot<Compiled>>,
    checked_exclusions: HashSet<u32>,
}

impl<'a> Runner<'a> {
    fn new(file: &'a str) -> Runner<'a> {
        let mut store = Store::new(engine().clone());
        let spectest = Slot::Live(Rc::new(host::spectest(&mut store)));
        let interruption = Slot::Live(Rc::new(host::interruption(&mut store)));
        Runner {
            file,
            line: 0,
            store,
            registered: HashMap::from([
                ("spectest".to_string(), spectest),
                (interrupt::CHECK_MODULE.to_string(), interruption),
            ]),
            named: HashMap::new(),
            current: None,
            definitions: HashMap::new(),
            last_definition: None,
            checked_exclusions: HashSet::new(),
        }
    }

    fn directive(&mut self, kind: &Kind) -> Step<Option<String>> {
        match kind {
            Kind::Module {
                name,
                bytes,
                instantiate: true,
            } => {
                let result = self
                    .compile(bytes)
                    .and_then(|compiled| self.instantiate_live(&compiled?));
                let (slot, step) = Slot::settle(self.line, result);
                if let Some(name) = name {
                    self.named.insert(name.clone(), slot.clone());
                }
                self.current = Some(slot);
                step
            }
            Kind::Module {
                name,
                bytes,
                instantiate: false,
            } => {
                let result = self
                    .compile(bytes)
                    .and_then(|compiled| Ok(Rc::new(compiled?)));
                let (slot, step) = Slot::settle(self.line, result);
                if let Some(name) = name {
                    self.definitions.insert(name.clone(), slot.clone());
                }
                self.last_definition = Some(slot);
                step
            }
            Kind::ModuleInstance { instance, module } => {
                let definition = match module {
                    Some(name) => self
                        .definitions
                        .get(name)
                        .cloned()
                        .ok_or(format!("unknown module definition ${name}"))?,
                    None => self.last_definition.clone().ok_or("no module definition")?,
                };
                let result = definition
                    .live()
                    .and_then(|compiled| self.instantiate_live(&compiled));
                let (slot, step) = Slot::settle(self.line, result);
                if let Some(name) = instance {
                    self.named.insert(name.clone(), slot.clone());
                }
                self.current = Some(slot);
                step
            }
            Kind::Register { module, as_name } => {
                let slot = self.instance(module)?;
                self.registered.insert(as_name.clone(), slot.clone());
                slot.live()?;
                Ok(None)
            }
            Kind::Action(action) => {
                self.perform(action)?
                    .map_err(|raised| format!("raised {}", raised.describe()))?;
                Ok(None)
            }
            Kind::AssertReturn { action, expected } => {
                let results = self
                    .perform(action)?
                    .map_err(|raised| format!("raised {}", raised.describe()))?;
                values::check_results(&self.store, expected, &results)?;
                Ok(None)
            }
            Kind::AssertTrap { action, message } | Kind::AssertExhaustion { action, message } => {
                match self.perform(action)? {
                    Ok(results) => Err(format!(
                        "returned {} instead of trapping with {message:?}",
                        values::describe_all(&self.store, &results)
                    )
                    .into()),
                    Err(raised) => Ok(traps::judge(message, &raised)?),
                }
            }
            Kind::AssertException { action } => match self.perform(action)? {
                Err(Raised::Exception) => Ok(None),
                Err(raised) => {
                    Err(format!("raised {} instead of an exception", raised.describe()).into())
                }
                Ok(results) => Err(format!(
                    "returned {} instead of throwing",
                    values::describe_all(&self.store, &results)
                )
                .into()),
            },
            Kind::AssertInvalid { bytes } | Kind::AssertMalformed { bytes } => {
                match self.compile(bytes)? {
                    Ok(_) => Err("the module was accepted".into()),
                    Err(why) if exclusions::is_feature_gate(&why) => {
                        Err(format!("rejected only for a disabled proposal: {why}").into())
                    }
                    Err(_) => Ok(None),
                }
            }
            Kind::AssertUnlinkable { bytes, message } => {
                let compiled = self.compile(bytes)??;
                match self.instantiate(&compiled)? {
                    Instantiated::Unlinkable(why) => Ok((!why.contains(message.as_str()))
                        .then(|| format!("link error {why:?}, expected {message:?}"))),
                    Instantiated::Live(_) => Err("the module linked".into()),
                    Instantiated::Raised(raised) => Err(format!(
                        "raised {} instead of failing to link",
                        raised.describe()
                    )
                    .into()),
                }
            }
            Kind::Unsupported { what } => Err(format!("unsupported by the harness: {what}").into()),
        }
    }

    /// Prepares and compiles a directive's own module. The outer error is about the
    /// exclusion list (the module is excluded, or its listing is wrong); the inner one is
    /// the module's rejection, which only `assert_invalid`/`assert_malformed` want.
    fn compile(&mut self, bytes: &ModuleBytes) -> Step<Result<Compiled, String>> {
        let outcome = match bytes {
            Ok(bytes) => compile_bytes(bytes),
            Err(why) => Err(format!("the module text does not parse: {why}")),
        };
        let Some(Exclusion { proposal, why, .. }) = exclusions::listed(self.file, self.line) else {
            return Ok(outcome);
        };
        self.checked_exclusions.insert(self.line);
        match outcome {
            Err(error) if exclusions::missing_proposal(&error) == Some(*proposal) => {
                Err(Stop::Excluded(format!("needs {}: {why}", proposal.name())))
            }
            Err(error) => Err(format!(
                "listed as needing {}, but fails with: {error}",
                proposal.name()
            )
            .into()),
            Ok(_) => Err(format!(
                "listed as needing {}, but compiles: drop the exclusion",
                proposal.name()
            )
            .into()),
        }
    }

    fn instantiate(&mut self, compiled: &Compiled) -> Step<Instantiated> {
        let registered = &self.registered;
        let imports = match linking::resolve(&compiled.module, &compiled.interface, |name| {
            registered.get(name).map(Slot::live)
        })? {
            Ok(imports) => imports,
            Err(why) => return Ok(Instantiated::Unlinkable(why)),
        };
        Ok(
            match beamr_core::prepare::instantiate_with_start(
                &mut self.store,
                &compiled.module,
                &imports,
            ) {
                Ok(instance) => {
                    Instantiated::Live(Rc::new(Exported::of(&instance, &compiled.interface)))
                }
                Err(
                    InstantiationError::Start(error)
                    | InstantiationError::Link(LinkError::Trap(error)),
                ) => Instantiated::Raised(Raised::from_runtime(&error)),
                Err(error) => Instantiated::Unlinkable(error.to_string()),
            },
        )
    }

    /// Instantiation that must succeed.
    fn instantiate_live(&mut self, compiled: &Compiled) -> Step<Rc<Exported>> {
        match self.instantiate(compiled)? {
            Instantiated::Live(exported) => Ok(exported),
            Instantiated::Unlinkable(why) => Err(format!("cannot link: {why}").into()),
            Instantiated::Raised(raised) => {
                Err(format!("instantiation raised {}", raised.describe()).into())
            }
        }
    }

    fn instance(&self, name: &Option<String>) -> Step<Slot<Exported>> {
        Ok(match name {
            Some(name) => self
                .named
                .get(name)
                .cloned()
                .ok_or(format!("unknown module ${name}"))?,
            None => self.current.clone().ok_or("no module instantiated yet")?,
        })
    }

    /// Runs an action: its results, or what it raised.
    fn perform(&mut self, action: &Action) -> Step<Result<Vec<Value>, Raised>> {
        match action {
            Action::Invoke {
                module,
                field,
                args,
            } => {
                let exported = self.instance(module)?.live()?;
                let Some(Extern::Function(function)) = exported.externs.get(field) else {
                    return Err(format!("no exported function {field:?}").into());
                };
                let args: Vec<Value> = args
                    .iter()
                    .map(|arg| values::to_value(&mut self.store, arg))
                    .collect();
                Ok(function
                    .call(&mut self.store, &args)
                    .map(Vec::from)
                    .map_err(|error| Raised::from_runtime(&error)))
            }
            Action::Get { module, field } => {
                let exported = self.instance(module)?.live()?;
                let Some(Extern::Global(global)) = exported.externs.get(field) else {
                    return Err(format!("no exported global {field:?}").into());
                };
                Ok(Ok(vec![global.get(&mut self.store)]))
            }
            Action::Instantiate(bytes) => {
                let compiled = self.compile(bytes)??;
                match self.instantiate(&compiled)? {
                    Instantiated::Live(_) => Ok(Ok(vec![])),
                    Instantiated::Unlinkable(why) => Err(format!("cannot link: {why}").into()),
                    Instantiated::Raised(raised) => Ok(Err(raised)),
                }
            }
        }
    }
}

/// hb_beamr's pipeline without its cache: prepare, then compile with the shared engine.
/// A panic in either is a rejection, as `beamr_core::compile::compile` treats it.
fn compile_bytes(bytes: &[u8]) -> Result<Compiled, String> {
    let module = catch_unwind(|| {
        let prepared = prepare(
            bytes,
            &PrepareOptions {
                wamr_compat: false,
                ..Default::default()
            },
        )
        .map_err(|e| format!("prepare rejected it: {e}"))?;
        Module::new(engine(), &prepared.wasm).map_err(|e| format!("wasmer rejected it: {e}"))
    })
    .map_err(|panic| format!("panicked while compiling: {}", panic_message(&panic)))??;
    Ok(Compiled {
        module,
        interface: Interface::parse(bytes)?,
    })
}
