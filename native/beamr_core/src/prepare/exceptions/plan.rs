//! First read of a function body: what each `try` turns out to be. Its clauses, a
//! `delegate` and the `rethrow`s that need its caught exception all come after the `try`
//! opens, but the rewrite has to open the right blocks at the `try` itself.

use wasmparser::{FunctionBody, Operator};

use super::error::{malformed, parse_error};
use crate::prepare::error::PrepareError;

/// What the rewrite needs to know about one frame that can handle exceptions: a legacy
/// `try` or a `try_table`, numbered in the order they open in the body.
#[derive(Default)]
pub(super) struct Handler {
    /// A `delegate` targets this frame, so its body is wrapped in a landing block.
    pub landing: bool,
    /// Legacy `try` only: the tag of each `catch` clause in order, `None` for `catch_all`.
    pub clauses: Vec<Option<u32>>,
    /// Legacy `try … delegate` only: the index, in the control-frame stack, of the frame
    /// whose landing block receives the exception (0, the function, means the caller).
    pub delegate: Option<usize>,
    /// A `rethrow` reads the exception caught by this `try`, so it is kept in a local.
    pub rethrown: bool,
    /// How many enclosing `try`s are in their catch clauses where this `try` opens. Live
    /// caught exceptions are exactly those of the enclosing `try`s in their clauses, so
    /// this is a free slot in a small pool of `exnref` locals.
    pub exn_slot: u32,
}

pub(super) struct FunctionPlan {
    pub handlers: Vec<Handler>,
    /// Some `delegate` has no handling frame outside its target: it rethrows to the caller.
    pub caller_landing: bool,
    /// How many `exnref` locals to add.
    pub exn_locals: u32,
}

enum Frame {
    /// `block`, `loop`, `if` and the function body.
    Plain,
    TryTable {
        handler: usize,
    },
    Try {
        handler: usize,
        catching: bool,
    },
}

/// None when the body uses no legacy exception instruction.
pub(super) fn plan_function(body: &FunctionBody<'_>) -> Result<Option<FunctionPlan>, PrepareError> {
    let mut reader = body.get_operators_reader().map_err(parse_error)?;
    let mut plan = FunctionPlan {
        handlers: Vec::new(),
        caller_landing: false,
        exn_locals: 0,
    };
    let mut frames = vec![Frame::Plain];
    let mut catching_tries = 0;
    let mut legacy = false;
    while !frames.is_empty() {
        match reader.read().map_err(parse_error)? {
            Operator::Block { .. } | Operator::Loop { .. } | Operator::If { .. } => {
                frames.push(Frame::Plain)
            }
            Operator::TryTable { .. } => {
                frames.push(Frame::TryTable {
                    handler: plan.handlers.len(),
                });
                plan.handlers.push(Handler::default());
            }
            Operator::Try { .. } => {
                legacy = true;
                frames.push(Frame::Try {
                    handler: plan.handlers.len(),
                    catching: false,
                });
                plan.handlers.push(Handler {
                    exn_slot: catching_tries,
                    ..Handler::default()
                });
            }
            Operator::Catch { tag_index } => {
                legacy = true;
                let handler = enter_clause(&mut frames, &mut catching_tries)?;
                plan.handlers[handler].clauses.push(Some(tag_index));
            }
            Operator::CatchAll => {
                legacy = true;
                let handler = enter_clause(&mut frames, &mut catching_tries)?;
                plan.handlers[handler].clauses.push(None);
            }
            Operator::Delegate { relative_depth } => {
                legacy = true;
                let Some(Frame::Try {
                    handler,
                    catching: false,
                }) = frames.pop()
                else {
                    return Err(malformed("delegate outside a try body"));
                };
                let label = frame_index(frames.len(), relative_depth)?;
                // Frames between the label and the nearest handling frame have no handlers,
                // so delegating to the label is delegating to that frame.
                let target =
                    frames[..=label]
                        .iter()
                        .enumerate()
                        .rev()
                        .find_map(|(index, f)| match f {
                            Frame::TryTable { handler }
                            | Frame::Try {
                                handler,
                                catching: false,
                            } => Some((index, *handler)),
                            Frame::Try { catching: true, .. } | Frame::Plain => None,
                        });
                match target {
                    Some((index, target)) => {
                        plan.handlers[target].landing = true;
                        plan.handlers[handler].delegate = Some(index);
                    }
                    None => {
                        plan.caller_landing = true;
                        plan.handlers[handler].delegate = Some(0);
                    }
                }
            }
            Operator::Rethrow { relative_depth } => {
                legacy = true;
                let Frame::Try {
                    handler,
                    catching: true,
                } = frames[frame_index(frames.len(), relative_depth)?]
                else {
                    return Err(malformed("rethrow outside a catch clause"));
                };
                let caught = &mut plan.handlers[handler];
                caught.rethrown = true;
                plan.exn_locals = plan.exn_locals.max(caught.exn_slot + 1);
            }
            Operator::End => {
                if let Some(Frame::Try { catching: true, .. }) = frames.pop() {
                    catching_tries -= 1;
                }
            }
            _ => {}
        }
    }
    Ok(legacy.then_some(plan))
}

/// A `catch` or `catch_all` moves the innermost `try` into its clauses.
fn enter_clause(frames: &mut [Frame], catching_tries: &mut u32) -> Result<usize, PrepareError> {
    let Some(Frame::Try { handler, catching }) = frames.last_mut() else {
        return Err(malformed("catch outside a try"));
    };
    if !*catching {
        *catching = true;
        *catching_tries += 1;
    }
    Ok(*handler)
}

/// The index, in a stack of `frames` control frames, of the frame `relative_depth` labels out.
pub(super) fn frame_index(frames: usize, relative_depth: u32) -> Result<usize, PrepareError> {
    frames
        .checked_sub(1 + relative_depth as usize)
        .ok_or_else(|| malformed("unknown label"))
}
