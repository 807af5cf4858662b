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

-export([start/1, start/2, stop/1]).
-export([call/3, call/4, call/5, call/6]).
-export([serialize/1, deserialize/2, stub/3, load_driver/0]).
%% Internal: the owner process's entry point and the wait for an event.
-export([owner/1, next_event/2]).

%% How long a caller whose instance died waits for the executor's last word on its
%% request (it normally comes within milliseconds).
-define(DRAIN_TIMEOUT, 1000).

-type instance() :: pid().
-type name() :: binary() | string().
-type value() :: integer() | float() | nan | infinity | neg_infinity | null.
-type import_request() :: #{instance := instance(), module := string(), func := string(),
                            args := [value()], func_sig := string(), options => map()}.
-type import_fun() ::
    fun((State :: term(), import_request(), Opts :: map()) -> {ok, [value()], term()})
  | fun((State :: term(), import_request()) -> {ok, [value()], term()}).
-type import_entry() :: {func, Module :: string(), Name :: string(), Sig :: string()}.
-type export_entry() :: {func | memory | table | global | tag, Name :: string(), Sig :: string()}.
-type trap_kind() :: unreachable | out_of_bounds | stack_overflow | integer_overflow
                   | division_by_zero | bad_conversion | indirect_call_type_mismatch
                   | table_out_of_bounds | uninitialized_element | unaligned_atomic
                   | exception | out_of_gas | timeout | caller_died | other.
-type reason() :: {trap, trap_kind(), binary()} | {not_found, name()} | {badarg, term()}
                | {invalid_module, term()} | stopped
                | {import_failed, string(), string(), {atom(), term()}}.
-export_type([instance/0, value/0, import_fun/0, import_request/0, reason/0]).

%% @doc Loads `Wasm' (a binary module or WAT text) with default options.
-spec start(iodata()) -> {ok, instance(), [import_entry()], [export_entry()]} | {error, reason()}.
start(Wasm) ->
    start(Wasm, #{}).

%% @doc Loads a module. Options: `mode => wasm | aot' (both compile with Cranelift) and
%% `wamr_compat => boolean()' (default true: WAMR's extra memory page).
-spec start(iodata(), wasm | aot | map()) ->
    {ok, instance(), [import_entry()], [export_entry()]} | {error, reason()}.
start(Wasm, Mode) when Mode =:= wasm; Mode =:= aot ->
    start(Wasm, #{mode => Mode});
start(Wasm, Opts) when is_map(Opts) ->
    case to_binary(Wasm) of
        {ok, Bin} -> start_owned(Bin, Opts);
        error -> {error, {badarg, wasm}}
    end;
start(_Wasm, Opts) ->
    {error, {badarg, {options, Opts}}}.

%% The owner is spawned first (the NIF binds the instance to it) and watches this
%% process until the start is over: a starter killed mid-start takes the instance with
%% it instead of leaving an owner and an executor thread nobody can reach.
start_owned(Wasm, Opts) ->
    Owner = spawn(?MODULE, owner, [self()]),
    try instantiate(Owner, Wasm, Opts) of
        {ok, Owner, _Imports, _Exports} = Started ->
            Owner ! {?MODULE, started},
            Started;
        {error, _} = Failed ->
            exit(Owner, kill),
            Failed
    catch
        Class:Reason:Stacktrace ->
            exit(Owner, kill),
            erlang:raise(Class, Reason, Stacktrace)
    end.

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

to_binary(Wasm) when is_binary(Wasm) -> {ok, Wasm};
to_binary(Wasm) ->
    try {ok, iolist_to_binary(Wasm)}
    catch error:badarg -> error
    end.

%% @private The instance's identity: its death (or stop/1) ends the instance (the NIF
%% monitors it). Until the starter reports that start/2 is over, the owner exits if the
%% starter dies.
-spec owner(pid()) -> ok.
owner(Starter) ->
    Monitor = erlang:monitor(process, Starter),
    receive
        {?MODULE, started} ->
            erlang:demonitor(Monitor, [flush]),
            idle();
        {'DOWN', Monitor, process, Starter, _} ->
            ok
    end.

-spec idle() -> no_return().
idle() ->
    receive after infinity -> ok end.

%% @doc Ends the instance, interrupting running wasm. Idempotent: an instance that has
%% already stopped (its pid is dead) gives `ok'. A live pid that is not an instance is
%% left alone.
-spec stop(instance() | term()) -> ok | {error, {badarg, {instance, term()}}}.
stop(Instance) when is_pid(Instance), node(Instance) =:= node() ->
    stop_local(Instance, erlang:process_info(Instance, initial_call));
stop(Instance) when is_pid(Instance) ->
    try erpc:call(node(Instance), ?MODULE, stop, [Instance])
    catch
        %% A node that cannot be reached holds no instance any more.
        error:{erpc, noconnection} -> ok
    end;
stop(Instance) ->
    {error, {badarg, {instance, Instance}}}.

%% Every instance's pid is an owner process, alive until the instance is stopped; a
%% stopping instance may already be gone from the NIF's registry, so the process, not
%% the registry, tells an instance from any other pid.
stop_local(Owner, {initial_call, {?MODULE, owner, 1}}) ->
    ok = hb_beamr_nif:stop(Owner),
    exit(Owner, kill),
    ok;
stop_local(Pid, undefined) ->
    %% Dead: its instance, if it was one, is stopping; make that immediate.
    ok = hb_beamr_nif:stop(Pid);
stop_local(Pid, {initial_call, _}) ->
    {error, {badarg, {instance, Pid}}}.

%% @doc Calls an export; every import is answered by `stub/3'.
-spec call(instance(), name(), [value()]) -> {ok, [value()]} | {error, reason()}.
call(Instance, Func, Args) ->
    case call(Instance, Func, Args, fun stub/3) of
        {ok, Results, _} -> {ok, Results};
        {error, Reason, _} -> {error, Reason}
    end.

-spec call(instance(), name(), [value()], import_fun()) ->
    {ok, [value()], term()} | {error, reason(), term()}.
call(Instance, Func, Args, ImportFun) ->
    call(Instance, Func, Args, ImportFun, #{}).

-spec call(instance(), name(), [value()], import_fun(), term()) ->
    {ok, [value()], term()} | {error, reason(), term()}.
call(Instance, Func, Args, ImportFun, State) ->
    call(Instance, Func, Args, ImportFun, State, #{}).

%% @doc Calls an export; imports are answered by `ImportFun', threading `State'.
-spec call(instance(), name(), [value()], import_fun(), term(), map()) ->
    {ok, [value()], term()} | {error, reason(), term()}.
call(Instance, Func, Args, ImportFun, State, Opts)
        when is_pid(Instance), node(Instance) =/= node() ->
    erpc:call(node(Instance), ?MODULE, call, [Instance, Func, Args, ImportFun, State, Opts]);
call(Instance, Func, Args, ImportFun, State, Opts)
        when is_pid(Instance), is_map(Opts),
             (is_function(ImportFun, 3) orelse is_function(ImportFun, 2)) ->
    case hb_beamr_nif:call(Instance, Func, Args) of
        {event, Id, Event} -> handle(Instance, Id, Event, ImportFun, State, Opts);
        {wait, Id} -> await(Instance, Id, ImportFun, State, Opts);
        {error, Reason} -> {error, Reason, State}
    end;
call(Instance, _Func, _Args, ImportFun, State, Opts) ->
    {error, {badarg, bad_call_argument(Instance, ImportFun, Opts)}, State}.

bad_call_argument(Instance, _, _) when not is_pid(Instance) -> {instance, Instance};
bad_call_argument(_, _, Opts) when not is_map(Opts) -> {options, Opts};
bad_call_argument(_, ImportFun, _) -> {import_fun, ImportFun}.

%% Serves call `Id' until its result arrives: events (import requests, the result)
%% come as messages, or straight from a NIF when they come within microseconds.
await(Instance, Id, ImportFun, State, Opts) ->
    case next_event(Instance, Id) of
        {ok, Event} -> handle(Instance, Id, Event, ImportFun, State, Opts);
        stopped -> {error, stopped, State}
    end.

%% @private Waits for the next event of request `Id' to a local instance, or `stopped'
%% when the instance's owner dies first (so a lost event cannot hang the caller). The
%% monitor is only set up here, when the NIF did not already hand the event over.
-spec next_event(instance(), hb_beamr_nif:id()) -> {ok, hb_beamr_nif:event()} | stopped.
next_event(Instance, Id) ->
    Monitor = erlang:monitor(process, Instance),
    receive
        {hb_beamr, Id, Event} ->
            erlang:demonitor(Monitor, [flush]),
            {ok, Event};
        {'DOWN', Monitor, process, Instance, _} ->
            drain(Id),
            stopped
    end.

%% The owner died, so the instance is stopping and its executor reports the end of the
%% request (`{error, stopped}') once wasm has unwound. Take that report, so that it does
%% not turn up in the caller's mailbox later, but do not wait long for it.
drain(Id) ->
    receive
        {hb_beamr, Id, {import, _Call, _Index, _Module, _Name, _Sig, _Args}} -> drain(Id);
        {hb_beamr, Id, _Last} -> ok
    after ?DRAIN_TIMEOUT ->
        ok
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
    case next_event(Instance, Id) of
        {ok, {error, import_failed}} -> {error, Failure, State};
        {ok, {error, Reason}} -> {error, Reason, State};
        stopped -> {error, stopped, State}
    end.

run_import(ImportFun, State, Request, Opts) ->
    try apply_import(ImportFun, State, Request, Opts) of
        {ok, Results, NewState} when is_list(Results) -> {ok, Results, NewState};
        Other -> {failed, {error, {bad_import_return, Other}}}
    catch
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
