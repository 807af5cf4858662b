//! Generated programs with legacy exception handling, checked against a model.
//!
//! wasm-smith does not generate the legacy proposal (`try`, `catch`, `catch_all`,
//! `rethrow`, `delegate`), so this generator does: random nests of those, plain blocks,
//! branches out of any of them, throws of three tags (two with an i32 payload), and calls
//! down a chain of functions (exceptions crossing frames, some reaching the host). Every
//! step appends a mark to a trace (an i64 global), handlers append the payload they catch.
//! Each program is prepared (legacy → exnref), run, and its trace and whether an exception
//! escaped are compared with what [`Model`] (the legacy semantics, written out plainly)
//! says; the model's own trace shows which code ran, in which order.

use std::fmt::Write;

use wasmer::{imports, Module, Store, Value};

use crate::prepare::test_support::{with_check, Rng};
use crate::prepare::*;

const PROGRAMS: u64 = 1000;
const FUNCTIONS: usize = 4;

/// Tags 0 and 1 carry an i32, tag 2 nothing.
const TAGS: u32 = 3;

#[derive(Debug)]
enum Stmt {
    Mark(u64),
    Throw {
        tag: u32,
        payload: u32,
    },
    /// `rethrow depth`: depth is a label of an enclosing catch handler.
    Rethrow(u32),
    Br(u32),
    Block(Vec<Stmt>),
    Try {
        body: Vec<Stmt>,
        catches: Vec<(u32, Vec<Stmt>)>,
        catch_all: Option<Vec<Stmt>>,
    },
    /// `try body delegate depth` (depth counted from outside the try).
    Delegate {
        body: Vec<Stmt>,
        depth: u32,
    },
    Call(usize),
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Exn {
    tag: u32,
    payload: u32,
}

/// What the enclosing labels are, innermost last, while generating and while modelling.
#[derive(Clone, Copy, PartialEq)]
enum Label {
    Function,
    Block,
    /// The body of a `try` (its handlers, or its delegation, are active).
    TryBody,
    /// A catch handler of a `try`, with the exception it caught.
    Handler(Option<Exn>),
}

struct Generator<'a> {
    rng: &'a mut Rng,
    marks: u64,
    budget: u32,
}

impl Generator<'_> {
    fn block(&mut self, function: usize, labels: &mut Vec<Label>, depth: u32) -> Vec<Stmt> {
        let len = self.rng.below(4) + 1;
        (0..len)
            .filter_map(|_| self.stmt(function, labels, depth))
            .collect()
    }

    fn nested(
        &mut self,
        function: usize,
        labels: &mut Vec<Label>,
        depth: u32,
        label: Label,
    ) -> Vec<Stmt> {
        labels.push(label);
        let body = self.block(function, labels, depth + 1);
        labels.pop();
        body
    }

    fn stmt(&mut self, function: usize, labels: &mut Vec<Label>, depth: u32) -> Option<Stmt> {
        if self.budget == 0 {
            return None;
        }
        self.budget -= 1;
        let handlers: Vec<u32> = (0..labels.len() as u32)
            .filter(|&d| matches!(labels[labels.len() - 1 - d as usize], Label::Handler(_)))
            .collect();
        let nest = depth < 5;
        Some(match self.rng.below(100) {
            0..=24 => {
                self.marks += 1;
                Stmt::Mark(self.marks)
            }
            25..=34 => Stmt::Throw {
                tag: self.rng.below(TAGS as u64) as u32,
                payload: self.rng.below(1000) as u32,
            },
            35..=39 if !handlers.is_empty() => Stmt::Rethrow(*self.rng.pick(&handlers)),
            40..=46 => Stmt::Br(self.rng.below(labels.len() as u64) as u32),
            47..=52 if nest => Stmt::Block(self.nested(function, labels, depth, Label::Block)),
            53..=79 if nest => {
                let body = self.nested(function, labels, depth, Label::TryBody);
                let mut catches = Vec::new();
                for tag in 0..TAGS {
                    if self.rng.chance(40) {
                        catches.push((
                            tag,
                            self.nested(function, labels, depth, Label::Handler(None)),
                        ));
                    }
                }
                let catch_all = self
                    .rng
                    .chance(40)
                    .then(|| self.nested(function, labels, depth, Label::Handler(None)));
                Stmt::Try {
                    body,
                    catches,
                    catch_all,
                }
            }
            80..=89 if nest => {
                let depth_out = self.rng.below(labels.len() as u64) as u32;
                Stmt::Delegate {
                    body: self.nested(function, labels, depth, Label::TryBody),
                    depth: depth_out,
                }
            }
            90..=99 if function + 1 < FUNCTIONS => Stmt::Call(
                function + 1 + self.rng.below((FUNCTIONS - function - 1) as u64) as usize,
            ),
            _ => {
                self.marks += 1;
                Stmt::Mark(self.marks)
            }
        })
    }
}

fn generate(seed: u64) -> Vec<Vec<Stmt>> {
    let mut rng = Rng::new(seed);
    let mut generator = Generator {
        rng: &mut rng,
        marks: 0,
        budget: 0,
    };
    (0..FUNCTIONS)
        .map(|function| {
            generator.budget = 30;
            generator.block(function, &mut vec![Label::Function], 0)
        })
        .collect()
}

fn wat(functions: &[Vec<Stmt>]) -> String {
    let mut wat = String::from(
        r#"(module
  (tag $t0 (param i32)) (tag $t1 (param i32)) (tag $t2)
  (global $trace (export "trace") (mut i64) (i64.const 0))
  (func $mark (param i64) (global.set $trace (i64.add (i64.mul (global.get $trace)
    (i64.const 31)) (local.get 0))))
  (func (export "run") (call $f0))
"#,
    );
    for (i, body) in functions.iter().enumerate() {
        let _ = writeln!(wat, "  (func $f{i}");
        emit(&mut wat, body, 2);
        wat.push_str("  )\n");
    }
    wat.push(')');
    wat
}

fn emit(wat: &mut String, stmts: &[Stmt], indent: usize) {
    let pad = "  ".repeat(indent);
    for stmt in stmts {
        let _ = match stmt {
            Stmt::Mark(k) => writeln!(wat, "{pad}i64.const {k} call $mark"),
            Stmt::Throw { tag: 2, .. } => writeln!(wat, "{pad}throw $t2"),
            Stmt::Throw { tag, payload } => writeln!(wat, "{pad}i32.const {payload} throw $t{tag}"),
            Stmt::Rethrow(depth) => writeln!(wat, "{pad}rethrow {depth}"),
            Stmt::Br(depth) => writeln!(wat, "{pad}br {depth}"),
            Stmt::Call(f) => writeln!(wat, "{pad}call $f{f}"),
            Stmt::Block(body) => {
                let _ = writeln!(wat, "{pad}block");
                emit(wat, body, indent + 1);
                writeln!(wat, "{pad}end")
            }
            Stmt::Try {
                body,
                catches,
                catch_all,
            } => {
                let _ = writeln!(wat, "{pad}try");
                emit(wat, body, indent + 1);
                for (tag, handler) in catches {
                    let _ = writeln!(wat, "{pad}catch $t{tag}");
                    if *tag != 2 {
                        let _ = writeln!(wat, "{pad}  i64.extend_i32_u call $mark");
                    }
                    emit(wat, handler, indent + 1);
                }
                if let Some(handler) = catch_all {
                    let _ = writeln!(wat, "{pad}catch_all");
                    emit(wat, handler, indent + 1);
                }
                writeln!(wat, "{pad}end")
            }
            Stmt::Delegate { body, depth } => {
                let _ = writeln!(wat, "{pad}try");
                emit(wat, body, indent + 1);
                writeln!(wat, "{pad}delegate {depth}")
            }
        };
    }
}

/// How control leaves a sequence of statements.
#[derive(Debug)]
enum Flow {
    Normal,
    Br(u32),
    Throw(Exn),
    /// An exception delegated to the label this many levels further out.
    Delegated(Exn, u32),
}

/// The legacy exception-handling semantics, executed directly.
struct Model<'a> {
    functions: &'a [Vec<Stmt>],
    trace: u64,
}

impl Model<'_> {
    fn mark(&mut self, value: u64) {
        self.trace = self.trace.wrapping_mul(31).wrapping_add(value);
    }

    /// Runs function `f`: Some(exception) when one escapes it.
    fn call(&mut self, f: usize) -> Option<Exn> {
        match self.run(&self.functions[f], &mut vec![Label::Function]) {
            Flow::Normal | Flow::Br(_) => None,
            Flow::Throw(exn) | Flow::Delegated(exn, _) => Some(exn),
        }
    }

    fn run(&mut self, stmts: &[Stmt], labels: &mut Vec<Label>) -> Flow {
        for stmt in stmts {
            let flow = match stmt {
                Stmt::Mark(k) => {
                    self.mark(*k);
                    Flow::Normal
                }
                Stmt::Throw { tag, payload } => Flow::Throw(Exn {
                    tag: *tag,
                    payload: *payload,
                }),
                Stmt::Rethrow(depth) => match labels[labels.len() - 1 - *depth as usize] {
                    Label::Handler(Some(exn)) => Flow::Throw(exn),
                    _ => unreachable!("rethrow outside a handler"),
                },
                Stmt::Br(depth) => Flow::Br(*depth),
                Stmt::Call(f) => self.call(*f).map_or(Flow::Normal, Flow::Throw),
                Stmt::Block(body) => {
                    let flow = self.nested(body, labels, Label::Block);
                    self.leave(flow)
                }
                Stmt::Try {
                    body,
                    catches,
                    catch_all,
                } => match self.nested(body, labels, Label::TryBody) {
                    Flow::Throw(exn) | Flow::Delegated(exn, 0) => {
                        let handler = catches.iter().find(|(tag, _)| *tag == exn.tag);
                        if let Some((tag, handler)) = handler {
                            if *tag != 2 {
                                self.mark(exn.payload.into());
                            }
                            let flow = self.nested(handler, labels, Label::Handler(Some(exn)));
                            self.leave(flow)
                        } else if let Some(handler) = catch_all {
                            let flow = self.nested(handler, labels, Label::Handler(Some(exn)));
                            self.leave(flow)
                        } else {
                            Flow::Throw(exn)
                        }
                    }
                    flow => self.leave(flow),
                },
                Stmt::Delegate { body, depth } => match self.nested(body, labels, Label::TryBody) {
                    Flow::Throw(exn) | Flow::Delegated(exn, 0) => Flow::Delegated(exn, *depth),
                    flow => self.leave(flow),
                },
            };
            if !matches!(flow, Flow::Normal) {
                return flow;
            }
        }
        Flow::Normal
    }

    fn nested(&mut self, body: &[Stmt], labels: &mut Vec<Label>, label: Label) -> Flow {
        labels.push(label);
        let flow = self.run(body, labels);
        labels.pop();
        flow
    }

    /// The flow out of a construct whose label the flow from inside it just left: a branch
    /// to it ends there; an exception delegated to it is thrown from there (its handlers,
    /// if any, were handled by the caller); anything else continues outward.
    fn leave(&mut self, flow: Flow) -> Flow {
        match flow {
            Flow::Br(0) => Flow::Normal,
            Flow::Br(depth) => Flow::Br(depth - 1),
            Flow::Delegated(exn, 0) => Flow::Throw(exn),
            Flow::Delegated(exn, depth) => Flow::Delegated(exn, depth - 1),
            flow => flow,
        }
    }
}

#[test]
fn legacy_exception_programs_run_as_the_model_says() {
    let engine = crate::engine::engine();
    let (mut translated, mut escaped, mut handlers) = (0, 0, 0);
    for seed in 0..PROGRAMS {
        let functions = generate(seed);
        let wat = wat(&functions);
        let wasm = wat::parse_str(&wat).unwrap_or_else(|e| panic!("seed {seed}: {e}\n{wat}"));
        let prepared = prepare(&wasm, &PrepareOptions::default())
            .unwrap_or_else(|e| panic!("seed {seed}: {e}\n{wat}"));
        assert_eq!(
            prepared.exceptions_translated,
            wat.contains("try"),
            "seed {seed}"
        );
        translated += u32::from(prepared.exceptions_translated);
        let module = Module::new(engine, &prepared.wasm).unwrap();
        let mut store = Store::new(engine.clone());
        let imports = with_check(&mut store, imports! {});
        let instance =
            crate::prepare::instantiate_with_start(&mut store, &module, &imports).unwrap();
        let result = instance
            .exports
            .get_function("run")
            .unwrap()
            .call(&mut store, &[]);
        let trace = instance
            .exports
            .get_global("trace")
            .unwrap()
            .get(&mut store);

        let mut model = Model {
            functions: &functions,
            trace: 0,
        };
        let uncaught = model.call(0);
        assert_eq!(
            (result.is_err(), trace),
            (uncaught.is_some(), Value::I64(model.trace as i64)),
            "seed {seed}: (escaped, trace), model: {uncaught:?}\n{wat}"
        );
        escaped += u32::from(uncaught.is_some());
        handlers += wat.matches("catch").count();
    }
    eprintln!(
        "legacy exceptions: {PROGRAMS} generated programs \
            ({translated} translated, {handlers} handlers) ran as \
         modelled, {escaped} with an exception escaping to the host"
    );
}
