%%% @doc The owner process: an instance's pid and identity. The NIF binds the instance to
%%% it and monitors it, so its death (or `hb_beamr:stop/1') ends the instance. This module
%%% also waits for a request's events on the owner's behalf (a dead owner ends the wait)
%%% and reaches instances that live on other nodes.
-module(hb_beamr_owner).

-export([start_owned/1, stop/1, next_event/2, on_node/4]).
%% The owner's entry point and its hibernated loop (spawn/3 and erlang:hibernate/3).
-export([owner/1, idle/0]).

%% How long a caller whose instance died waits for the executor's last word on its
%% request (it normally comes within milliseconds).
-define(DRAIN_TIMEOUT, 1000).

%% @doc Spawns an owner, runs `Start(Owner)' and keeps the owner when it returns
%% `{ok, Owner, ...}'. The owner watches this process until then: a starter killed
%% mid-start takes the instance with it instead of leaving an owner and an executor thread
%% nobody can reach. A start that fails or raises kills the owner, which stops whatever
%% the start had begun.
-spec start_owned(fun((pid()) -> Started)) -> Started
    when Started :: {ok, pid(), list(), list()} | {error, term()}.
start_owned(Start) ->
    Owner = spawn(?MODULE, owner, [self()]),
    try Start(Owner) of
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

%% @doc The instance's identity: its death (or stop/1) ends the instance (the NIF
%% monitors it). Until the starter reports that the start is over, the owner exits if the
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

%% @doc The owner's life after the start: hibernated, so an idle instance keeps a heap of
%% a few words instead of a fresh process's 233 (10,000 owners' heaps otherwise spread
%% over process-heap carriers that stay pinned after a mass stop). Messages to an
%% instance mean nothing; they are dropped rather than kept for ever.
-spec idle() -> no_return().
idle() ->
    receive
        _Stray -> idle()
    after 0 ->
        erlang:hibernate(?MODULE, idle, [])
    end.

%% @doc Stops the instance of a local pid. Every instance's pid is an owner process,
%% alive until the instance is stopped; a stopping instance may already be gone from the
%% NIF's registry, so the process, not the registry, tells an instance from any other
%% pid. A dead pid gives `ok' (its instance, if it was one, is stopping: this makes that
%% immediate); a live pid that is not an owner is left alone.
-spec stop(pid()) -> ok | {error, {badarg, {instance, pid()}}}.
stop(Pid) ->
    case erlang:process_info(Pid, initial_call) of
        {initial_call, {?MODULE, owner, 1}} ->
            ok = hb_beamr_nif:stop(Pid),
            exit(Pid, kill),
            ok;
        undefined ->
            ok = hb_beamr_nif:stop(Pid);
        {initial_call, _} ->
            {error, {badarg, {instance, Pid}}}
    end.

%% @doc Waits for the next event of request `Id' to a local instance, or `stopped' when
%% the instance's owner dies first (so a lost event cannot hang the caller). The monitor
%% is only set up here, when the NIF did not already hand the event over.
-spec next_event(pid(), hb_beamr_nif:id()) -> {ok, hb_beamr_nif:event()} | stopped.
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

%% @doc `Module:Function(Args...)' on `Node', as `{ok, Result}', or
%% `{error, {noconnection, Node}}' when the node is not connected (its instances may still
%% live there, but cannot be reached from here).
-spec on_node(node(), module(), atom(), list()) -> {ok, term()} | {error, {noconnection, node()}}.
on_node(Node, Module, Function, Args) ->
    try
        {ok, erpc:call(Node, Module, Function, Args)}
    catch
        error:{erpc, noconnection} -> {error, {noconnection, Node}}
    end.
