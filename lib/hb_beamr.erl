%%% @doc WebAssembly instances for Erlang, API-compatible with HyperBEAM's `hb_beamr'.
%%%
%%% An instance is a pid. Behind it an executor thread owns the wasmer Store and runs
%%% wasm; calls are queued to it and their results come back as messages. When wasm
%%% calls an import, the calling process runs the import fun and replies; while it
%%% does, it may read and write memory (`hb_beamr_io') and make nested calls.
%%%
%%% ```
%%% {ok, I, Imports, Exports} = hb_beamr:start(Wasm),
%%% {ok, [120.0]} = hb_beamr:call(I, "fac", [5.0]),
%%% {ok, [32], State} = hb_beamr:call(I, "pow", [2, 5], ImportFun, State0),
%%% ok = hb_beamr:stop(I).
%%% '''
-module(hb_beamr).

-export([start/1, start/2, stop/1, compile/2]).
-export([call/3, call/4, call/5, call/6]).
-export([serialize/1, deserialize/2, stub/3, load_driver/0, gas_used/1]).
-export([snapshot/1, snapshot/2, restore/2, snapshot_info/1]).
-export([call_async/4, reply/2, wasm_send/2, info/1]).
-export([hibernate/1, stats/0]).

%% The options start/2 and compile/2 know; any other key is refused.
-define(START_OPTIONS, [mode, wamr_compat, gas, timeout, memory_limit, cache_dir, deterministic,
                        restore, dirty_tracking, emscripten, hibernate_after, hibernate_dir]).

-type instance() :: pid().
%% A running instance: its owner process, which stops the instance when it exits.
-type name() :: binary() | string() | integer().
%% An export's name, or an integer N: entry N of table 0 (an indirect call, as in
%% HyperBEAM's seed).
-type value() :: integer() | float() | nan | infinity | neg_infinity | null.
%% A wasm value: integers for i32/i64 (signed), floats for f32/f64 with `nan',
%% `infinity' and `neg_infinity' for the special ones, `null' for a null reference.
-type import_request() :: #{instance := instance(), module := string(), func := string(),
                            args := [value()], func_sig := string(), options => map()}.
%% What an import fun is asked: which import of which instance, with what arguments
%% (`func_sig' in WAMR's notation, e.g. `"(ii)i"').
-type import_fun() ::
    fun((State :: term(), import_request(), Opts :: map()) -> import_answer())
  | fun((State :: term(), import_request()) -> import_answer()).
%% Answers a call's imports: returns the results and the new state threaded through the
%% call, or raises an exception at the import's call site (see `import_answer()');
%% anything else (or an Erlang exception other than `throw({import_exception, Reason})')
%% fails the call with `import_failed'.
-type import_answer() :: {ok, [value()], term()}
                       | {import_exception, Reason :: term()}
                       | {import_exception, Reason :: term(), State :: term()}.
%% `{import_exception, Reason}' (also thrown) unwinds the wasm frames to the nearest
%% Emscripten `invoke_*', which catches it as it catches a C++ throw or a longjmp; with
%% none the call ends with `{error, {trap, exception, Reason}, State}'.
-type import_entry() :: {func, Module :: string(), Name :: string(), Sig :: string()}.
%% One import of a started module, as `start/1,2' lists them.
-type export_entry() :: {func | memory | table | global | tag, Name :: string(), Sig :: string()}.
%% One export of a started module, as `start/1,2' lists them.
-type trap_kind() :: unreachable | out_of_bounds | stack_overflow | integer_overflow
                   | division_by_zero | bad_conversion | indirect_call_type_mismatch
                   | table_out_of_bounds | uninitialized_element | unaligned_atomic
                   | exception | out_of_gas | timeout | caller_died | other.
%% Why wasm stopped: the WebAssembly trap, an uncaught exception, a limit of the call
%% (`out_of_gas', `timeout', `stack_overflow' also for nesting too deep), or the calling
%% process's death.
-type reason() :: {trap, trap_kind(), binary()} | {trap, exception, Reason :: term()} | {not_found, name()} | {badarg, term()}
                | {invalid_module, term()} | {invalid_artifact, term()} | {cache_dir, string()}
                | stopped | {noconnection, node()}
                | {invalid_snapshot, binary()} | {snapshot_mismatch, binary()}
                | {unsnapshottable, {global | table, non_neg_integer()}}
                | call_in_progress
                | {memory_limit, Initial :: non_neg_integer(), Limit :: non_neg_integer()}
                | {resource_limit, thread | memory}
                | {too_large, Len :: non_neg_integer(), Max :: non_neg_integer()}
                | {import_failed, string(), string(), {atom(), term()}}
                | malloc_failed | {bad_malloc_result, term()}
                | {string_too_long, Ptr :: non_neg_integer(), Max :: non_neg_integer()}.
%% Every error this module returns (the README's error table says when each comes).
-type call_ref() :: reference().
%% An asynchronous call (`call_async/4'): the NIF's handle of the call, which is a
%% reference.
-type snapshot_chain() :: binary() | [binary(), ...].
%% A full snapshot, or a full snapshot followed by its deltas in order.
-type snapshot_info() :: #{kind := full | delta, id := <<_:128>>, parent := <<_:128>> | none,
                           sequence := non_neg_integer()}.
%% What a snapshot's header says (`snapshot_info/1'): a delta names its parent by id.
-type info() :: #{module_hash := binary(), memory_bytes := non_neg_integer(),
                  memory_pages := non_neg_integer(),
                  state := idle | running | in_import | starting | hibernated | stopped,
                  calls := non_neg_integer(), gas_used := non_neg_integer(),
                  cached := boolean(), origin := compiled | memory | disk | artifact,
                  hibernations := non_neg_integer(), revivals := non_neg_integer(),
                  image_bytes := non_neg_integer()}.
%% What `info/1' tells about an instance.
-export_type([instance/0, value/0, import_fun/0, import_request/0, reason/0]).
-export_type([call_ref/0, info/0, snapshot_chain/0, snapshot_info/0]).

%% @doc Loads `Wasm' (a binary module or WAT text) with default options.
-spec start(iodata()) -> {ok, instance(), [import_entry()], [export_entry()]} | {error, reason()}.
start(Wasm) ->
    start(Wasm, #{}).

%% @doc Loads a module (or an artifact from `compile/2'). Options: `mode => wasm | aot'
%% (both compile with Cranelift), `wamr_compat => boolean()' (default true: WAMR's extra
%% memory page), `timeout => Ms | infinity' and `gas => N | infinity' (bound the
%% instantiation and the module's start function, as they bound a call; `gas => boolean()'
%% is accepted too),
%% `memory_limit => Bytes' (all memories and tables together, 8 bytes per table entry,
%% may not start or grow beyond it; 4 GiB + 64 MiB when not given), `cache_dir => Path'
%% (compiled modules persist there across VM restarts), `deterministic => boolean()'
%% (canonical NaNs; threads refused), `restore => Snapshot | [Full | Deltas]' (start in
%% the state of a snapshot of the same module, or of a chain, as `restore/2') and
%% `dirty_tracking => auto | digests' (how incremental snapshots find changed pages; see
%% docs/snapshots.md) and `emscripten => native | imports' (who answers the imports of
%% Emscripten's JavaScript-style exception and longjmp runtime: hb_beamr, the default, or
%% the import fun, which throws with `{import_exception, Reason}'; `invoke_*' is always
%% native). The application env gives defaults for `memory_limit' and `cache_dir'.
%% Any other key gives `{error, {badarg, {options, {Key, Value}}}}'.
-spec start(iodata(), wasm | aot | map()) ->
    {ok, instance(), [import_entry()], [export_entry()]} | {error, reason()}.
start(Wasm, Mode) when Mode =:= wasm; Mode =:= aot ->
    start(Wasm, #{mode => Mode});
start(Wasm, Opts) when is_map(Opts) ->
    case {known_options(maps:iterator(Opts)), to_binary(Wasm), chain(maps:get(restore, Opts, <<>>))} of
        {{unknown, Option}, _, _} -> {error, {badarg, {options, Option}}};
        {ok, _, error} -> {error, {badarg, {options, {restore, maps:get(restore, Opts)}}}};
        {ok, {ok, Bin}, _} -> start_owned(Bin, with_env_defaults(Opts));
        {ok, error, _} -> {error, {badarg, wasm}}
    end;
start(_Wasm, Opts) ->
    {error, {badarg, {options, Opts}}}.

%% The owner is spawned first: the NIF binds the instance to it.
start_owned(Wasm, Opts) ->
    hb_beamr_owner:start_owned(fun(Owner) -> start_restored(instantiate(Owner, Wasm, Opts), Opts) end).

instantiate(Owner, Wasm, Opts) ->
    case hb_beamr_nif:start(Owner, Wasm, Opts) of
        {ok, Id, Imports, Exports} ->
            case await(Owner, Id, fun stub/3, #{}, #{}) of
                {ok, [], _} -> {ok, Owner, Imports, Exports};
                {error, Reason, _} -> {error, Reason}
            end;
        {error, Reason} ->
            {error, Reason}
    end.

%% `restore => Snapshot | Chain': the instance starts as usual, then takes the snapshot's
%% state before anyone else can see it; a snapshot it refuses fails the start (the caller then
%% kills the owner, which stops the instance).
start_restored({ok, Instance, Imports, Exports}, #{restore := Snapshot}) ->
    case restore(Instance, Snapshot) of
        ok -> {ok, Instance, Imports, Exports};
        {error, Reason} -> {error, Reason}
    end;
start_restored(Result, _Opts) ->
    Result.

%% `ok', or the first option that start/2 and compile/2 do not know: a misspelt option
%% must not go unnoticed (`memory_limt' would run without a limit).
known_options(Options) ->
    case maps:next(Options) of
        none -> ok;
        {Key, Value, Rest} ->
            case lists:member(Key, ?START_OPTIONS) of
                true -> known_options(Rest);
                false -> {unknown, {Key, Value}}
            end
    end.

%% `max_live' is node-wide, so it is only ever taken from the application env, and passed
%% with every start (0 when unset: no budget), so that unsetting it lifts the budget.
with_env_defaults(Opts) ->
    Keys = [memory_limit, cache_dir, hibernate_after, hibernate_dir],
    Defaults = maps:from_list([{Key, Value} || Key <- Keys,
                                               {ok, Value} <- [application:get_env(hb_beamr, Key)]]),
    MaxLive = application:get_env(hb_beamr, max_live, 0),
    maps:merge(Defaults#{max_live => MaxLive}, Opts).

%% @doc Compiles `Wasm' (a binary module or WAT text) into an artifact that `start/2'
%% loads without compiling: native code, authenticated with HMAC-SHA-256. With `cache_dir'
%% (option or application env) it is keyed with that directory's key and loads in any VM
%% using the directory; otherwise with a key that lives as long as this VM. Options are
%% start/2's; the preparation options (`wamr_compat', `memory_limit', `deterministic') are
%% built into the artifact.
-spec compile(iodata(), map()) -> {ok, binary()} | {error, reason()}.
compile(Wasm, Opts) when is_map(Opts) ->
    case {known_options(maps:iterator(Opts)), to_binary(Wasm)} of
        {{unknown, Option}, _} -> {error, {badarg, {options, Option}}};
        {ok, {ok, Bin}} -> hb_beamr_nif:compile(Bin, with_env_defaults(Opts));
        {ok, error} -> {error, {badarg, wasm}}
    end;
compile(_Wasm, Opts) ->
    {error, {badarg, {options, Opts}}}.

to_binary(Wasm) when is_binary(Wasm) -> {ok, Wasm};
to_binary(Wasm) ->
    try {ok, iolist_to_binary(Wasm)}
    catch error:badarg -> error
    end.

%% @doc Ends the instance, interrupting running wasm. Idempotent: an instance that has
%% already stopped (its pid is dead) gives `ok'. A live pid that is not an instance is
%% left alone.
-spec stop(instance() | term()) -> ok | {error, {badarg, {instance, term()}}}.
stop(Instance) when is_pid(Instance), node(Instance) =:= node() ->
    ok = hb_beamr_seed:forget(Instance),
    hb_beamr_owner:stop(Instance);
stop(Instance) when is_pid(Instance) ->
    case hb_beamr_owner:on_node(node(Instance), ?MODULE, stop, [Instance]) of
        {ok, Stopped} -> Stopped;
        %% Nothing more can be done from here, and stop/1 is total: `ok', as for an
        %% instance already gone.
        {error, {noconnection, _}} -> ok
    end;
stop(Instance) ->
    {error, {badarg, {instance, Instance}}}.

%% @doc Calls an export; every import is answered by `stub/3'.
-spec call(instance(), name(), [value()]) -> {ok, [value()]} | {error, reason()}.
call(Instance, Func, Args) ->
    case call(Instance, Func, Args, fun stub/3) of
        {ok, Results, _} -> {ok, Results};
        {error, Reason, _} -> {error, Reason}
    end.

%% @doc `call/6' with the state `#{}' and no options, as HyperBEAM calls it.
-spec call(instance(), name(), [value()], import_fun()) ->
    {ok, [value()], term()} | {error, reason(), term()}.
call(Instance, Func, Args, ImportFun) ->
    call(Instance, Func, Args, ImportFun, #{}).

%% @doc `call/6' with no options.
-spec call(instance(), name(), [value()], import_fun(), term()) ->
    {ok, [value()], term()} | {error, reason(), term()}.
call(Instance, Func, Args, ImportFun, State) ->
    call(Instance, Func, Args, ImportFun, State, #{}).

%% @doc Calls an export; imports are answered by `ImportFun', threading `State'.
%% `Opts' goes to the import fun; besides, `timeout => Ms' ends the call with
%% `{trap, timeout, _}' once the deadline passes, and `gas => N' with `{trap, out_of_gas, _}'
%% once it has used N units of fuel (see `gas_used/1').
-spec call(instance(), name(), [value()], import_fun(), term(), map()) ->
    {ok, [value()], term()} | {error, reason(), term()}.
call(Instance, Func, Args, ImportFun, State, Opts)
        when is_pid(Instance), node(Instance) =/= node() ->
    case hb_beamr_owner:on_node(node(Instance), ?MODULE, call, [Instance, Func, Args, ImportFun, State, Opts]) of
        {ok, Result} -> Result;
        {error, Reason} -> {error, Reason, State}
    end;
call(Instance, Func, Args, ImportFun, State, Opts)
        when is_pid(Instance), is_map(Opts),
             (is_function(ImportFun, 3) orelse is_function(ImportFun, 2)) ->
    case queue_call(Instance, Func, Args, Opts) of
        {event, Id, Event} -> handle(Instance, Id, Event, ImportFun, State, Opts);
        {wait, Id} -> await(Instance, Id, ImportFun, State, Opts);
        {error, Reason} -> {error, Reason, State}
    end;
call(Instance, _Func, _Args, ImportFun, State, Opts) ->
    {error, {badarg, bad_call_argument(Instance, ImportFun, Opts)}, State}.

queue_call(Instance, Func, Args, Opts) when map_size(Opts) =:= 0 ->
    hb_beamr_nif:call(Instance, Func, Args);
queue_call(Instance, Func, Args, Opts) ->
    hb_beamr_nif:call(Instance, Func, Args, Opts).

bad_call_argument(Instance, _, _) when not is_pid(Instance) -> {instance, Instance};
bad_call_argument(_, _, Opts) when not is_map(Opts) -> {options, Opts};
bad_call_argument(_, ImportFun, _) -> {import_fun, ImportFun}.

%% Serves call `Id' until its result arrives: events (import requests, the result)
%% come as messages, or straight from a NIF when they come within microseconds.
await(Instance, Id, ImportFun, State, Opts) ->
    case hb_beamr_owner:next_event(Instance, Id) of
        {ok, Event} -> handle(Instance, Id, Event, ImportFun, State, Opts);
        stopped -> {error, stopped, State}
    end.

handle(Instance, Id, {import, Call, Index, Module, Name, Sig, Args}, ImportFun, State, Opts) ->
    Request = #{instance => Instance, module => Module, func => Name,
                args => Args, func_sig => Sig},
    case run_import(ImportFun, State, Request, Opts) of
        {ok, Results, NewState} ->
            case hb_beamr_nif:import_reply(Call, Index, Results) of
                {wait, Id} ->
                    await(Instance, Id, ImportFun, NewState, Opts);
                {event, Id, Event} ->
                    handle(Instance, Id, Event, ImportFun, NewState, Opts);
                {error, _} ->
                    Why = {error, {bad_import_results, Results}},
                    await_failure(Instance, Id, {import_failed, Module, Name, Why}, State)
            end;
        {exception, Reason, NewState} ->
            case hb_beamr_nif:import_exception(Call, Index, Reason) of
                {wait, Id} -> await(Instance, Id, ImportFun, NewState, Opts);
                {event, Id, Event} -> handle(Instance, Id, Event, ImportFun, NewState, Opts);
                {error, Why} -> await_failure(Instance, Id, {import_failed, Module, Name, {error, Why}}, NewState)
            end;
        {failed, Why} ->
            ok = hb_beamr_nif:import_failed(Call),
            await_failure(Instance, Id, {import_failed, Module, Name, Why}, State)
    end;
handle(_Instance, _Id, {ok, Results}, _ImportFun, State, _Opts) ->
    {ok, Results, State};
handle(_Instance, _Id, {error, Reason}, _ImportFun, State, _Opts) ->
    {error, Reason, State}.

%% The import trapped the call; the executor confirms once wasm has unwound.
await_failure(Instance, Id, Failure, State) ->
    case hb_beamr_owner:next_event(Instance, Id) of
        {ok, {error, import_failed}} -> {error, Failure, State};
        {ok, {error, Reason}} -> {error, Reason, State};
        stopped -> {error, stopped, State}
    end.

run_import(ImportFun, State, Request, Opts) ->
    try apply_import(ImportFun, State, Request, Opts) of
        {ok, Results, NewState} when is_list(Results) -> {ok, Results, NewState};
        {import_exception, Reason} -> {exception, Reason, State};
        {import_exception, Reason, NewState} -> {exception, Reason, NewState};
        Other -> {failed, {error, {bad_import_return, Other}}}
    catch
        throw:{import_exception, Reason} -> {exception, Reason, State};
        Class:Reason -> {failed, {Class, Reason}}
    end.

apply_import(ImportFun, State, Request, Opts) when is_function(ImportFun, 3) ->
    ImportFun(State, Request, Opts);
apply_import(ImportFun, State, Request, Opts) ->
    ImportFun(State, Request#{options => Opts}).

%% @doc The raw bytes of memory 0.
-spec serialize(instance()) -> {ok, binary()} | {error, reason()}.
serialize(Instance) ->
    hb_beamr_io:snapshot(Instance).

%% @doc Writes `Bin' at offset 0 of memory 0, growing the memory if needed.
-spec deserialize(instance(), binary()) -> ok | {error, reason()}.
deserialize(Instance, Bin) ->
    hb_beamr_io:restore(Instance, Bin).

%% @doc The instance's whole state: memory 0, every mutable global (exported or not, such
%% as `__stack_pointer') and every table, in a versioned, checksummed binary bound to the
%% module's source and `wamr_compat' (see docs/snapshots.md). Taken between calls: from inside
%% an import handler it is `{error, call_in_progress}'. The same as
%% `snapshot(Instance, #{})'.
-spec snapshot(instance()) -> {ok, binary()} | {error, reason()}.
snapshot(Instance) ->
    snapshot(Instance, #{}).

%% @doc A snapshot, full or incremental. With `incremental => true' it is a delta: only
%% what changed since this instance's previous snapshot or restore (the memory pages
%% written since, 4 KiB each, and the globals and tables whole), restored as the last
%% element of a chain `[Full | Deltas]' (see `restore/2'). An instance that has neither
%% been snapshotted nor restored has no base to be incremental on: it returns a full
%% snapshot, the start of a chain (`snapshot_info/1' tells them apart). Every snapshot,
%% full or delta, becomes the base of the next delta. Options other than
%% `incremental => boolean()' give `{error, {badarg, {options, {Key, Value}}}}'.
-spec snapshot(instance(), #{incremental => boolean()}) -> {ok, binary()} | {error, reason()}.
snapshot(Instance, Opts) when is_pid(Instance), is_map(Opts) ->
    case maps:to_list(maps:remove(incremental, Opts)) of
        [] ->
            case maps:get(incremental, Opts, false) of
                Incremental when is_boolean(Incremental) ->
                    hb_beamr_io:request(Instance, state_snapshot, [Incremental]);
                Bad ->
                    {error, {badarg, {options, {incremental, Bad}}}}
            end;
        [Unknown | _] ->
            {error, {badarg, {options, Unknown}}}
    end;
snapshot(Instance, Opts) when is_pid(Instance) ->
    {error, {badarg, {options, Opts}}};
snapshot(Instance, _Opts) ->
    {error, {badarg, {instance, Instance}}}.

%% @doc Puts the instance in the state a snapshot holds: a full snapshot, or a chain
%% `[Full | Deltas]' of a full snapshot and the deltas taken after it, in order (from
%% instances of the same module, on any node). Everything is validated first: a
%% truncated or corrupted snapshot, a delta without the snapshots it follows (alone, or
%% out of order) gives `{error, {invalid_snapshot, Why}}', a snapshot of another module
%% `{error, {snapshot_mismatch, Why}}', and the instance is left as it was. The restored
%% state is the base of the instance's next incremental snapshot.
-spec restore(instance(), snapshot_chain()) -> ok | {error, reason()}.
restore(Instance, Snapshot) when is_pid(Instance) ->
    case chain(Snapshot) of
        {ok, Chain} -> hb_beamr_io:request(Instance, state_restore, [Chain]);
        error -> {error, {badarg, {snapshot, Snapshot}}}
    end;
restore(Instance, _Snapshot) ->
    {error, {badarg, {instance, Instance}}}.

%% A snapshot or a chain as the list of binaries the NIF takes.
chain(Snapshot) when is_binary(Snapshot) ->
    {ok, [Snapshot]};
chain([_ | _] = Chain) ->
    case binaries(Chain) of
        true -> {ok, Chain};
        false -> error
    end;
chain(_) ->
    error.

%% Whether a (possibly improper) list holds only binaries.
binaries([]) -> true;
binaries([Bin | Rest]) when is_binary(Bin) -> binaries(Rest);
binaries(_) -> false.

%% @doc What a snapshot is, once its checksum verified: `kind' (`full' or `delta'), its
%% `id' (16 bytes), the id of the snapshot a delta follows (`parent'; `none' for a full
%% one) and its `sequence' number in its chain (0 for a full snapshot).
-spec snapshot_info(binary()) -> {ok, snapshot_info()} | {error, reason()}.
snapshot_info(Snapshot) when is_binary(Snapshot) ->
    hb_beamr_nif:snapshot_info(Snapshot);
snapshot_info(Snapshot) ->
    {error, {badarg, {snapshot, Snapshot}}}.

%% @doc The fuel the instance's last call used: one unit per wasm operator, charged per
%% function entry and loop iteration (see docs/preparation.md, "5. Interruption checks and
%% gas"). The same call on the same state always uses the same amount.
-spec gas_used(instance()) -> {ok, non_neg_integer()} | {error, reason()}.
gas_used(Instance) ->
    where_it_lives(Instance, gas_used, fun hb_beamr_nif:gas_used/1).

%% Runs `Local(Instance)' on the instance's node (`?MODULE:Name(Instance)' there).
where_it_lives(Instance, Name, _Local) when is_pid(Instance), node(Instance) =/= node() ->
    case hb_beamr_owner:on_node(node(Instance), ?MODULE, Name, [Instance]) of
        {ok, Result} -> Result;
        {error, Reason} -> {error, Reason}
    end;
where_it_lives(Instance, _Name, Local) when is_pid(Instance) ->
    Local(Instance);
where_it_lives(Instance, _Name, _Local) ->
    {error, {badarg, {instance, Instance}}}.

%% @doc Starts a call and returns at once. The calling process then receives
%% `{hb_beamr_import, Ref, Request}' for each import the call makes (`Request' as an import
%% fun gets it), answers it with `reply/2', and finally receives
%% `{hb_beamr_result, Ref, {ok, Results} | {error, Reason}}'. `Opts' as call/6's (`timeout',
%% `gas'). While an import is pending, the process may use the instance (memory, nested
%% calls) as an import fun may. Instances on other nodes are refused: their messages could
%% not reach the caller.
-spec call_async(instance(), name(), [value()], map()) -> {ok, call_ref()} | {error, reason()}.
call_async(Instance, Func, Args, Opts) ->
    hb_beamr_async:start(Instance, Func, Args, Opts, async).

%% @doc Answers the pending import of asynchronous call `Ref' with `Results', raises
%% `{import_exception, Reason}' at its call site (see `import_answer()'), or fails it
%% with `{error, Why}': the call then ends with
%% `{error, {import_failed, Module, Name, Why}}'. Results that do not fit the import's
%% signature fail it too (`Why = {bad_import_results, Results}') and give
%% `{error, {badarg, Detail}}' here. `{error, badarg}' when no import of `Ref' is pending
%% for this process; `{error, {badarg, {call_ref, Ref}}}' when `Ref' is not a call's
%% reference at all.
-spec reply(call_ref(), [value()] | {import_exception, term()} | {error, term()}) -> ok | {error, term()}.
reply(Ref, Answer) ->
    hb_beamr_async:reply(Ref, Answer).

%% @doc The seed's raw port protocol, on top of `call_async/4': `Command' is
%% `term_to_binary' of `{call, Name, Args}', `{indirect_call, Index, Args}' or
%% `{import_response, Results}'; the sender then receives `{import, Module, Func, Args,
%% Sig}' for each import and `{execution_result, Results}' or `{error, Reason}' at the end.
%% A call refused before it starts is reported by an `{error, Reason}' message too.
-spec wasm_send(instance(), {command, binary()}) -> ok | {error, term()}.
wasm_send(Instance, Message) ->
    hb_beamr_seed:send(Instance, Message).

%% @doc What the instance is and does: `module_hash' (hex SHA-256 of the module it was
%% started from), `memory_bytes' and `memory_pages' (memory 0 as of the end of the last
%% call or memory operation, or the current import), `state' (`idle | running |
%% in_import'), `calls' (outermost calls served), `gas_used' (see `gas_used/1'), `cached'
%% and `origin' (`compiled', or from the `memory' or `disk' cache or an `artifact').
%% It never waits for running wasm. A stopped instance gives `{error, stopped}', as every
%% other function does.
-spec info(instance()) -> {ok, info()} | {error, reason()}.
info(Instance) ->
    where_it_lives(Instance, info, fun hb_beamr_nif:info/1).

%% @doc Hibernates the instance now: its whole state goes into an image (in memory, or in
%% `hibernate_dir'), its executor thread ends and its wasm memory is released. The pid
%% stays the instance: the next call, memory access or snapshot revives it transparently.
%% `ok' (also when it already hibernates), `{error, busy}' when requests are queued for
%% it, `{error, call_in_progress}' from inside one of its calls (an import fun).
-spec hibernate(instance()) -> ok | {error, reason()}.
hibernate(Instance) when is_pid(Instance) ->
    hb_beamr_io:request(Instance, hibernate, []);
hibernate(Instance) ->
    {error, {badarg, {instance, Instance}}}.

%% @doc Node-wide counts: instances `live' and `hibernated', `image_bytes_memory' and
%% `image_bytes_disk' (hibernation images, bases excluded), `hibernations', `revivals',
%% `failed_revivals', `failed_hibernations' (by reason: `no_memory', `disk', `state'),
%% `max_live' (the budget in force, `infinity' without one), and the compile cache's
%% `compiled', `memory_hits', `disk_hits', `artifact_loads'.
-spec stats() -> #{atom() => non_neg_integer() | infinity | #{atom() => non_neg_integer()}}.
stats() ->
    hb_beamr_nif:stats().

%% @doc The default import fun: answers every import with `[0]'.
-spec stub(term(), import_request(), map()) -> {ok, [0], term()}.
stub(State, _Request, _Opts) ->
    {ok, [0], State}.

%% @doc Ensures the NIF is loaded (HyperBEAM loads its port driver with this).
-spec load_driver() -> ok | {error, term()}.
load_driver() ->
    case code:ensure_loaded(hb_beamr_nif) of
        {module, hb_beamr_nif} -> ok;
        {error, Reason} -> {error, Reason}
    end.
